// The latent layer, forward and backward in one file each way:
//   forward:  head += bias; z_l = mu + exp(s/2) * eps_l for l < L (row b*L+l); KL per data
//             point; and, for importance weights, log p(z_l) - log q(z_l|x) per row; all in
//             one kernel (one warp per data point);
//   backward, in one kernel each with the head-bias gradient as a deterministic column sum:
//     reparameterization (ELBO): d mu = sum_l dz_l + beta/n * mu, d s = 1/2 sum_l dz_l eps_l
//       exp(s/2) + beta/n (exp(s)-1)/2 (ew::latent_dmu / ew::latent_ds);
//     score function (ELBO): -(1/(nL)) sum_l log p(x|z_l) grad log q(z_l|x) plus the KL's
//       closed-form gradient (ew::score_dmu / ew::score_ds); needs no dz;
//     IWAE: from dz = -w_k d log p/dz (w: normalized weights / n) plus the prior's w_k z:
//       d mu = sum_k d_k, d s = 1/2 sum_k d_k eps_k exp(s/2) - 1/2 sum_k w_k.
// The noise is read at eps_block + *eps_offset: the offset lives in device memory (the step
// record), so a captured graph reads the current step's noise at every replay. beta too is
// read from device memory (the record's), and beta/n is formed in float on the device as
// the CPU forms it (float(beta) / float(n)).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "column_sum.cuh"

namespace vae::gpu {

// head (n, 2Z) in place: columns [0,Z) mu, [Z,2Z) s = log-variance, bias (2Z) added.
// eps (n*L, Z) at eps_block + (*eps_offset, or 0 when eps_offset is null); z (n*L, Z); kl (n);
// lpq (n*L, nullable): log p(z) - log q(z|x) per row.
void latent_forward(float* head, const float* bias, const float* eps_block, const std::int64_t* eps_offset, int n,
                    int L, int Z, float* z, float* kl, float* lpq, cudaStream_t stream);

// What the three backward kernels read; each names what it needs.
struct LatentBackwardArgs {
  const float* head = nullptr;              // (n, 2Z) mu | s, bias added
  const float* eps_block = nullptr;         // eps (n*L, Z) at eps_block + *eps_offset
  const std::int64_t* eps_offset = nullptr;  // device; null means 0
  int n = 0, L = 0, Z = 0;
  const float* dz = nullptr;        // (n*L, Z) d loss / dz: reparameterization, IWAE
  const double* beta = nullptr;     // device: the KL weight: reparameterization, score
  const float* row_logp = nullptr;  // (n*L) log p(x|z): score
  const float* z = nullptr;         // (n*L, Z): IWAE
  const float* w = nullptr;         // (n*L) normalized importance weights / n: IWAE
  float* dhead = nullptr;           // (n, 2Z) out: (d mu, d s)
  float* dbias = nullptr;           // (2Z) out: column sums of dhead
};

void latent_backward(const LatentBackwardArgs& a, const ReduceScratch& scratch, cudaStream_t stream);
void latent_backward_score(const LatentBackwardArgs& a, const ReduceScratch& scratch, cudaStream_t stream);
void latent_backward_iwae(const LatentBackwardArgs& a, const ReduceScratch& scratch, cudaStream_t stream);

}  // namespace vae::gpu
