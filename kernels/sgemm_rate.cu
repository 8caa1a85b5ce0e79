// The FP32 SGEMM rate cuBLAS reaches on this GPU (no TF32), the yardstick of the
// benchmark's "fraction of the SGEMM rate" for a whole training step.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <curand.h>

#include <algorithm>
#include <vector>

#include "cuda_check.cuh"
#include "device_memory.cuh"
#include "internal.h"

namespace vae {

double cuda_sgemm_gflops(int m, int n, int k) {
  using gpu::DeviceBuffer;
  DeviceBuffer<float> a(static_cast<std::size_t>(m) * k, "SGEMM rate: A"), b(static_cast<std::size_t>(k) * n, "SGEMM rate: B"),
      c(static_cast<std::size_t>(m) * n, "SGEMM rate: C");
  {  // random operands: a GPU multiplies zeros faster than data (it draws less power)
    curandGenerator_t gen = nullptr;
    VAE_CURAND_CHECK(curandCreateGenerator(&gen, CURAND_RNG_PSEUDO_PHILOX4_32_10));
    const curandStatus_t sa = curandGenerateUniform(gen, a.get(), a.size());
    const curandStatus_t sb = curandGenerateUniform(gen, b.get(), b.size());
    curandDestroyGenerator(gen);
    VAE_CURAND_CHECK(sa);
    VAE_CURAND_CHECK(sb);
  }
  cublasHandle_t h = nullptr;
  VAE_CUBLAS_CHECK(cublasCreate(&h));
  cudaEvent_t start = nullptr, stop = nullptr;
  std::vector<float> ms;
  try {
    VAE_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));  // FP32, as the backend runs
    VAE_CUDA_CHECK(cudaEventCreate(&start));
    VAE_CUDA_CHECK(cudaEventCreate(&stop));
    const float one = 1.0f, zero = 0.0f;
    auto gemm = [&] {
      VAE_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, a.get(), m, b.get(), k, &zero, c.get(), m));
    };
    for (int w = 0; w < 3; ++w) gemm();
    for (int r = 0; r < 10; ++r) {
      VAE_CUDA_CHECK(cudaEventRecord(start));
      gemm();
      VAE_CUDA_CHECK(cudaEventRecord(stop));
      VAE_CUDA_CHECK(cudaEventSynchronize(stop));
      float t = 0;
      VAE_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
      ms.push_back(t);
    }
  } catch (...) {
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    cublasDestroy(h);
    throw;
  }
  VAE_CUDA_WARN(cudaEventDestroy(start));
  VAE_CUDA_WARN(cudaEventDestroy(stop));
  cublasDestroy(h);
  const double best_s = *std::min_element(ms.begin(), ms.end()) / 1e3;
  return 2.0 * m * n * k / best_s / 1e9;
}

}  // namespace vae
