// The decoder likelihood, forward and backward in one pass: for each of the R = n*L rows
// of output-layer results o (R, D) (bias not yet added), log p(x|z) per row and, in the
// same pass, d(loss)/d(logits) = scale * d(-log p)/do with scale = 1/(n*L), written over o.
// Bernoulli (logits) or Gaussian (means; fixed sigma, or a learned per-dimension
// log-variance). The output-bias gradient and the log-variance gradient are deterministic
// column sums, and each row's log p is a deterministic sum over its column tiles.
#pragma once
#include <cuda_runtime_api.h>

#include "column_sum.cuh"
#include "vae/config.h"

namespace vae::gpu {

struct LikelihoodArgs {
  float* out = nullptr;           // (R, D): o without bias in; with backward, d loss / d logits out
  const float* bias = nullptr;    // (D)
  const float* logvar = nullptr;  // (D) learned Gaussian log-variance, or null
  const float* x = nullptr;       // (n, D) targets; row r uses x[r / L]
  int n = 0;
  float* dbias = nullptr;      // (D) with backward
  float* dlogvar = nullptr;    // (D) with backward and a learned log-variance
  float* row_logp = nullptr;   // (R) log p(x | z_r)
};

// cfg gives D, L, the likelihood and sigma. backward=false computes row_logp only.
void likelihood_forward_backward(const ModelConfig& cfg, const LikelihoodArgs& a, bool backward,
                                 const ReduceScratch& scratch, cudaStream_t stream);

}  // namespace vae::gpu
