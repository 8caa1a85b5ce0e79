// Device and pinned host allocation with out-of-memory messages that say how much was
// asked for and how much was free.
#include <cuda_runtime_api.h>

#include <cstdio>

#include "cuda_check.cuh"
#include "device_memory.cuh"
#include "vae/error.h"
#include "vae/options.h"

namespace vae::gpu {

void* device_alloc(std::size_t bytes, const std::string& what) {
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, bytes);
  if (status == cudaSuccess) return p;
  (void)cudaGetLastError();
  if (status == cudaErrorMemoryAllocation) {
    std::size_t free_bytes = 0, total_bytes = 0;
    const bool known = cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess;
    (void)cudaGetLastError();
    if (known)
      throw_error("out of GPU memory: cudaMalloc of ", bytes, " bytes for ", what, " failed; ", free_bytes, " of ",
                  total_bytes, " bytes were free (try a smaller ", flag_of("batch"), " or ", flag_of("eval_batch"), ", or ",
                  flag_of("stream_data"), ")");
    throw_error("out of GPU memory: cudaMalloc of ", bytes, " bytes for ", what, " failed");
  }
  throw_error("cudaMalloc of ", bytes, " bytes for ", what, " failed: ", cudaGetErrorName(status), ": ",
              cudaGetErrorString(status));
}

void device_free(void* p) noexcept {
  if (p) VAE_CUDA_WARN(cudaFree(p));
}

void* pinned_alloc(std::size_t bytes, const std::string& what) {
  void* p = nullptr;
  const cudaError_t status = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
  if (status == cudaSuccess) return p;
  (void)cudaGetLastError();
  throw_error("cudaHostAlloc of ", bytes, " bytes of pinned host memory for ", what, " failed: ",
              cudaGetErrorName(status), ": ", cudaGetErrorString(status));
}

void pinned_free(void* p) noexcept {
  if (p) VAE_CUDA_WARN(cudaFreeHost(p));
}

}  // namespace vae::gpu
