// Importance sampling on the device, in deterministic kernels (one thread per data point,
// samples in order, no atomics):
//   training (the IWAE objective): per data point b, lw_k = log p(x|z_k) + log p(z_k) -
//     log q(z_k|x) over its K rows; the normalized weights w_k = softmax(lw)_k / n (n: the
//     batch) and the bound log (1/K) sum_k exp(lw_k), as cpu::importance_weights and
//     CpuModel::run compute them (same float operations in the same order);
//   estimates of log p(x) (Backend::estimate_log_likelihood): the samples of each data
//     point sit at offset i * iw_stride of the iw_q / iw_prior streams; a chunk of them is
//     copied into (n*c, Z) rows, and per data point a running log-sum-exp in double adds
//     the chunk's samples in order (as the CPU path's LogSumExp), then one thread adds the
//     data points in order into the sums.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

namespace vae::gpu {

// row_logp, lpq (n*K) -> w (n*K): softmax over each data point's K rows, divided by
// `divisor` (the batch size n: w_k / n is each row's weight in the batch mean); bound (n).
void importance_weights(const float* row_logp, const float* lpq, int n, int K, int divisor, float* w, float* bound,
                        cudaStream_t stream);

// A running log-sum-exp per data point, and the reconstruction sum, in double.
struct IwRunning {
  double q_max, q_sum;  // log-weights of the samples from q(z|x)
  double p_max, p_sum;  // log p(x|z) of the samples from the prior
  double recon;         // -sum log p(x|z) over the samples from q
};

struct DeviceLikelihoodSums {
  double recon = 0, kl = 0, iwae = 0, prior = 0;
  long long count = 0;
};

// eps (n*c, Z), row i*c + s <- noise[i*stride + (c0 + s)*Z + j], j < Z.
void iw_gather_chunk(const float* noise, int n, std::size_t stride, int c0, int c, int Z, float* eps,
                     cudaStream_t stream);
// run[i] <- empty (max -inf, sums 0) for i < n.
void iw_reset(IwRunning* run, int n, cudaStream_t stream);
// Adds a chunk of c samples per data point (rows i*c + s of row_logp and lpq): with lpq,
// samples from q (log-weight row_logp + lpq, recon -= row_logp); without, from the prior.
void iw_accumulate(const float* row_logp, const float* lpq, int n, int c, IwRunning* run, cudaStream_t stream);
// One thread, data points in order: total += the IWAE bound, the prior estimate and the
// recon of each (k samples each), and the KL sum of kl (n).
void iw_finish(const IwRunning* run, const float* kl, int n, int k, DeviceLikelihoodSums* total, cudaStream_t stream);

}  // namespace vae::gpu
