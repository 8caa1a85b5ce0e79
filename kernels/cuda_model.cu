// Forward and backward pass of the MLP VAE on the device (CudaModel::run): the model's part
// of the training step, encoder to backward, as docs/ARCHITECTURE.md describes it under
// "One training step". The forward mirrors CpuModel::run step by step with cuBLAS and the
// fused kernels; the backward is the walk both share (host/backward_walk.h).
#include <algorithm>

#include "backward_walk.h"
#include "column_sum.cuh"
#include "cuda_check.cuh"
#include "cuda_model.cuh"
#include "elementwise.h"
#include "importance.cuh"
#include "latent.cuh"
#include "layers.cuh"
#include "likelihood.cuh"
#include "vae/error.h"
#include "vae/options.h"

namespace vae::gpu {

namespace {
int grid_for(std::size_t n) { return static_cast<int>(std::min<std::size_t>((n + 255) / 256, 4096)); }

// y = log(1 + x) on the D features of each row of width W (a condition after them is
// copied), grid-stride: the encoder's input under --log1p-input.
__global__ void log1p_kernel(const float* __restrict__ x, std::size_t n, int D, int W, float* __restrict__ y) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    y[i] = static_cast<int>(i % static_cast<std::size_t>(W)) < D ? ew::log1p_(x[i]) : x[i];
}

// zc (R, Z + C) = [z_r, the condition of data point r / L]: a conditional decoder's input,
// from z (R, Z) and x (n, W) whose last C columns are the condition. Grid-stride.
__global__ void append_condition_kernel(const float* __restrict__ z, const float* __restrict__ x, int L, int Z, int C,
                                        int W, std::size_t total, float* __restrict__ zc) {
  const std::size_t w = static_cast<std::size_t>(Z + C);
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t r = i / w;
    const int j = static_cast<int>(i - r * w);
    zc[i] = j < Z ? z[r * Z + j] : x[(r / L) * W + (W - C) + (j - Z)];
  }
}
}  // namespace

CudaModel::CudaModel(const ModelConfig& cfg, int max_batch, int max_rows, cudaStream_t stream, cublasHandle_t blas,
                     LtBiasRelu* lt)
    : cfg_(cfg),
      layout_(cfg),
      max_batch_(max_batch),
      max_rows_(max_rows),
      total_(layout_.total()),
      stream_(stream),
      blas_(blas),
      lt_(lt) {
  if (max_batch <= 0) throw_error("CudaModel: max_batch must be positive, got ", max_batch);
  if (max_rows < max_batch) throw_error("CudaModel: max_rows (", max_rows, ") must be >= max_batch (", max_batch, ")");
  if (max_rows > (1 << 30)) throw_error("CudaModel: ", max_rows, " sample rows (batch x samples) is too many");
  if (row_chunks(max_rows) > 65535)  // every fused pass tiles rows in grid.y; said here, before any allocation
    throw_error("CudaModel: ", max_rows, " sample rows (batch x samples) need ", row_chunks(max_rows), " row chunks of ",
                kChunkRows, "; the GPU grid allows at most 65535 (reduce ", flag_of("batch"), " or ", flag_of("samples"), ")");
  const std::size_t B = static_cast<std::size_t>(max_batch);
  const std::size_t R = static_cast<std::size_t>(max_rows);
  const std::size_t D = static_cast<std::size_t>(cfg.input_dim);
  const std::size_t X = static_cast<std::size_t>(data_width(cfg));  // D, then a condition
  const std::size_t Z = static_cast<std::size_t>(cfg.latent);
  const int W = layout_.max_width();

  flat_ = DeviceBuffer<float>(4 * total_, "the flat parameter buffer (params, grads, optimizer state)");
  x_ = DeviceBuffer<float>(B * X, "the input batch");
  if (cfg.log1p_input) xin_ = DeviceBuffer<float>(B * X, "the encoder's log(1 + x) input");
  if (cfg.library_size) lib_ = DeviceBuffer<float>(B, "per-item library offsets");
  if (cfg.condition_dim > 0)
    zc_ = DeviceBuffer<float>(R * static_cast<std::size_t>(decoder_input_dim(cfg)), "the decoder's input [z, c]");
  for (const auto& l : layout_.encoder()) enc_act_.emplace_back(B * l.out, "encoder activations");
  for (const auto& l : layout_.decoder()) dec_act_.emplace_back(R * l.out, "decoder activations");
  head_ = DeviceBuffer<float>(B * 2 * Z, "the latent head (mu, logvar)");
  z_ = DeviceBuffer<float>(R * Z, "latent samples z");
  logits_ = DeviceBuffer<float>(R * static_cast<std::size_t>(output_width(cfg)), "decoder outputs");
  grad_a_ = DeviceBuffer<float>(R * W, "backward activations (a)");
  grad_b_ = DeviceBuffer<float>(R * W, "backward activations (b)");
  row_logp_ = DeviceBuffer<float>(R, "per-sample log-likelihoods");
  lpq_ = DeviceBuffer<float>(R, "per-sample log p(z) - log q(z|x)");
  weights_ = DeviceBuffer<float>(R, "importance weights");
  kl_ = DeviceBuffer<float>(B, "per-item KL");
  recon_ = DeviceBuffer<float>(B, "per-item reconstruction loss");
  bound_ = DeviceBuffer<float>(B, "per-item IWAE bound");

  // One scratch for every fused reduction: the largest (rows, cols, sums) any of them needs.
  const int rows = max_rows;
  const int cols = std::max(W, static_cast<int>(D));
  const std::size_t partial =
      std::max({reduce_partial_floats(rows, cols, 1, false), reduce_partial_floats(max_batch, cfg.latent, 2, false),
                reduce_partial_floats(rows, cfg.input_dim, likelihood_column_sums(cfg), true)});
  scratch_ = ReduceScratchBuffers(partial, rows, cols, stream_);

  VAE_CUDA_CHECK(cudaMemsetAsync(flat_.get(), 0, flat_.bytes(), stream_));
  VAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaModel::linear_act(int rows, const LinearView& l, const float* in, float* out) {
  const float* p = params();
  if (lt_ && cfg_.activation == Activation::relu &&
      lt_->forward(rows, l.in, l.out, in, p + l.weight, p + l.bias, out, stream_))
    return;
  linear_forward(blas_, rows, l.in, l.out, in, p + l.weight, out);
  bias_act_forward(cfg_.activation, out, p + l.bias, rows, l.out, stream_);
}

const float* CudaModel::decoder_codes(const float* z, int n, int L) {
  const int C = cfg_.condition_dim;
  if (C == 0) return z;
  const std::size_t total = static_cast<std::size_t>(n) * L * decoder_input_dim(cfg_);
  append_condition_kernel<<<grid_for(total), 256, 0, stream_>>>(z, x_.get(), L, cfg_.latent, C, data_width(cfg_), total,
                                                                zc_.get());
  VAE_LAUNCH_CHECK("append_condition_kernel");
  return zc_.get();
}

const float* CudaModel::decode(const float* z, int rows) {
  const float* a = z;
  for (std::size_t i = 0; i < layout_.decoder().size(); ++i) {
    float* out = dec_act_[i].get();
    linear_act(rows, layout_.decoder()[i], a, out);
    a = out;
  }
  return a;
}

void CudaModel::run(const float* eps_block, const std::int64_t* eps_offset, int n, int L, Pass pass,
                    const double* beta) {
  if (n <= 0 || n > max_batch_) throw_error("CudaModel::run: batch of ", n, " rows, expected 1..", max_batch_);
  if (L <= 0 || static_cast<long long>(n) * L > max_rows_)
    throw_error("CudaModel::run: ", n, " x ", L, " sample rows, expected at most ", max_rows_);
  if (!eps_block) throw_error("CudaModel::run: no noise block");
  if ((pass == Pass::elbo_reparam || pass == Pass::elbo_score) && !beta)
    throw_error("CudaModel::run: the ELBO gradient needs beta (a device pointer)");
  const int Z = cfg_.latent;
  float* p = params();
  float* g = grads();

  const float* h = x_.get();
  if (cfg_.log1p_input) {  // the encoder's input; the likelihood keeps x (and the condition stays)
    const int W = data_width(cfg_);
    const std::size_t m = static_cast<std::size_t>(n) * W;
    log1p_kernel<<<grid_for(m), 256, 0, stream_>>>(x_.get(), m, cfg_.input_dim, W, xin_.get());
    VAE_LAUNCH_CHECK("log1p_kernel");
    h = xin_.get();
  }
  for (std::size_t i = 0; i < layout_.encoder().size(); ++i) {
    float* out = enc_act_[i].get();
    linear_act(n, layout_.encoder()[i], h, out);
    h = out;
  }
  const auto& hd = layout_.head();
  linear_forward(blas_, n, hd.in, hd.out, h, p + hd.weight, head_.get());
  const bool want_lpq = pass == Pass::forward || pass == Pass::iwae;
  latent_forward(head_.get(), p + hd.bias, eps_block, eps_offset, n, L, Z, z_.get(), kl_.get(),
                 want_lpq ? lpq_.get() : nullptr, stream_);

  const auto& out = layout_.output();
  LikelihoodArgs la = decode_output(decoder_codes(z_.get(), n, L), n, L);
  if (pass != Pass::forward) {
    la.dbias = g + out.bias;
    la.dlogvar = layout_.has_logvar() ? g + layout_.logvar() : nullptr;
    la.dzi = layout_.has_zi()                 ? g + layout_.zi()
             : zero_inflation_per_item(cfg_) ? g + out.bias + cfg_.input_dim  // the logits' bias, columns [D, 2D)
                                             : nullptr;
  }
  switch (pass) {
    case Pass::forward: likelihood_forward_backward(cfg_, la, LikelihoodMode::forward, scratch_.view(), stream_); return;
    case Pass::iwae:
      // log p per row, then the weights (/ n) and the bound, then each row's gradient times its weight.
      likelihood_forward_backward(cfg_, la, LikelihoodMode::forward, scratch_.view(), stream_);
      importance_weights(row_logp_.get(), lpq_.get(), n, L, n, weights_.get(), bound_.get(), stream_);
      la.row_scale = weights_.get();
      likelihood_forward_backward(cfg_, la, LikelihoodMode::weighted, scratch_.view(), stream_);
      break;
    case Pass::elbo_reparam:
    case Pass::elbo_score: likelihood_forward_backward(cfg_, la, LikelihoodMode::backward, scratch_.view(), stream_); break;
  }
  backward(eps_block, eps_offset, n, L, pass, beta);
}

// CudaModel's operations for backward_walk (host/backward_walk.h): cuBLAS products and the
// fused kernels on the model's buffers, enqueued on its stream.
struct CudaModel::BackwardOps {
  CudaModel& m;
  const float* eps_block;
  const std::int64_t* eps_offset;  // device
  int n, L;
  const double* beta;  // device

  const float* logits() const { return m.logits_.get(); }
  const float* decoder_in(std::size_t k) const {
    return k > 0 ? m.dec_act_[k - 1].get() : m.cfg_.condition_dim > 0 ? m.zc_.get() : m.z_.get();
  }
  const float* encoder_in(std::size_t k) const {
    return k > 0 ? m.enc_act_[k - 1].get() : m.cfg_.log1p_input ? m.xin_.get() : m.x_.get();
  }
  void weight_grad(int rows, const LinearView& l, const float* dy, const float* in) {
    linear_weight_grad(m.blas_, rows, l.in, l.out, dy, in, m.grads() + l.weight);
  }
  void input_grad(int rows, const LinearView& l, const float* dy, float* dx, int used) {
    linear_input_grad(m.blas_, rows, l.in, l.out, dy, m.params() + l.weight, dx, used);
  }
  void act_bias_grad(int rows, const LinearView& l, float* dy, const float* y) {
    act_backward_bias_grad(m.cfg_.activation, dy, y, rows, l.out, m.grads() + l.bias, m.scratch_.view(), m.stream_);
  }
  void latent_backward(Pass pass, const float* dz, float* dhead) {
    LatentBackwardArgs lb;
    lb.head = m.head_.get();
    lb.eps_block = eps_block;
    lb.eps_offset = eps_offset;
    lb.n = n;
    lb.L = L;
    lb.Z = m.cfg_.latent;
    lb.dz = dz;
    lb.beta = beta;
    lb.row_logp = m.row_logp_.get();
    lb.z = m.z_.get();
    lb.w = m.weights_.get();
    lb.dhead = dhead;
    lb.dbias = m.grads() + m.layout_.head().bias;
    switch (pass) {
      case Pass::elbo_reparam: gpu::latent_backward(lb, m.scratch_.view(), m.stream_); return;
      case Pass::elbo_score: latent_backward_score(lb, m.scratch_.view(), m.stream_); return;
      case Pass::iwae: latent_backward_iwae(lb, m.scratch_.view(), m.stream_); return;
      case Pass::forward: return;
    }
  }
};

void CudaModel::backward(const float* eps_block, const std::int64_t* eps_offset, int n, int L, Pass pass,
                         const double* beta) {
  BackwardOps ops{*this, eps_block, eps_offset, n, L, beta};
  backward_walk(ops, layout_, n, L, pass, grad_a_.get(), grad_b_.get());
}

void CudaModel::decode_log_likelihood(const float* z, int n, int L) {
  if (n <= 0 || n > max_batch_ || L <= 0 || static_cast<long long>(n) * L > max_rows_)
    throw_error("CudaModel::decode_log_likelihood: ", n, " x ", L, " codes, expected at most ", max_batch_,
                " data points and ", max_rows_, " rows");
  if (!z) throw_error("CudaModel::decode_log_likelihood: no codes");
  likelihood_forward_backward(cfg_, decode_output(decoder_codes(z, n, L), n, L), LikelihoodMode::forward,
                              scratch_.view(), stream_);
}

const float* CudaModel::decode_mean(const float* z, int rows) {
  if (rows <= 0 || rows > max_rows_)
    throw_error("CudaModel::decode_mean: ", rows, " codes, expected 1..", max_rows_);
  if (!z) throw_error("CudaModel::decode_mean: no codes");
  output_logits(z, rows);
  // Into the backward's scratch (R x the widest layer, D at least): no pass is running.
  decoder_mean(cfg_, logits_.get(), params() + layout_.output().bias, rows, grad_a_.get(), stream_);
  return grad_a_.get();
}

void CudaModel::output_logits(const float* z, int rows) {
  const auto& out = layout_.output();
  linear_forward(blas_, rows, out.in, out.out, decode(z, rows), params() + out.weight, logits_.get());
}

LikelihoodArgs CudaModel::decode_output(const float* z, int n, int L) {
  output_logits(z, n * L);
  const auto& out = layout_.output();
  const float* p = params();
  LikelihoodArgs la;
  la.out = logits_.get();
  la.bias = p + out.bias;
  la.logvar = layout_.has_logvar() ? p + layout_.logvar() : nullptr;
  la.zi = layout_.has_zi() ? p + layout_.zi() : nullptr;
  la.x = x_.get();
  la.n = n;
  la.L = L;
  la.row_logp = row_logp_.get();
  if (cfg_.library_size) {
    library_offsets(x_.get(), n, cfg_.input_dim, data_width(cfg_), lib_.get(), stream_);
    la.row_offset = lib_.get();
  }
  return la;
}

}  // namespace vae::gpu
