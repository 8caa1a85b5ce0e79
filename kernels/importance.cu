// Importance-weight and log-likelihood-estimate kernels and their launchers (see
// importance.cuh).
#include <math.h>

#include <algorithm>

#include "cuda_check.cuh"
#include "elementwise.h"
#include "importance.cuh"
#include "vae/error.h"

namespace vae::gpu {
namespace {

constexpr int kThreads = 128;

int blocks_for(std::size_t n) { return static_cast<int>(std::max<std::size_t>(1, (n + kThreads - 1) / kThreads)); }

// One thread per data point: cpu::importance_weights, then the division by the batch size
// CpuModel::run applies, with the same float operations in the same order.
__global__ void importance_weights_kernel(const float* __restrict__ row_logp, const float* __restrict__ lpq, int n,
                                          int K, float divisor, float* __restrict__ w, float* __restrict__ bound) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= n) return;
  const std::size_t r0 = static_cast<std::size_t>(b) * K;
  float mx = -INFINITY;
  for (int k = 0; k < K; ++k) mx = fmaxf(mx, row_logp[r0 + k] + lpq[r0 + k]);
  float sum = 0.0f;
  for (int k = 0; k < K; ++k) {
    const float e = ew::exp_(row_logp[r0 + k] + lpq[r0 + k] - mx);
    w[r0 + k] = e;
    sum += e;
  }
  for (int k = 0; k < K; ++k) w[r0 + k] = w[r0 + k] / sum / divisor;
  bound[b] = mx + ew::log_(sum) - ew::log_(static_cast<float>(K));
}

// The CPU path's running log-sum-exp (ew::logsumexp_add), in double.
__device__ __forceinline__ void lse_add(double& mx, double& sum, double v) { ew::logsumexp_add(mx, sum, v); }
__device__ __forceinline__ double lse_log_mean(double mx, double sum, int k) {
  return ew::logsumexp_log_mean(mx, sum, k);
}

__global__ void iw_gather_chunk_kernel(const float* __restrict__ noise, int n, std::size_t stride, int c0, int c, int Z,
                                       float* __restrict__ eps) {
  const std::size_t total = static_cast<std::size_t>(n) * c * Z;
  for (std::size_t e = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t row = e / Z, j = e - row * Z;
    const std::size_t i = row / c, s = row - i * c;
    eps[e] = noise[i * stride + (static_cast<std::size_t>(c0) + s) * Z + j];
  }
}

__global__ void iw_reset_kernel(IwRunning* run, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) run[i] = IwRunning{-INFINITY, 0.0, -INFINITY, 0.0, 0.0};
}

__global__ void iw_accumulate_kernel(const float* __restrict__ row_logp, const float* __restrict__ lpq, int n, int c,
                                     IwRunning* __restrict__ run) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  IwRunning r = run[i];
  for (int s = 0; s < c; ++s) {
    const std::size_t row = static_cast<std::size_t>(i) * c + s;
    const double lp = double(row_logp[row]);
    if (lpq) {
      lse_add(r.q_max, r.q_sum, lp + double(lpq[row]));
      r.recon -= lp;
    } else {
      lse_add(r.p_max, r.p_sum, lp);
    }
  }
  run[i] = r;
}

__global__ void iw_finish_kernel(const IwRunning* __restrict__ run, const float* __restrict__ kl, int n, int k,
                                 DeviceLikelihoodSums* __restrict__ total) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  DeviceLikelihoodSums t = *total;
  double kl_sum = 0;
  for (int i = 0; i < n; ++i) {
    const IwRunning r = run[i];
    t.iwae += lse_log_mean(r.q_max, r.q_sum, k);
    t.prior += lse_log_mean(r.p_max, r.p_sum, k);
    t.recon += r.recon / k;
    kl_sum += double(kl[i]);
  }
  t.kl += kl_sum;
  t.count += n;
  *total = t;
}

void check_n(const char* who, int n) {
  if (n <= 0) throw_error(who, ": n must be positive, got ", n);
}

}  // namespace

void importance_weights(const float* row_logp, const float* lpq, int n, int K, int divisor, float* w, float* bound,
                        cudaStream_t stream) {
  check_n("importance_weights", n);
  if (K <= 0 || divisor <= 0) throw_error("importance_weights: K and divisor must be positive, got ", K, ", ", divisor);
  if (!row_logp || !lpq || !w || !bound) throw_error("importance_weights: null device pointer");
  importance_weights_kernel<<<blocks_for(static_cast<std::size_t>(n)), kThreads, 0, stream>>>(
      row_logp, lpq, n, K, static_cast<float>(divisor), w, bound);
  VAE_LAUNCH_CHECK("importance_weights_kernel");
}

void iw_gather_chunk(const float* noise, int n, std::size_t stride, int c0, int c, int Z, float* eps,
                     cudaStream_t stream) {
  check_n("iw_gather_chunk", n);
  if (c <= 0 || Z <= 0 || c0 < 0) throw_error("iw_gather_chunk: bad chunk ", c0, " + ", c, " of ", Z, " dims");
  if (static_cast<std::size_t>(c0 + c) * static_cast<std::size_t>(Z) > stride)
    throw_error("iw_gather_chunk: samples ", c0, "..", c0 + c, " of ", Z, " dims do not fit a stride of ", stride);
  if (!noise || !eps) throw_error("iw_gather_chunk: null device pointer");
  const std::size_t total = static_cast<std::size_t>(n) * c * Z;
  iw_gather_chunk_kernel<<<std::min(blocks_for(total), 4096), kThreads, 0, stream>>>(noise, n, stride, c0, c, Z, eps);
  VAE_LAUNCH_CHECK("iw_gather_chunk_kernel");
}

void iw_reset(IwRunning* run, int n, cudaStream_t stream) {
  check_n("iw_reset", n);
  if (!run) throw_error("iw_reset: null device pointer");
  iw_reset_kernel<<<blocks_for(static_cast<std::size_t>(n)), kThreads, 0, stream>>>(run, n);
  VAE_LAUNCH_CHECK("iw_reset_kernel");
}

void iw_accumulate(const float* row_logp, const float* lpq, int n, int c, IwRunning* run, cudaStream_t stream) {
  check_n("iw_accumulate", n);
  if (c <= 0) throw_error("iw_accumulate: c must be positive, got ", c);
  if (!row_logp || !run) throw_error("iw_accumulate: null device pointer");
  iw_accumulate_kernel<<<blocks_for(static_cast<std::size_t>(n)), kThreads, 0, stream>>>(row_logp, lpq, n, c, run);
  VAE_LAUNCH_CHECK("iw_accumulate_kernel");
}

void iw_finish(const IwRunning* run, const float* kl, int n, int k, DeviceLikelihoodSums* total, cudaStream_t stream) {
  check_n("iw_finish", n);
  if (k <= 0) throw_error("iw_finish: k must be positive, got ", k);
  if (!run || !kl || !total) throw_error("iw_finish: null device pointer");
  iw_finish_kernel<<<1, 32, 0, stream>>>(run, kl, n, k, total);
  VAE_LAUNCH_CHECK("iw_finish_kernel");
}

}  // namespace vae::gpu
