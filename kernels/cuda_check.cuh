// Error checks for every CUDA runtime, cuBLAS and cuRAND call and after every kernel launch.
// A failure throws vae::Error naming the call, the file and the line; destructors use the
// *_WARN forms, which only print. Plain C++: host code may include this without nvcc.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <curand.h>

namespace vae::gpu {

void check_cuda(cudaError_t status, const char* call, const char* file, int line);
void check_cublas(cublasStatus_t status, const char* call, const char* file, int line);
void check_curand(curandStatus_t status, const char* call, const char* file, int line);
// After a launch: picks up launch-configuration errors (cudaGetLastError) without a sync.
void check_launch(const char* kernel, const char* file, int line);
// For destructors: print one line to stderr instead of throwing.
void warn_cuda(cudaError_t status, const char* call, const char* file, int line);
void warn_cublas(cublasStatus_t status, const char* call, const char* file, int line);
void warn_curand(curandStatus_t status, const char* call, const char* file, int line);

const char* curand_status_name(curandStatus_t status);

}  // namespace vae::gpu

#define VAE_CUDA_CHECK(call) ::vae::gpu::check_cuda((call), #call, __FILE__, __LINE__)
#define VAE_CUBLAS_CHECK(call) ::vae::gpu::check_cublas((call), #call, __FILE__, __LINE__)
#define VAE_CURAND_CHECK(call) ::vae::gpu::check_curand((call), #call, __FILE__, __LINE__)
#define VAE_LAUNCH_CHECK(kernel) ::vae::gpu::check_launch((kernel), __FILE__, __LINE__)
#define VAE_CUDA_WARN(call) ::vae::gpu::warn_cuda((call), #call, __FILE__, __LINE__)
#define VAE_CUBLAS_WARN(call) ::vae::gpu::warn_cublas((call), #call, __FILE__, __LINE__)
#define VAE_CURAND_WARN(call) ::vae::gpu::warn_curand((call), #call, __FILE__, __LINE__)
