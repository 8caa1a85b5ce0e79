// The decoder likelihood, forward and backward in one pass: for each of the R = n*L rows
// of output-layer results o (R, D) (bias not yet added), log p(x|z) per row and, in the
// same pass, d(loss)/d(logits) = scale_r * d(-log p)/do, written over o. Bernoulli
// (logits) or Gaussian (means; fixed sigma, or a learned per-dimension log-variance). The
// output-bias gradient and the log-variance gradient are deterministic column sums, and
// each row's log p is a deterministic sum over its column tiles.
//
// Three modes:
//   forward:   row log p only; o is left alone;
//   backward:  row log p, and the gradient with one scale 1/(n*L) for every row (the ELBO);
//   weighted:  the gradient only, row r scaled by row_scale[r] (IWAE's second phase: the
//              normalized importance weights / n, computed from the forward mode's log p).
#pragma once
#include <cuda_runtime_api.h>

#include "column_sum.cuh"
#include "vae/config.h"

namespace vae::gpu {

enum class LikelihoodMode { forward, backward, weighted };

struct LikelihoodArgs {
  float* out = nullptr;           // (R, output_width): o without bias in; with a gradient mode, d loss / d o out
  const float* bias = nullptr;    // (output_width)
  const float* logvar = nullptr;  // (D) learned Gaussian log-variance, or null
  const float* x = nullptr;       // (n, data_width) targets, then a condition; row r uses x[r / L]
  int n = 0;
  int L = 0;                      // samples per data point: R = n*L rows
  const float* row_scale = nullptr;  // (R) weighted mode: each row's gradient scale
  float* dbias = nullptr;      // (D) gradient modes
  float* dlogvar = nullptr;    // (D) gradient modes with a learned log-variance
  float* row_logp = nullptr;   // (R) log p(x | z_r): forward and backward modes
  const float* zi = nullptr;   // (D) the ZINB's zero-inflation logits per feature, or null (per item: out's columns [D, 2D))
  float* dzi = nullptr;        // (D) their gradient (gradient modes, ZINB; per item: the output bias's of [D, 2D))
  const float* row_offset = nullptr;  // (n) --library-size: added to every output of data point r / L, or null
};

// The column sums a gradient mode writes for cfg's likelihood: d bias, then d logvar (or
// d log theta), then the ZINB's d zero-inflation logit. The reduce scratch must hold them.
int likelihood_column_sums(const ModelConfig& cfg);

// cfg gives D, the likelihood and sigma.
void likelihood_forward_backward(const ModelConfig& cfg, const LikelihoodArgs& a, LikelihoodMode mode,
                                 const ReduceScratch& scratch, cudaStream_t stream);

// --library-size: offset[b] = ew::log_library(the sum of the D counts of row b of x (n, ldx)),
// one block per row; the counts are integers, so the sum is exact in float (below 2^24)
// and equals the CPU's in any order.
void library_offsets(const float* x, int n, int D, int ldx, float* offset, cudaStream_t stream);

// The decoder's means (R, D) from the output-layer results o (R, output_width; bias not yet
// added): ew::decoder_mean(o + bias) of the first D columns, i.e. sigmoid for Bernoulli, the
// mean for Gaussian, exp for the counts. means may be out itself when output_width is D.
void decoder_mean(const ModelConfig& cfg, const float* out, const float* bias, int R, float* means, cudaStream_t stream);

}  // namespace vae::gpu
