// Likelihood kernel (log p per row and d loss / d logits in one pass, with the output-bias
// and log-variance gradients) and its launcher (see likelihood.cuh).
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "cuda_check.cuh"
#include "elementwise.h"
#include "likelihood.cuh"
#include "vae/error.h"

namespace vae::gpu {
namespace {

// zinb_item: the ZINB with its zero-inflation logits in the output rows' columns [D, 2D).
enum class Kind { bernoulli, poisson, negative_binomial, zinb, zinb_item, gaussian_fixed, gaussian_learned };
__host__ __device__ constexpr bool zero_inflated(Kind k) { return k == Kind::zinb || k == Kind::zinb_item; }
// The kinds with a learned per-feature parameter, read from `logvar` (log theta for the
// negative binomial) and summed into `dlogvar`.
__host__ __device__ constexpr bool per_feature(Kind k) {
  return k == Kind::gaussian_learned || k == Kind::negative_binomial || zero_inflated(k);
}

// Grid (column tiles of D, chunks of R rows), block (kTileCols, kLanes); out's rows are ldo
// long (D; 2D for zinb_item, whose logit gradients' column sums are the bias's of [D, 2D),
// written to dzi). Thread (c, r):
// one element per row of its lane. A warp is one row of a tile: its log p partial is a
// warp sum, written to row_partial[r][tile]; the last tile block of a row chunk adds the
// tiles in order into row_logp. Column partials of d bias (and d logvar) as column_sum.cuh.
template <Kind K, LikelihoodMode M>
__global__ void __launch_bounds__(kTileCols* kLanes)
    likelihood_kernel(float* __restrict__ out, const float* __restrict__ bias, const float* __restrict__ logvar,
                      const float* __restrict__ x, int ldx, int ldo, int L, int R, int D, float scale,
                      const float* __restrict__ row_scale, float fixed_lv, float fixed_iv, float* __restrict__ dbias,
                      float* __restrict__ dlogvar, float* __restrict__ row_logp, float* __restrict__ partial,
                      unsigned* __restrict__ counters, const float* __restrict__ zi, float* __restrict__ dzi,
                      const float* __restrict__ row_offset) {
  constexpr bool kGrad = M != LikelihoodMode::forward;
  constexpr bool kRowSums = M != LikelihoodMode::weighted;
  constexpr int NV = zero_inflated(K) ? 3 : per_feature(K) ? 2 : 1;  // d bias, d logvar / log theta, d zi
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int col = blockIdx.x * kTileCols + tx;
  const int ntiles = static_cast<int>(gridDim.x);
  const int nchunks = static_cast<int>(gridDim.y);
  float* row_partial = partial + (kGrad ? static_cast<std::size_t>(NV) * nchunks * D : 0);  // (R, ntiles)

  float lv = fixed_lv, iv = fixed_iv;
  if (per_feature(K) && col < D) {
    lv = logvar[col];
    iv = ew::exp_(-lv);
  }
  const float b = col < D ? bias[col] : 0.0f;
  const float w = K == Kind::zinb && col < D ? zi[col] : K == Kind::zinb_item && col < D ? bias[D + col] : 0.0f;
  float acc[NV];
#pragma unroll
  for (int v = 0; v < NV; ++v) acc[v] = 0.0f;

  const int r0 = blockIdx.y * kChunkRows + ty;
#pragma unroll
  for (int k = 0; k < kChunkRows / kLanes; ++k) {
    const int r = r0 + k * kLanes;  // the same for the whole warp
    if (r < R) {
      float lp = 0.0f;
      if (col < D) {
        const std::size_t i = static_cast<std::size_t>(r) * ldo + col;
        const float xv = x[static_cast<std::size_t>(r / L) * ldx + col];
        const float o = out[i] + b + (row_offset ? row_offset[r / L] : 0.0f);
        const float sc = M == LikelihoodMode::weighted ? row_scale[r] : scale;
        if constexpr (K == Kind::bernoulli || K == Kind::poisson) {
          float g;
          if constexpr (K == Kind::bernoulli) ew::bernoulli(xv, o, lp, g);
          else ew::poisson(xv, o, lp, g);
          if (kGrad) {
            g *= sc;
            out[i] = g;
            acc[0] += g;
          }
        } else {
          float gm, glv, gw = 0.0f;
          if constexpr (K == Kind::zinb) ew::zinb(xv, o, lv, w, lp, gm, glv, gw);
          else if constexpr (K == Kind::zinb_item) ew::zinb(xv, o, lv, out[i + D] + w, lp, gm, glv, gw);
          else if constexpr (K == Kind::negative_binomial) ew::negative_binomial(xv, o, lv, lp, gm, glv);
          else ew::gaussian(xv, o, lv, iv, lp, gm, glv);
          if (kGrad) {
            gm *= sc;
            out[i] = gm;
            acc[0] += gm;
            if constexpr (per_feature(K)) acc[1] += sc * glv;
            if constexpr (zero_inflated(K)) acc[2] += sc * gw;
            if constexpr (K == Kind::zinb_item) out[i + D] = sc * gw;
          }
        }
      }
      if constexpr (kRowSums) {
        lp = warp_sum(lp);
        if (tx == 0) row_partial[static_cast<std::size_t>(r) * ntiles + blockIdx.x] = lp;
      }
    }
  }

  if constexpr (kGrad) {
    write_column_partials<NV>(acc, D, partial);
    if (last_block_ticket(counters + blockIdx.x, nchunks)) {
      float* const outs[3] = {dbias, dlogvar, dzi};
      finish_column_sums<NV>(D, partial, outs);
    }
  }
  if constexpr (kRowSums) {
    if (last_block_ticket(counters + ntiles + blockIdx.y, ntiles)) {
      const int t = ty * kTileCols + tx;
      const int r = blockIdx.y * kChunkRows + t;
      if (t < kChunkRows && r < R) {
        float s = 0.0f;
        for (int k = 0; k < ntiles; ++k) s += __ldcg(row_partial + static_cast<std::size_t>(r) * ntiles + k);
        row_logp[r] = s;
      }
    }
  }
}

template <Kind K, LikelihoodMode M>
void launch(const ModelConfig& cfg, const LikelihoodArgs& a, float fixed_lv, float fixed_iv, const ReduceScratch& s,
            cudaStream_t stream) {
  const int D = cfg.input_dim;
  const int R = a.n * a.L;
  const float scale = 1.0f / static_cast<float>(R);  // as the CPU: T(1) / T(R)
  const dim3 grid(column_tiles(D), row_chunks(R));
  const dim3 block(kTileCols, kLanes);
  likelihood_kernel<K, M><<<grid, block, 0, stream>>>(a.out, a.bias, a.logvar, a.x, data_width(cfg), output_width(cfg),
                                                      a.L, R, D, scale,
                                                      a.row_scale,
                                                      fixed_lv, fixed_iv, a.dbias, a.dlogvar, a.row_logp, s.partial,
                                                      s.counters, a.zi, a.dzi, a.row_offset);
  VAE_LAUNCH_CHECK("likelihood_kernel");
}

template <Kind K>
void launch_mode(const ModelConfig& cfg, const LikelihoodArgs& a, LikelihoodMode mode, float fixed_lv, float fixed_iv,
                 const ReduceScratch& s, cudaStream_t stream) {
  switch (mode) {
    case LikelihoodMode::forward: return launch<K, LikelihoodMode::forward>(cfg, a, fixed_lv, fixed_iv, s, stream);
    case LikelihoodMode::backward: return launch<K, LikelihoodMode::backward>(cfg, a, fixed_lv, fixed_iv, s, stream);
    case LikelihoodMode::weighted: return launch<K, LikelihoodMode::weighted>(cfg, a, fixed_lv, fixed_iv, s, stream);
  }
}

// One block of kOffsetThreads per row: strided partial sums, then a fixed-order tree.
constexpr int kOffsetThreads = 128;
__global__ void __launch_bounds__(kOffsetThreads)
    library_offsets_kernel(const float* __restrict__ x, int D, int ldx, float* __restrict__ offset) {
  __shared__ float part[kOffsetThreads];
  const float* row = x + static_cast<std::size_t>(blockIdx.x) * ldx;
  float s = 0.0f;
  for (int d = threadIdx.x; d < D; d += kOffsetThreads) s += row[d];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = kOffsetThreads / 2; w > 0; w /= 2) {
    if (static_cast<int>(threadIdx.x) < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) offset[blockIdx.x] = ew::log_library(part[0]);
}

// Grid-stride over the R*D means; out's rows are ldo long.
__global__ void decoder_mean_kernel(const float* __restrict__ out, int ldo, const float* __restrict__ bias, int D,
                                    std::size_t total, Likelihood lik, float* __restrict__ means) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t r = i / static_cast<std::size_t>(D), d = i - r * static_cast<std::size_t>(D);
    means[i] = ew::decoder_mean(lik, out[r * ldo + d] + bias[d]);
  }
}

}  // namespace

void decoder_mean(const ModelConfig& cfg, const float* out, const float* bias, int R, float* means, cudaStream_t stream) {
  const int D = cfg.input_dim;
  if (R <= 0 || D <= 0) throw_error("decoder_mean: R and D must be positive, got ", R, " and ", D);
  if (!out || !bias || !means) throw_error("decoder_mean: null device pointer");
  if (out == means && output_width(cfg) != D) throw_error("decoder_mean: rows of ", output_width(cfg), " values cannot become means in place");
  const std::size_t total = static_cast<std::size_t>(R) * static_cast<std::size_t>(D);
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<std::size_t>((total + threads - 1) / threads, 4096));
  decoder_mean_kernel<<<blocks, threads, 0, stream>>>(out, output_width(cfg), bias, D, total, cfg.likelihood, means);
  VAE_LAUNCH_CHECK("decoder_mean_kernel");
}

void library_offsets(const float* x, int n, int D, int ldx, float* offset, cudaStream_t stream) {
  if (n <= 0 || D <= 0 || ldx < D) throw_error("library_offsets: n, D must be positive and ldx >= D, got ", n, ", ", D, ", ", ldx);
  if (!x || !offset) throw_error("library_offsets: null device pointer");
  library_offsets_kernel<<<n, kOffsetThreads, 0, stream>>>(x, D, ldx, offset);
  VAE_LAUNCH_CHECK("library_offsets_kernel");
}

int likelihood_column_sums(const ModelConfig& cfg) {
  return cfg.likelihood == Likelihood::zinb ? 3 : has_feature_parameter(cfg) ? 2 : 1;
}

void likelihood_forward_backward(const ModelConfig& cfg, const LikelihoodArgs& a, LikelihoodMode mode,
                                 const ReduceScratch& scratch, cudaStream_t stream) {
  const int D = cfg.input_dim;
  if (a.n <= 0 || a.L <= 0 || D <= 0)
    throw_error("likelihood_forward_backward: n, L and D must be positive, got ", a.n, ", ", a.L, ", ", D);
  if (!a.out || !a.bias || !a.x) throw_error("likelihood_forward_backward: null device pointer");
  const bool learned = has_feature_parameter(cfg);
  const bool grad = mode != LikelihoodMode::forward;
  const bool row_sums = mode != LikelihoodMode::weighted;
  const bool zero_inflated = cfg.likelihood == Likelihood::zinb, zi_item = zero_inflation_per_item(cfg);
  if (zero_inflated && ((!zi_item && !a.zi) || (grad && !a.dzi)))
    throw_error("likelihood_forward_backward: the ZINB needs its zero-inflation logits",
                grad ? (zi_item ? " gradient (the output bias of columns [D, 2D))" : " and their gradient") : "");
  if (learned && !a.logvar)
    throw_error("likelihood_forward_backward: the learned per-feature parameter (logvar or log theta) is missing");
  if (grad && (!a.dbias || (learned && !a.dlogvar)))
    throw_error("likelihood_forward_backward: the gradient needs dbias", learned ? " and dlogvar" : "");
  if (row_sums && !a.row_logp) throw_error("likelihood_forward_backward: row_logp is null");
  if (mode == LikelihoodMode::weighted && !a.row_scale)
    throw_error("likelihood_forward_backward: the weighted mode needs row_scale");
  const int R = a.n * a.L;
  const int nv = grad ? likelihood_column_sums(cfg) : 0;
  check_reduce_scratch(scratch, R, D, nv, row_sums, "likelihood_forward_backward");
  // The fixed log-variance and its inverse, as the CPU computes them.
  const float fixed_lv = static_cast<float>(2.0 * std::log(cfg.sigma));
  const float fixed_iv = static_cast<float>(1.0 / (cfg.sigma * cfg.sigma));
  if (cfg.likelihood == Likelihood::bernoulli)
    launch_mode<Kind::bernoulli>(cfg, a, mode, fixed_lv, fixed_iv, scratch, stream);
  else if (cfg.likelihood == Likelihood::poisson)
    launch_mode<Kind::poisson>(cfg, a, mode, fixed_lv, fixed_iv, scratch, stream);
  else if (cfg.likelihood == Likelihood::negative_binomial)
    launch_mode<Kind::negative_binomial>(cfg, a, mode, fixed_lv, fixed_iv, scratch, stream);
  else if (zi_item)
    launch_mode<Kind::zinb_item>(cfg, a, mode, fixed_lv, fixed_iv, scratch, stream);
  else if (zero_inflated)
    launch_mode<Kind::zinb>(cfg, a, mode, fixed_lv, fixed_iv, scratch, stream);
  else if (!learned)
    launch_mode<Kind::gaussian_fixed>(cfg, a, mode, fixed_lv, fixed_iv, scratch, stream);
  else
    launch_mode<Kind::gaussian_learned>(cfg, a, mode, fixed_lv, fixed_iv, scratch, stream);
}

}  // namespace vae::gpu
