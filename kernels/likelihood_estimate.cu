// The log-likelihood estimates on the device (likelihood_estimate.cuh).
#include <algorithm>

#include "backend_shared.h"
#include "cuda_check.cuh"
#include "device_data.cuh"
#include "device_memory.cuh"
#include "importance.cuh"
#include "likelihood_estimate.cuh"
#include "noise.cuh"
#include "rng.h"

namespace vae::gpu {
namespace {
// Sample rows per pass, and noise values per group of data points (each of iw_q and
// iw_prior); samples per pass and data point: kIwChunk, the CPU path's.
constexpr int kIwRows = 8192;
constexpr std::size_t kIwNoiseValues = std::size_t(1) << 22;
}  // namespace

// A model sized for n_max data points x chunk samples (its parameters copied in per run),
// the iw_q / iw_prior noise of n_max data points, the per-data-point running sums.
struct LikelihoodEstimate::Workspace {
  Workspace(const ModelConfig& m, std::uint64_t seed, int n_max_, int chunk_, std::size_t stride_,
            cudaStream_t stream, cublasHandle_t blas, LtBiasRelu* lt)
      : n_max(n_max_),
        chunk(chunk_),
        stride(stride_),
        model(m, n_max_, n_max_ * chunk_, stream, blas, lt),
        q_noise(derive_seed(seed, RngStream::iw_q), NoiseBlock::Kind::normal, stride_,
                static_cast<std::size_t>(n_max_) * stride_, stream, "log p(x) estimate noise (q)"),
        prior_noise(derive_seed(seed, RngStream::iw_prior), NoiseBlock::Kind::normal, stride_,
                    static_cast<std::size_t>(n_max_) * stride_, stream, "log p(x) estimate noise (prior)"),
        eps(static_cast<std::size_t>(n_max_) * static_cast<std::size_t>(chunk_) * static_cast<std::size_t>(m.latent),
            "log p(x) estimate samples"),
        stage(static_cast<std::size_t>(n_max_) * static_cast<std::size_t>(data_width(m)) * 4, "log p(x) estimate rows"),
        running(static_cast<std::size_t>(n_max_), "log p(x) estimate running sums"),
        totals(1, "log p(x) estimate sums"),
        host_totals(1, "log p(x) estimate read-back") {}

  int n_max, chunk;
  std::size_t stride;
  CudaModel model;
  NoiseBlock q_noise, prior_noise;
  DeviceBuffer<float> eps;              // (n_max * chunk, Z)
  DeviceBuffer<unsigned char> stage;    // (n_max, D) rows, uint8 or float
  DeviceBuffer<IwRunning> running;      // (n_max)
  DeviceBuffer<DeviceLikelihoodSums> totals;
  PinnedBuffer<DeviceLikelihoodSums> host_totals;
};

LikelihoodEstimate::LikelihoodEstimate(const ModelConfig& model, std::uint64_t seed, int max_batch,
                                       cudaStream_t stream, cublasHandle_t blas, LtBiasRelu* lt)
    : model_(model), seed_(seed), max_batch_(max_batch), stream_(stream), blas_(blas), lt_(lt) {}

LikelihoodEstimate::~LikelihoodEstimate() = default;

LikelihoodEstimate::Workspace& LikelihoodEstimate::workspace(int n_max, int chunk, std::size_t stride) {
  if (!w_ || w_->n_max != n_max || w_->chunk != chunk || w_->stride != stride) {
    w_.reset();  // free the old one first
    w_ = std::make_unique<Workspace>(model_, seed_, n_max, chunk, stride, stream_, blas_, lt_);
  }
  return *w_;
}

LikelihoodSums LikelihoodEstimate::run(const CudaModel& trained, const Dataset& data, int k, RecordRing& ring) {
  const int Z = model_.latent;
  const int chunk = std::min(k, kIwChunk);
  const std::size_t stride = RngPlan::iw_stride(model_, k);
  const int n_max = static_cast<int>(std::max<std::size_t>(
      1, std::min({static_cast<std::size_t>(max_batch_), static_cast<std::size_t>(kIwRows / chunk),
                   kIwNoiseValues / stride})));
  Workspace& w = workspace(n_max, chunk, stride);
  CudaModel& m = w.model;
  cudaStream_t st = stream_;
  VAE_CUDA_CHECK(cudaMemcpyAsync(m.params(), trained.params(), trained.total() * sizeof(float),
                                 cudaMemcpyDeviceToDevice, st));
  VAE_CUDA_CHECK(cudaMemsetAsync(w.totals.get(), 0, sizeof(DeviceLikelihoodSums), st));
  for (std::int64_t begin = 0; begin < data.count; begin += n_max) {
    const int n = static_cast<int>(std::min<std::int64_t>(n_max, data.count - begin));
    StepHeader h;
    h.step = begin;
    upload_rows(data, begin, n, h, w.stage.get(), m.x(), ring, st);
    iw_reset(w.running.get(), n, st);
    for (int use_prior = 0; use_prior < 2; ++use_prior) {
      NoiseBlock& noise = use_prior ? w.prior_noise : w.q_noise;
      const float* block = noise.data() + noise.prepare(begin);  // data points begin .. begin + n_max
      for (int c0 = 0; c0 < k; c0 += chunk) {
        const int c = std::min(chunk, k - c0);
        iw_gather_chunk(block, n, stride, c0, c, Z, w.eps.get(), st);
        if (use_prior) {
          m.decode_log_likelihood(w.eps.get(), n, c);  // z = eps ~ N(0, I)
          iw_accumulate(m.row_logp(), nullptr, n, c, w.running.get(), st);
        } else {
          m.run(w.eps.get(), nullptr, n, c, Pass::forward, nullptr);
          iw_accumulate(m.row_logp(), m.lpq(), n, c, w.running.get(), st);
        }
      }
    }
    iw_finish(w.running.get(), m.kl(), n, k, w.totals.get(), st);
  }
  VAE_CUDA_CHECK(cudaMemcpyAsync(w.host_totals.get(), w.totals.get(), sizeof(DeviceLikelihoodSums),
                                 cudaMemcpyDeviceToHost, st));
  VAE_CUDA_CHECK(cudaStreamSynchronize(st));
  const DeviceLikelihoodSums& t = *w.host_totals.get();
  LikelihoodSums out;
  out.recon = t.recon;
  out.kl = t.kl;
  out.iwae = t.iwae;
  out.prior = t.prior;
  out.count = t.count;
  out.k = k;
  return out;
}

}  // namespace vae::gpu
