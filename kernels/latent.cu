// Latent forward (bias, reparameterization, KL, importance-weight terms) and backward
// (reparameterization, score-function and IWAE forms of d mu, d s, with the head-bias
// gradient) kernels and their launchers (see latent.cuh).
#include "cuda_check.cuh"
#include "elementwise.h"
#include "latent.cuh"
#include "vae/error.h"

namespace vae::gpu {
namespace {

constexpr int kWarpsPerBlock = 8;

// One warp per data point b; lane j handles latent dims j, j+32, ... First the head bias and
// the KL, then per sample l the codes z and (when lpq is given) the warp sum of
// log p(z) - log q(z|x) over the dims. Each lane re-reads only the head values it wrote.
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    latent_forward_kernel(float* __restrict__ head, const float* __restrict__ bias, const float* __restrict__ eps_block,
                          const std::int64_t* __restrict__ eps_offset, int n, int L, int Z, float* __restrict__ z,
                          float* __restrict__ kl, float* __restrict__ lpq) {
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
  }
  k = warp_sum(k);
  if (lane == 0) kl[b] = k;
  for (int l = 0; l < L; ++l) {
    const std::size_t r0 = (static_cast<std::size_t>(b) * L + l) * Z;
    float w = 0.0f;
    for (int j = lane; j < Z; j += 32) {
      const float s = h[Z + j];
      const float zz = ew::reparameterize(h[j], s, eps[r0 + j]);
      z[r0 + j] = zz;
      if (lpq) w += ew::log_prior_minus_log_q(zz, eps[r0 + j], s);
    }
    if (lpq) {  // the same for the whole warp
      w = warp_sum(w);
      if (lane == 0) lpq[static_cast<std::size_t>(b) * L + l] = w;
    }
  }
}

enum class Mode { reparam, score, iwae };

// Grid (tiles of Z columns, chunks of n rows), block (kTileCols, kLanes): thread (j, b)
// makes d mu[b, j] and d s[b, j]; the head-bias gradient is their column sums.
template <Mode M>
__global__ void __launch_bounds__(kTileCols* kLanes)
    latent_backward_kernel(const LatentBackwardArgs a, float* __restrict__ partial, unsigned* __restrict__ counters) {
  const float* __restrict__ eps = a.eps_block + (a.eps_offset ? *a.eps_offset : 0);
  const float* __restrict__ head = a.head;
  const int n = a.n, L = a.L, Z = a.Z;
  const int j = blockIdx.x * kTileCols + threadIdx.x;
  // beta/n and 1/n in float, as the CPU forms them.
  const float beta_scale = M == Mode::iwae ? 0.0f : static_cast<float>(*a.beta) / static_cast<float>(n);
  float acc[2] = {0.0f, 0.0f};  // d mu, d s column sums
  if (j < Z) {
    const int b0 = blockIdx.y * kChunkRows + threadIdx.y;
#pragma unroll
    for (int k = 0; k < kChunkRows / kLanes; ++k) {
      const int b = b0 + k * kLanes;
      if (b < n) {
        const std::size_t hb = static_cast<std::size_t>(b) * 2 * Z;
        const float mu = head[hb + j], s = head[hb + Z + j];
        float dmu, ds;
        if constexpr (M == Mode::reparam) {
          float sdz = 0.0f, sdze = 0.0f;
          for (int l = 0; l < L; ++l) {
            const std::size_t r = (static_cast<std::size_t>(b) * L + l) * Z + j;
            sdz += a.dz[r];
            sdze += a.dz[r] * eps[r];
          }
          dmu = ew::latent_dmu(mu, sdz, beta_scale);
          ds = ew::latent_ds(s, sdze, beta_scale);
        } else if constexpr (M == Mode::score) {
          const float scale = 1.0f / static_cast<float>(n);
          const float coef = -scale / static_cast<float>(L);
          float sfe = 0.0f, sfe2 = 0.0f;
          for (int l = 0; l < L; ++l) {
            const std::size_t r = static_cast<std::size_t>(b) * L + l;
            const float e = eps[r * Z + j];
            const float f = a.row_logp[r];
            sfe += f * e;
            sfe2 += f * (e * e - 1.0f);
          }
          dmu = ew::score_dmu(mu, s, sfe, coef, beta_scale);
          ds = ew::score_ds(s, sfe2, coef, beta_scale);
        } else {
          float wsum = 0.0f, sdz = 0.0f, sdze = 0.0f;
          for (int l = 0; l < L; ++l) wsum += a.w[static_cast<std::size_t>(b) * L + l];
          for (int l = 0; l < L; ++l) {
            const std::size_t r = static_cast<std::size_t>(b) * L + l;
            const std::size_t i = r * Z + j;
            const float d = a.dz[i] + a.w[r] * a.z[i];
            sdz += d;
            sdze += d * eps[i];
          }
          dmu = sdz;
          ds = ew::latent_ds(s, sdze, 0.0f) - 0.5f * wsum;
        }
        a.dhead[hb + j] = dmu;
        a.dhead[hb + Z + j] = ds;
        acc[0] += dmu;
        acc[1] += ds;
      }
    }
  }
  write_column_partials<2>(acc, Z, partial);
  if (last_block_ticket(counters + blockIdx.x, gridDim.y)) {
    float* const out[2] = {a.dbias, a.dbias + Z};
    finish_column_sums<2>(Z, partial, out);
  }
}

void check_shape(const char* who, int n, int L, int Z) {
  if (n <= 0 || L <= 0 || Z <= 0) throw_error(who, ": n, L and Z must be positive, got ", n, ", ", L, ", ", Z);
}

template <Mode M>
void launch_backward(const char* who, const LatentBackwardArgs& a, const ReduceScratch& scratch, cudaStream_t stream) {
  check_shape(who, a.n, a.L, a.Z);
  if (!a.head || !a.eps_block || !a.dhead || !a.dbias)
    throw_error(who, ": null device pointer (head, eps, dhead or dbias)");
  if (M == Mode::reparam && (!a.dz || !a.beta)) throw_error(who, ": needs dz and beta");
  if (M == Mode::score && (!a.row_logp || !a.beta)) throw_error(who, ": needs row_logp and beta");
  if (M == Mode::iwae && (!a.dz || !a.z || !a.w)) throw_error(who, ": needs dz, z and the importance weights");
  check_reduce_scratch(scratch, a.n, a.Z, 2, false, who);
  const dim3 grid(column_tiles(a.Z), row_chunks(a.n));
  const dim3 block(kTileCols, kLanes);
  latent_backward_kernel<M><<<grid, block, 0, stream>>>(a, scratch.partial, scratch.counters);
  VAE_LAUNCH_CHECK(who);
}

}  // namespace

void latent_forward(float* head, const float* bias, const float* eps_block, const std::int64_t* eps_offset, int n,
                    int L, int Z, float* z, float* kl, float* lpq, cudaStream_t stream) {
  check_shape("latent_forward", n, L, Z);
  if (!head || !bias || !eps_block || !z || !kl) throw_error("latent_forward: null device pointer");
  const int blocks = (n + kWarpsPerBlock - 1) / kWarpsPerBlock;
  latent_forward_kernel<<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(head, bias, eps_block, eps_offset, n, L, Z, z, kl,
                                                                    lpq);
  VAE_LAUNCH_CHECK("latent_forward_kernel");
}

void latent_backward(const LatentBackwardArgs& a, const ReduceScratch& scratch, cudaStream_t stream) {
  launch_backward<Mode::reparam>("latent_backward", a, scratch, stream);
}
void latent_backward_score(const LatentBackwardArgs& a, const ReduceScratch& scratch, cudaStream_t stream) {
  launch_backward<Mode::score>("latent_backward_score", a, scratch, stream);
}
void latent_backward_iwae(const LatentBackwardArgs& a, const ReduceScratch& scratch, cudaStream_t stream) {
  launch_backward<Mode::iwae>("latent_backward_iwae", a, scratch, stream);
}

}  // namespace vae::gpu
