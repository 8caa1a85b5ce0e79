// Batch gather kernel and its launcher (see gather.cuh). There is no backward: the data
// gets no gradient.
#include <algorithm>

#include "cuda_check.cuh"
#include "gather.cuh"
#include "vae/error.h"

namespace vae::gpu {
namespace {

// One thread per element of x (n, D), grid-stride.
__global__ void gather_rows_kernel(const StepHeader* __restrict__ hdr, const std::uint32_t* __restrict__ indices,
                                   int n, int D, const float* __restrict__ bin_block, float* __restrict__ x) {
  const std::uint64_t rows = hdr->rows;
  const bool u8 = hdr->rows_u8 != 0;
  const float* u = bin_block ? bin_block + hdr->bin_offset : nullptr;  // (n, D)
  const std::size_t total = static_cast<std::size_t>(n) * static_cast<std::size_t>(D);
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t r = i / static_cast<std::size_t>(D);
    const std::size_t d = i - r * static_cast<std::size_t>(D);
    const std::size_t src = static_cast<std::size_t>(indices[r]) * static_cast<std::size_t>(D) + d;
    float v;
    if (u8) v = static_cast<float>(reinterpret_cast<const std::uint8_t*>(rows)[src]) * static_cast<float>(1.0 / 255.0);
    else v = reinterpret_cast<const float*>(rows)[src];
    if (u) v = u[i] <= v ? 1.0f : 0.0f;
    x[i] = v;
  }
}

}  // namespace

void gather_rows(const StepHeader* hdr, const std::uint32_t* indices, int n, int D, const float* bin_block, float* x,
                 cudaStream_t stream) {
  if (n <= 0 || D <= 0) throw_error("gather_rows: n and D must be positive, got n = ", n, ", D = ", D);
  if (!hdr || !indices || !x) throw_error("gather_rows: null device pointer (record, indices or x)");
  const std::size_t total = static_cast<std::size_t>(n) * static_cast<std::size_t>(D);
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<std::size_t>((total + threads - 1) / threads, 4096));
  gather_rows_kernel<<<blocks, threads, 0, stream>>>(hdr, indices, n, D, bin_block, x);
  VAE_LAUNCH_CHECK("gather_rows_kernel");
}

}  // namespace vae::gpu
