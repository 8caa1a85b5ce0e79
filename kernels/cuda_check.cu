// The error checks behind VAE_CUDA_CHECK, VAE_CUBLAS_CHECK, VAE_CURAND_CHECK and
// VAE_LAUNCH_CHECK: each failure becomes a vae::Error naming the call, file and line. The
// *_WARN forms print that line instead.
#include <cstdio>

#include "cuda_check.cuh"
#include "vae/error.h"

namespace vae::gpu {

namespace {
const char* base_name(const char* file) {
  const char* slash = file;
  for (const char* p = file; *p; ++p)
    if (*p == '/') slash = p + 1;
  return slash;
}
}  // namespace

const char* curand_status_name(curandStatus_t status) {
  switch (status) {
    case CURAND_STATUS_SUCCESS: return "CURAND_STATUS_SUCCESS";
    case CURAND_STATUS_VERSION_MISMATCH: return "CURAND_STATUS_VERSION_MISMATCH";
    case CURAND_STATUS_NOT_INITIALIZED: return "CURAND_STATUS_NOT_INITIALIZED";
    case CURAND_STATUS_ALLOCATION_FAILED: return "CURAND_STATUS_ALLOCATION_FAILED";
    case CURAND_STATUS_TYPE_ERROR: return "CURAND_STATUS_TYPE_ERROR";
    case CURAND_STATUS_OUT_OF_RANGE: return "CURAND_STATUS_OUT_OF_RANGE";
    case CURAND_STATUS_LENGTH_NOT_MULTIPLE: return "CURAND_STATUS_LENGTH_NOT_MULTIPLE (normals need an even count)";
    case CURAND_STATUS_DOUBLE_PRECISION_REQUIRED: return "CURAND_STATUS_DOUBLE_PRECISION_REQUIRED";
    case CURAND_STATUS_LAUNCH_FAILURE: return "CURAND_STATUS_LAUNCH_FAILURE";
    case CURAND_STATUS_PREEXISTING_FAILURE: return "CURAND_STATUS_PREEXISTING_FAILURE";
    case CURAND_STATUS_INITIALIZATION_FAILED: return "CURAND_STATUS_INITIALIZATION_FAILED";
    case CURAND_STATUS_ARCH_MISMATCH: return "CURAND_STATUS_ARCH_MISMATCH";
    case CURAND_STATUS_INTERNAL_ERROR: return "CURAND_STATUS_INTERNAL_ERROR";
  }
  return "unknown cuRAND status";
}

void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a non-sticky error so later checks report their own
  throw_error("CUDA error in ", call, " at ", base_name(file), ":", line, ": ", cudaGetErrorName(status), ": ",
              cudaGetErrorString(status));
}

void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw_error("cuBLAS error in ", call, " at ", base_name(file), ":", line, ": ", cublasGetStatusName(status), ": ",
              cublasGetStatusString(status));
}

void check_curand(curandStatus_t status, const char* call, const char* file, int line) {
  if (status == CURAND_STATUS_SUCCESS) return;
  throw_error("cuRAND error in ", call, " at ", base_name(file), ":", line, ": ", curand_status_name(status), " (",
              int(status), ")");
}

void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess) return;
  throw_error("CUDA error launching ", kernel, " at ", base_name(file), ":", line, ": ", cudaGetErrorName(status), ": ",
              cudaGetErrorString(status));
}

void warn_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  (void)cudaGetLastError();
  std::fprintf(stderr, "vae: warning: CUDA error in %s at %s:%d: %s\n", call, base_name(file), line,
               cudaGetErrorString(status));
}

void warn_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  std::fprintf(stderr, "vae: warning: cuBLAS error in %s at %s:%d: %s\n", call, base_name(file), line,
               cublasGetStatusString(status));
}

void warn_curand(curandStatus_t status, const char* call, const char* file, int line) {
  if (status == CURAND_STATUS_SUCCESS) return;
  std::fprintf(stderr, "vae: warning: cuRAND error in %s at %s:%d: %s\n", call, base_name(file), line,
               curand_status_name(status));
}

}  // namespace vae::gpu
