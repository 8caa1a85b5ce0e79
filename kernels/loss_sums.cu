// Loss-sum kernel (one block, fixed-order tree in double) and its launcher; the backend's
// accumulators and their read-back.
#include "cuda_check.cuh"
#include "loss_sums.cuh"
#include "vae/error.h"

namespace vae::gpu {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    loss_accumulate_kernel(const float* __restrict__ row_logp, const float* __restrict__ kl,
                           const float* __restrict__ bound, int n, int L, const double* __restrict__ beta,
                           float* __restrict__ recon, DeviceLossSums* __restrict__ out, bool accumulate) {
  __shared__ double rs[kThreads], ks[kThreads], bs[kThreads];
  double r_sum = 0, k_sum = 0, b_sum = 0;
  for (int b = threadIdx.x; b < n; b += kThreads) {
    float lp = 0.0f;  // in float and in this order, as CpuModel::run
    for (int l = 0; l < L; ++l) lp += row_logp[static_cast<std::size_t>(b) * L + l];
    const float rb = -lp / static_cast<float>(L);
    if (recon) recon[b] = rb;
    r_sum += double(rb);
    k_sum += double(kl[b]);
    if (bound) b_sum += double(bound[b]);
  }
  rs[threadIdx.x] = r_sum;
  ks[threadIdx.x] = k_sum;
  bs[threadIdx.x] = b_sum;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) {
      rs[threadIdx.x] += rs[threadIdx.x + s];
      ks[threadIdx.x] += ks[threadIdx.x + s];
      bs[threadIdx.x] += bs[threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double loss = bound ? -bs[0] : rs[0] + *beta * ks[0];
    if (accumulate) {
      out->recon += rs[0];
      out->kl += ks[0];
      out->loss += loss;
      out->count += n;
    } else {
      out->recon = rs[0];
      out->kl = ks[0];
      out->loss = loss;
      out->count = n;
    }
  }
}

}  // namespace

void loss_accumulate(const float* row_logp, const float* kl, const float* bound, int n, int L, const double* beta,
                     float* recon, DeviceLossSums* out, bool accumulate, cudaStream_t stream) {
  if (n <= 0 || L <= 0) throw_error("loss_accumulate: n and L must be positive, got ", n, ", ", L);
  if (!row_logp || !kl || !out) throw_error("loss_accumulate: null device pointer");
  if (!bound && !beta) throw_error("loss_accumulate: the ELBO loss needs beta (a device pointer)");
  loss_accumulate_kernel<<<1, kThreads, 0, stream>>>(row_logp, kl, bound, n, L, beta, recon, out, accumulate);
  VAE_LAUNCH_CHECK("loss_accumulate_kernel");
}

LossAccumulators::LossAccumulators(int slots, cudaStream_t stream)
    : stream_(stream), device_(static_cast<std::size_t>(slots), "loss accumulators"), host_(1, "loss read-back") {
  VAE_CUDA_CHECK(cudaMemsetAsync(device_.get(), 0, device_.bytes(), stream_));
}

void LossAccumulators::clear(int i) { VAE_CUDA_CHECK(cudaMemsetAsync(slot(i), 0, sizeof(DeviceLossSums), stream_)); }

LossSums LossAccumulators::take(int i) {
  VAE_CUDA_CHECK(cudaMemcpyAsync(host_.get(), slot(i), sizeof(DeviceLossSums), cudaMemcpyDeviceToHost, stream_));
  clear(i);
  VAE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the one sync per report
  const DeviceLossSums& h = *host_.get();
  LossSums s;
  s.loss = h.loss;
  s.recon = h.recon;
  s.kl = h.kl;
  s.count = h.count;
  return s;
}

void LossAccumulators::restore(int i, const LossSums& s) {
  DeviceLossSums* h = host_.get();
  h->loss = s.loss;
  h->recon = s.recon;
  h->kl = s.kl;
  h->count = s.count;
  VAE_CUDA_CHECK(cudaMemcpyAsync(slot(i), h, sizeof(DeviceLossSums), cudaMemcpyHostToDevice, stream_));
  VAE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the pinned slot is free again
}

}  // namespace vae::gpu
