// Latent forward (bias, reparameterization, KL) and backward (d mu, d s, head-bias
// gradient) kernels and their launchers (see latent.cuh).
#include "cuda_check.cuh"
#include "latent.cuh"
#include "vae/elementwise.h"
#include "vae/error.h"

namespace vae::gpu {
namespace {

constexpr int kWarpsPerBlock = 8;

// One warp per data point b; lane j handles latent dims j, j+32, ...
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    latent_forward_kernel(float* __restrict__ head, const float* __restrict__ bias, const float* __restrict__ eps_block,
                          const std::int64_t* __restrict__ eps_offset, int n, int L, int Z, float* __restrict__ z,
                          float* __restrict__ kl) {
  const int lane = threadIdx.x & 31;
  const int b = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (b >= n) return;  // whole warps leave together
  const float* eps = eps_block + (eps_offset ? *eps_offset : 0);
  float* h = head + static_cast<std::size_t>(b) * 2 * Z;  // (2Z)
  float k = 0.0f;
  for (int j = lane; j < Z; j += 32) {
    const float mu = h[j] + bias[j];
    const float s = h[Z + j] + bias[Z + j];
    h[j] = mu;
    h[Z + j] = s;
    k += ew::kl_term(mu, s);
    for (int l = 0; l < L; ++l) {
      const std::size_t r = (static_cast<std::size_t>(b) * L + l) * Z + j;
      z[r] = ew::reparameterize(mu, s, eps[r]);
    }
  }
  k = warp_sum(k);
  if (lane == 0) kl[b] = k;
}

// Grid (tiles of Z columns, chunks of n rows), block (kTileCols, kLanes): thread (j, b)
// makes d mu[b, j] and d s[b, j]; the head-bias gradient is their column sums.
__global__ void __launch_bounds__(kTileCols* kLanes)
    latent_backward_kernel(const float* __restrict__ head, const float* __restrict__ eps_block,
                           const std::int64_t* __restrict__ eps_offset, const float* __restrict__ dz, int n, int L,
                           int Z, float beta_scale, float* __restrict__ dhead, float* __restrict__ dbias,
                           float* __restrict__ partial, unsigned* __restrict__ counters) {
  const float* eps = eps_block + (eps_offset ? *eps_offset : 0);
  const int j = blockIdx.x * kTileCols + threadIdx.x;
  float acc[2] = {0.0f, 0.0f};  // d mu, d s column sums
  if (j < Z) {
    const int b0 = blockIdx.y * kChunkRows + threadIdx.y;
#pragma unroll
    for (int k = 0; k < kChunkRows / kLanes; ++k) {
      const int b = b0 + k * kLanes;
      if (b < n) {
        const std::size_t hb = static_cast<std::size_t>(b) * 2 * Z;
        float sdz = 0.0f, sdze = 0.0f;
        for (int l = 0; l < L; ++l) {
          const std::size_t r = (static_cast<std::size_t>(b) * L + l) * Z + j;
          sdz += dz[r];
          sdze += dz[r] * eps[r];
        }
        const float dmu = ew::latent_dmu(head[hb + j], sdz, beta_scale);
        const float ds = ew::latent_ds(head[hb + Z + j], sdze, beta_scale);
        dhead[hb + j] = dmu;
        dhead[hb + Z + j] = ds;
        acc[0] += dmu;
        acc[1] += ds;
      }
    }
  }
  write_column_partials<2>(acc, Z, partial);
  if (last_block_ticket(counters + blockIdx.x, gridDim.y)) {
    float* const out[2] = {dbias, dbias + Z};
    finish_column_sums<2>(Z, partial, out);
  }
}

void check_shape(const char* who, int n, int L, int Z) {
  if (n <= 0 || L <= 0 || Z <= 0) throw_error(who, ": n, L and Z must be positive, got ", n, ", ", L, ", ", Z);
}

}  // namespace

void latent_forward(float* head, const float* bias, const float* eps_block, const std::int64_t* eps_offset, int n,
                    int L, int Z, float* z, float* kl, cudaStream_t stream) {
  check_shape("latent_forward", n, L, Z);
  if (!head || !bias || !eps_block || !z || !kl) throw_error("latent_forward: null device pointer");
  const int blocks = (n + kWarpsPerBlock - 1) / kWarpsPerBlock;
  latent_forward_kernel<<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(head, bias, eps_block, eps_offset, n, L, Z, z, kl);
  VAE_LAUNCH_CHECK("latent_forward_kernel");
}

void latent_backward(const float* head, const float* eps_block, const std::int64_t* eps_offset, const float* dz,
                     int n, int L, int Z, float beta_scale, float* dhead, float* dbias, const ReduceScratch& scratch,
                     cudaStream_t stream) {
  check_shape("latent_backward", n, L, Z);
  if (!head || !eps_block || !dz || !dhead || !dbias) throw_error("latent_backward: null device pointer");
  check_reduce_scratch(scratch, n, Z, 2, false, "latent_backward");
  const dim3 grid(column_tiles(Z), row_chunks(n));
  const dim3 block(kTileCols, kLanes);
  latent_backward_kernel<<<grid, block, 0, stream>>>(head, eps_block, eps_offset, dz, n, L, Z, beta_scale, dhead, dbias,
                                                     scratch.partial, scratch.counters);
  VAE_LAUNCH_CHECK("latent_backward_kernel");
}

}  // namespace vae::gpu
