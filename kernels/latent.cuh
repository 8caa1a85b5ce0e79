// The latent layer, forward and backward in one file each way:
//   forward:  head += bias; z_l = mu + exp(s/2) * eps_l for l < L (row b*L+l); KL per data
//             point, all in one kernel (one warp per data point);
//   backward: d mu = sum_l dz_l + beta/n * mu, d s = 1/2 sum_l dz_l eps_l exp(s/2)
//             + beta/n (exp(s)-1)/2 (ew::latent_dmu / ew::latent_ds), and the head-bias
//             gradient as a deterministic column sum, in one kernel.
// The noise is read at eps_block + *eps_offset: the offset lives in device memory (the step
// record), so a captured graph reads the current step's noise at every replay.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "column_sum.cuh"

namespace vae::gpu {

// head (n, 2Z) in place: columns [0,Z) mu, [Z,2Z) s = log-variance, bias (2Z) added.
// eps (n*L, Z) at eps_block + (*eps_offset, or 0 when eps_offset is null); z (n*L, Z); kl (n).
void latent_forward(float* head, const float* bias, const float* eps_block, const std::int64_t* eps_offset, int n,
                    int L, int Z, float* z, float* kl, cudaStream_t stream);

// From dz (n*L, Z) and the biased head (n, 2Z) to dhead (n, 2Z) = (d mu, d s); dbias (2Z) =
// column sums of dhead. beta_scale = beta / n (as the CPU computes it, in float).
void latent_backward(const float* head, const float* eps_block, const std::int64_t* eps_offset, const float* dz,
                     int n, int L, int Z, float beta_scale, float* dhead, float* dbias, const ReduceScratch& scratch,
                     cudaStream_t stream);

}  // namespace vae::gpu
