// CPU forward and backward of the MLP VAE (CpuModel::run): the model's part of the training
// step, encoder to backward, as docs/ARCHITECTURE.md describes it under "One training
// step", with BLAS products and the fused passes of cpu_passes.h; the backward is
// backward_walk (host/backward_walk.h), shared with the CUDA model.
#include "cpu_model.h"

#include <algorithm>
#include <cmath>

#include "backward_walk.h"
#include "blas.h"
#include "cpu_passes.h"
#include "elementwise.h"
#include "vae/error.h"

namespace vae {
using namespace cpu;  // the fused passes

template <class T>
CpuModel<T>::CpuModel(const ModelConfig& cfg, int max_batch, int max_samples)
    : cfg_(cfg), layout_(cfg), max_batch_(max_batch), max_samples_(max_samples > 0 ? max_samples : cfg.samples) {
  if (max_batch <= 0) throw_error("CpuModel: max_batch must be positive, got ", max_batch);
  const std::size_t B = static_cast<std::size_t>(max_batch);
  const std::size_t R = B * static_cast<std::size_t>(max_samples_);
  params_.assign(layout_.total(), T(0));
  grads_.assign(layout_.total(), T(0));
  for (const auto& l : layout_.encoder()) enc_act_.emplace_back(B * l.out);
  for (const auto& l : layout_.decoder()) dec_act_.emplace_back(R * l.out);
  head_.assign(B * 2 * cfg.latent, T(0));
  z_.assign(R * cfg.latent, T(0));
  logits_.assign(R * output_width(cfg), T(0));
  grad_a_.assign(R * std::max(layout_.max_width(), 2 * cfg.latent), T(0));
  grad_b_.assign(R * std::max(layout_.max_width(), 2 * cfg.latent), T(0));
  row_logp_.assign(R, T(0));
  lpq_.assign(R, T(0));
  weights_.assign(R, T(0));
  if (layout_.has_logvar()) dlv_rows_.assign(R * cfg.input_dim, T(0));
  if (layout_.has_zi()) dzi_rows_.assign(R * cfg.input_dim, T(0));
  if (cfg.log1p_input) xin_.assign(B * data_width(cfg), T(0));
  if (cfg.condition_dim > 0) zc_.assign(R * decoder_input_dim(cfg), T(0));
  recon_.assign(B, T(0));
  kl_.assign(B, T(0));
  bound_.assign(B, T(0));
}

template <class T>
const T* CpuModel<T>::encode(const T* x, int n) {
  const T* in = x;
  if (cfg_.log1p_input) {  // the encoder's input; the likelihood keeps x (and the condition stays)
    const std::size_t W = static_cast<std::size_t>(data_width(cfg_)), m = static_cast<std::size_t>(n) * W;
    for (std::size_t k = 0; k < m; ++k) xin_[k] = k % W < static_cast<std::size_t>(cfg_.input_dim) ? ew::log1p_(x[k]) : x[k];
    in = xin_.data();
  }
  for (std::size_t i = 0; i < layout_.encoder().size(); ++i) {
    const auto& l = layout_.encoder()[i];
    T* out = enc_act_[i].data();
    blas::linear_forward(n, l.in, l.out, in, params_.data() + l.weight, out);
    bias_act(cfg_.activation, out, params_.data() + l.bias, n, l.out);
    in = out;
  }
  return in;
}

template <class T>
const T* CpuModel<T>::decoder_codes(const T* z, const T* x, int n, int L) {
  const int C = cfg_.condition_dim;
  if (C == 0) return z;
  const std::size_t Z = static_cast<std::size_t>(cfg_.latent), W = static_cast<std::size_t>(data_width(cfg_));
  for (std::size_t r = 0; r < static_cast<std::size_t>(n) * L; ++r) {  // [z_r, c of data point r / L]
    std::copy_n(z + r * Z, Z, zc_.data() + r * (Z + C));
    std::copy_n(x + (r / L) * W + cfg_.input_dim, C, zc_.data() + r * (Z + C) + Z);
  }
  return zc_.data();
}

template <class T>
const T* CpuModel<T>::decode(const T* z, int rows) {
  const T* in = z;
  for (std::size_t i = 0; i < layout_.decoder().size(); ++i) {
    const auto& l = layout_.decoder()[i];
    T* out = dec_act_[i].data();
    blas::linear_forward(rows, l.in, l.out, in, params_.data() + l.weight, out);
    bias_act(cfg_.activation, out, params_.data() + l.bias, rows, l.out);
    in = out;
  }
  return in;
}

template <class T>
LossSums CpuModel<T>::forward(const T* x, const T* eps, int n, bool backward) {
  return run(x, eps, n, cfg_.samples, cfg_.beta, backward ? Pass::elbo_reparam : Pass::forward);
}

template <class T>
LossSums CpuModel<T>::run(const T* x, const T* eps, int n, int L, double beta, Pass pass) {
  if (n <= 0 || n > max_batch_) throw_error("CpuModel: batch of ", n, " rows, expected 1..", max_batch_);
  if (L <= 0 || L > max_samples_) throw_error("CpuModel: ", L, " samples per data point, expected 1..", max_samples_);
  const int Z = cfg_.latent;
  const int R = n * L;
  T* p = params_.data();
  T* g = grads_.data();

  const T* h = encode(x, n);
  const auto& hd = layout_.head();
  blas::linear_forward(n, hd.in, hd.out, h, p + hd.weight, head_.data());
  latent_forward(head_.data(), p + hd.bias, eps, n, L, Z, z_.data(), kl_.data(), lpq_.data());

  const T* a = decode(decoder_codes(z_.data(), x, n, L), R);
  const auto& out = layout_.output();
  blas::linear_forward(R, out.in, out.out, a, p + out.weight, logits_.data());
  const T* logvar = layout_.has_logvar() ? p + layout_.logvar() : nullptr;
  const T* zi = layout_.has_zi() ? p + layout_.zi() : nullptr;
  if (pass == Pass::forward) {
    likelihood_pass<T, false>(cfg_, logits_.data(), p + out.bias, logvar, x, n, L, T(0), nullptr, row_logp_.data(), zi);
  } else if (pass == Pass::iwae) {
    // Gradients per row first (scale 1), then each row weighted by its normalized weight / n.
    likelihood_pass<T, true>(cfg_, logits_.data(), p + out.bias, logvar, x, n, L, T(1), dlv_rows_.data(),
                             row_logp_.data(), zi, dzi_rows_.data());
    importance_weights(row_logp_.data(), lpq_.data(), n, L, weights_.data(), bound_.data());
    for (int r = 0; r < R; ++r) weights_[r] /= T(n);
    scale_rows(logits_.data(), weights_.data(), R, out.out);
    if (logvar) scale_rows(dlv_rows_.data(), weights_.data(), R, cfg_.input_dim);
    if (zi) scale_rows(dzi_rows_.data(), weights_.data(), R, cfg_.input_dim);
  } else {
    likelihood_pass<T, true>(cfg_, logits_.data(), p + out.bias, logvar, x, n, L, T(1) / T(R), dlv_rows_.data(),
                             row_logp_.data(), zi, dzi_rows_.data());
  }
  if (pass != Pass::forward) {
    column_sums(logits_.data(), R, out.out, g + out.bias);
    if (logvar) column_sums(dlv_rows_.data(), R, cfg_.input_dim, g + layout_.logvar());
    if (zi) column_sums(dzi_rows_.data(), R, cfg_.input_dim, g + layout_.zi());
  }

  LossSums sums;
  sums.count = n;
  double bound_sum = 0;
  for (int b = 0; b < n; ++b) {
    T lp = 0;
    for (int l = 0; l < L; ++l) lp += row_logp_[static_cast<std::size_t>(b) * L + l];
    recon_[b] = -lp / T(L);
    sums.recon += double(recon_[b]);
    sums.kl += double(kl_[b]);
    if (pass == Pass::iwae) bound_sum += double(bound_[b]);
  }
  sums.loss = pass == Pass::iwae ? -bound_sum : sums.recon + beta * sums.kl;
  if (pass != Pass::forward) backward(x, eps, n, L, beta, pass);
  return sums;
}

// CpuModel's operations for backward_walk (host/backward_walk.h): BLAS products and the
// fused passes of cpu_passes.h on the model's buffers.
template <class T>
struct CpuModel<T>::BackwardOps {
  CpuModel& m;
  const T* x;    // (n, D)
  const T* eps;  // (n*L, Z)
  int n, L;
  double beta;

  const T* logits() const { return m.logits_.data(); }
  const T* decoder_in(std::size_t k) const {
    return k > 0 ? m.dec_act_[k - 1].data() : m.cfg_.condition_dim > 0 ? m.zc_.data() : m.z_.data();
  }
  const T* encoder_in(std::size_t k) const {
    return k > 0 ? m.enc_act_[k - 1].data() : m.cfg_.log1p_input ? m.xin_.data() : x;
  }
  void weight_grad(int rows, const LinearView& l, const T* dy, const T* in) {
    blas::linear_weight_grad(rows, l.in, l.out, dy, in, m.grads_.data() + l.weight);
  }
  void input_grad(int rows, const LinearView& l, const T* dy, T* dx, int used) {
    blas::linear_input_grad(rows, l.in, l.out, dy, m.params_.data() + l.weight, dx, used);
  }
  void act_bias_grad(int rows, const LinearView& l, T* dy, const T* y) {
    act_backward_bias_grad(m.cfg_.activation, dy, y, rows, l.out, m.grads_.data() + l.bias);
  }
  void latent_backward(Pass pass, const T* dz, T* dhead) {
    const int Z = m.cfg_.latent;
    const T* head = m.head_.data();
    T* dbias = m.grads_.data() + m.layout_.head().bias;
    switch (pass) {
      case Pass::elbo_reparam: cpu::latent_backward(head, eps, dz, n, L, Z, T(beta) / T(n), dhead, dbias); return;
      case Pass::elbo_score:
        latent_backward_score(head, eps, m.row_logp_.data(), n, L, Z, T(1) / T(n), T(beta) / T(n), dhead, dbias);
        return;
      case Pass::iwae: latent_backward_iwae(head, eps, m.z_.data(), m.weights_.data(), dz, n, L, Z, dhead, dbias); return;
      case Pass::forward: return;
    }
  }
};

template <class T>
void CpuModel<T>::backward(const T* x, const T* eps, int n, int L, double beta, Pass pass) {
  BackwardOps ops{*this, x, eps, n, L, beta};
  backward_walk(ops, layout_, n, L, pass, grad_a_.data(), grad_b_.data());
}

template <class T>
void CpuModel<T>::decode_log_likelihood(const T* x, const T* z, int n, int L) {
  if (n <= 0 || n > max_batch_ || L <= 0 || L > max_samples_)
    throw_error("CpuModel::decode_log_likelihood: ", n, " x ", L, " codes, expected at most ", max_batch_, " x ",
                max_samples_);
  const T* a = decode(decoder_codes(z, x, n, L), n * L);
  const auto& out = layout_.output();
  const T* p = params_.data();
  blas::linear_forward(n * L, out.in, out.out, a, p + out.weight, logits_.data());
  const T* logvar = layout_.has_logvar() ? p + layout_.logvar() : nullptr;
  likelihood_pass<T, false>(cfg_, logits_.data(), p + out.bias, logvar, x, n, L, T(0), nullptr, row_logp_.data(),
                            layout_.has_zi() ? p + layout_.zi() : nullptr);
}

template <class T>
void CpuModel<T>::decode_mean(const T* z, int n, T* result) {
  if (n <= 0 || n > max_batch_ * max_samples_)
    throw_error("CpuModel::decode_mean: ", n, " codes, expected 1..", max_batch_ * max_samples_);
  const T* a = decode(z, n);
  const auto& out = layout_.output();
  const T* p = params_.data();
  blas::linear_forward(n, out.in, out.out, a, p + out.weight, logits_.data());
  const int D = cfg_.input_dim;  // the first D outputs (per-item zero-inflation logits follow)
  for (int r = 0; r < n; ++r)
    for (int d = 0; d < D; ++d)
      result[static_cast<std::size_t>(r) * D + d] =
          ew::decoder_mean(cfg_.likelihood, logits_[static_cast<std::size_t>(r) * out.out + d] + p[out.bias + d]);
}

template class CpuModel<float>;
template class CpuModel<double>;

}  // namespace vae
