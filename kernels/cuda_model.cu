// Forward and backward pass of the MLP VAE on the device, mirroring CpuModel::forward and
// CpuModel::backward step by step:
//   x (n, D) -> encoder [GEMM, bias+act] -> head GEMM -> latent kernel (bias, z, KL)
//   -> decoder [GEMM, bias+act] -> output GEMM -> likelihood kernel (bias, log p, d/dlogits)
//   backward: output GEMMs, [act'+bias-grad kernel, GEMMs] per layer, latent backward kernel.
#include <algorithm>

#include "cuda_check.cuh"
#include "cuda_model.cuh"
#include "latent.cuh"
#include "layers.cuh"
#include "likelihood.cuh"
#include "vae/error.h"

namespace vae::gpu {

CudaModel::CudaModel(const ModelConfig& cfg, int max_batch, cudaStream_t stream, cublasHandle_t blas)
    : cfg_(cfg), layout_(cfg), max_batch_(max_batch), total_(layout_.total()), stream_(stream), blas_(blas) {
  if (max_batch <= 0) throw_error("CudaModel: max_batch must be positive, got ", max_batch);
  const std::size_t B = static_cast<std::size_t>(max_batch);
  const std::size_t R = B * static_cast<std::size_t>(cfg.samples);
  const std::size_t D = static_cast<std::size_t>(cfg.input_dim);
  const std::size_t Z = static_cast<std::size_t>(cfg.latent);
  const int W = layout_.max_width();
  if (R > static_cast<std::size_t>(1) << 30) throw_error("CudaModel: batch x samples = ", R, " rows is too many");

  flat_ = DeviceBuffer<float>(4 * total_, "the flat parameter buffer (params, grads, Adam m and v)");
  x_ = DeviceBuffer<float>(B * D, "the input batch");
  for (const auto& l : layout_.encoder()) enc_act_.emplace_back(B * l.out, "encoder activations");
  for (const auto& l : layout_.decoder()) dec_act_.emplace_back(R * l.out, "decoder activations");
  head_ = DeviceBuffer<float>(B * 2 * Z, "the latent head (mu, logvar)");
  z_ = DeviceBuffer<float>(R * Z, "latent samples z");
  logits_ = DeviceBuffer<float>(R * D, "decoder outputs");
  grad_a_ = DeviceBuffer<float>(R * W, "backward activations (a)");
  grad_b_ = DeviceBuffer<float>(R * W, "backward activations (b)");
  row_logp_ = DeviceBuffer<float>(R, "per-sample log-likelihoods");
  kl_ = DeviceBuffer<float>(B, "per-item KL");
  recon_ = DeviceBuffer<float>(B, "per-item reconstruction loss");

  // One scratch for every fused reduction: the largest (rows, cols, sums) any of them needs.
  const int rows = static_cast<int>(R);
  const int cols = std::max(W, static_cast<int>(D));
  const std::size_t partial =
      std::max({reduce_partial_floats(rows, cols, 1, false), reduce_partial_floats(max_batch, cfg.latent, 2, false),
                reduce_partial_floats(rows, cfg.input_dim, 2, true)});
  partial_ = DeviceBuffer<float>(partial, "reduction scratch");
  counters_ = DeviceBuffer<unsigned>(reduce_counter_count(rows, cols), "reduction counters");
  scratch_ = ReduceScratch{partial_.get(), partial_.size(), counters_.get(), counters_.size()};

  VAE_CUDA_CHECK(cudaMemsetAsync(flat_.get(), 0, flat_.bytes(), stream_));
  VAE_CUDA_CHECK(cudaMemsetAsync(counters_.get(), 0, counters_.bytes(), stream_));
  VAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaModel::forward(const float* eps_block, const std::int64_t* eps_offset, int n, bool backward) {
  if (n <= 0 || n > max_batch_) throw_error("CudaModel::forward: batch of ", n, " rows, expected 1..", max_batch_);
  if (!eps_block) throw_error("CudaModel::forward: no noise block");
  const int L = cfg_.samples, Z = cfg_.latent;
  const int R = n * L;
  float* p = params();
  float* g = grads();

  const float* h = x_.get();
  for (std::size_t i = 0; i < layout_.encoder().size(); ++i) {
    const auto& l = layout_.encoder()[i];
    float* out = enc_act_[i].get();
    linear_forward(blas_, n, l.in, l.out, h, p + l.weight, out);
    bias_act_forward(cfg_.activation, out, p + l.bias, n, l.out, stream_);
    h = out;
  }
  const auto& hd = layout_.head();
  linear_forward(blas_, n, hd.in, hd.out, h, p + hd.weight, head_.get());
  latent_forward(head_.get(), p + hd.bias, eps_block, eps_offset, n, L, Z, z_.get(), kl_.get(), stream_);

  const float* a = z_.get();
  for (std::size_t i = 0; i < layout_.decoder().size(); ++i) {
    const auto& l = layout_.decoder()[i];
    float* out = dec_act_[i].get();
    linear_forward(blas_, R, l.in, l.out, a, p + l.weight, out);
    bias_act_forward(cfg_.activation, out, p + l.bias, R, l.out, stream_);
    a = out;
  }
  const auto& out = layout_.output();
  linear_forward(blas_, R, out.in, out.out, a, p + out.weight, logits_.get());

  LikelihoodArgs la;
  la.out = logits_.get();
  la.bias = p + out.bias;
  la.logvar = layout_.has_logvar() ? p + layout_.logvar() : nullptr;
  la.x = x_.get();
  la.n = n;
  la.dbias = backward ? g + out.bias : nullptr;
  la.dlogvar = backward && layout_.has_logvar() ? g + layout_.logvar() : nullptr;
  la.row_logp = row_logp_.get();
  likelihood_forward_backward(cfg_, la, backward, scratch_, stream_);
  if (backward) this->backward(eps_block, eps_offset, n);
}

void CudaModel::backward(const float* eps_block, const std::int64_t* eps_offset, int n) {
  const int L = cfg_.samples, Z = cfg_.latent;
  const int R = n * L;
  const float* p = params();
  float* g = grads();
  float* dcur = grad_a_.get();
  float* dnext = grad_b_.get();

  // Output layer: logits_ holds d loss / d logits (R, D); its bias gradient is done.
  const auto& out = layout_.output();
  const float* dec_last = dec_act_.empty() ? z_.get() : dec_act_.back().get();
  linear_weight_grad(blas_, R, out.in, out.out, logits_.get(), dec_last, g + out.weight);
  linear_input_grad(blas_, R, out.in, out.out, logits_.get(), p + out.weight, dcur);

  for (std::size_t k = layout_.decoder().size(); k-- > 0;) {
    const auto& l = layout_.decoder()[k];
    act_backward_bias_grad(cfg_.activation, dcur, dec_act_[k].get(), R, l.out, g + l.bias, scratch_, stream_);
    const float* in = k == 0 ? z_.get() : dec_act_[k - 1].get();
    linear_weight_grad(blas_, R, l.in, l.out, dcur, in, g + l.weight);
    linear_input_grad(blas_, R, l.in, l.out, dcur, p + l.weight, dnext);
    std::swap(dcur, dnext);
  }

  // dcur = d loss / dz (R, Z) -> dnext = (d mu, d s) (n, 2Z); beta/n in float, as the CPU.
  const auto& hd = layout_.head();
  const float beta_scale = static_cast<float>(cfg_.beta) / static_cast<float>(n);
  latent_backward(head_.get(), eps_block, eps_offset, dcur, n, L, Z, beta_scale, dnext, g + hd.bias, scratch_, stream_);
  std::swap(dcur, dnext);
  const float* enc_last = enc_act_.empty() ? x_.get() : enc_act_.back().get();
  linear_weight_grad(blas_, n, hd.in, hd.out, dcur, enc_last, g + hd.weight);
  if (enc_act_.empty()) return;
  linear_input_grad(blas_, n, hd.in, hd.out, dcur, p + hd.weight, dnext);
  std::swap(dcur, dnext);

  for (std::size_t k = layout_.encoder().size(); k-- > 0;) {
    const auto& l = layout_.encoder()[k];
    act_backward_bias_grad(cfg_.activation, dcur, enc_act_[k].get(), n, l.out, g + l.bias, scratch_, stream_);
    const float* in = k == 0 ? x_.get() : enc_act_[k - 1].get();
    linear_weight_grad(blas_, n, l.in, l.out, dcur, in, g + l.weight);
    if (k == 0) break;  // no gradient for the data
    linear_input_grad(blas_, n, l.in, l.out, dcur, p + l.weight, dnext);
    std::swap(dcur, dnext);
  }
}

}  // namespace vae::gpu
