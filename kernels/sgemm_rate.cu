// The FP32 SGEMM rate cuBLAS reaches on this GPU (no TF32), the yardstick of the
// benchmark's "fraction of the SGEMM rate" for a whole training step.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <curand.h>

#include <algorithm>
#include <vector>

#include "cuda_check.cuh"
#include "cuda_handles.cuh"
#include "device_memory.cuh"
#include "internal.h"

namespace vae {

double cuda_sgemm_gflops(int m, int n, int k) {
  using gpu::BlasHandle;
  using gpu::DeviceBuffer;
  using gpu::PhiloxGenerator;
  using gpu::TimingEvent;
  DeviceBuffer<float> a(static_cast<std::size_t>(m) * k, "SGEMM rate: A"), b(static_cast<std::size_t>(k) * n, "SGEMM rate: B"),
      c(static_cast<std::size_t>(m) * n, "SGEMM rate: C");
  {  // random operands: a GPU multiplies zeros faster than data (it draws less power)
    PhiloxGenerator gen;
    VAE_CURAND_CHECK(curandGenerateUniform(gen.get(), a.get(), a.size()));
    VAE_CURAND_CHECK(curandGenerateUniform(gen.get(), b.get(), b.size()));
  }
  BlasHandle h;
  VAE_CUBLAS_CHECK(cublasSetMathMode(h.get(), CUBLAS_DEFAULT_MATH));  // FP32, as the backend runs
  TimingEvent start, stop;
  const float one = 1.0f, zero = 0.0f;
  auto gemm = [&] {
    VAE_CUBLAS_CHECK(
        cublasSgemm(h.get(), CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, a.get(), m, b.get(), k, &zero, c.get(), m));
  };
  for (int w = 0; w < 3; ++w) gemm();
  std::vector<float> ms;
  for (int r = 0; r < 10; ++r) {
    VAE_CUDA_CHECK(cudaEventRecord(start.get()));
    gemm();
    VAE_CUDA_CHECK(cudaEventRecord(stop.get()));
    VAE_CUDA_CHECK(cudaEventSynchronize(stop.get()));
    float t = 0;
    VAE_CUDA_CHECK(cudaEventElapsedTime(&t, start.get(), stop.get()));
    ms.push_back(t);
  }
  const double best_s = *std::min_element(ms.begin(), ms.end()) / 1e3;
  return 2.0 * m * n * k / best_s / 1e9;
}

}  // namespace vae
