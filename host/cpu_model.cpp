// CPU forward and backward of the MLP VAE. Data flow and formulas: docs/ARCHITECTURE.md.
//   x (n, D) -> encoder [GEMM, bias+act] -> head GEMM -> latent pass (bias, z, KL)
//   -> decoder [GEMM, bias+act] -> output GEMM -> likelihood pass (bias, log p, d/dlogits)
//   backward: output GEMMs, [act'+bias-grad pass, GEMMs] per layer, latent backward pass.
#include "cpu_model.h"

#include <algorithm>
#include <cmath>

#include "blas.h"
#include "cpu_passes.h"
#include "vae/elementwise.h"
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
  logits_.assign(R * cfg.input_dim, T(0));
  grad_a_.assign(R * std::max(layout_.max_width(), 2 * cfg.latent), T(0));
  grad_b_.assign(R * std::max(layout_.max_width(), 2 * cfg.latent), T(0));
  row_logp_.assign(R, T(0));
  lpq_.assign(R, T(0));
  weights_.assign(R, T(0));
  if (layout_.has_logvar()) dlv_rows_.assign(R * cfg.input_dim, T(0));
  recon_.assign(B, T(0));
  kl_.assign(B, T(0));
  bound_.assign(B, T(0));
}

template <class T>
const T* CpuModel<T>::encode(const T* x, int n) {
  const T* in = x;
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

  const T* a = decode(z_.data(), R);
  const auto& out = layout_.output();
  blas::linear_forward(R, out.in, out.out, a, p + out.weight, logits_.data());
  const T* logvar = layout_.has_logvar() ? p + layout_.logvar() : nullptr;
  if (pass == Pass::forward) {
    likelihood_pass<T, false>(cfg_, logits_.data(), p + out.bias, logvar, x, n, L, T(0), nullptr, row_logp_.data());
  } else if (pass == Pass::iwae) {
    // Gradients per row first (scale 1), then each row weighted by its normalized weight / n.
    likelihood_pass<T, true>(cfg_, logits_.data(), p + out.bias, logvar, x, n, L, T(1), dlv_rows_.data(),
                             row_logp_.data());
    importance_weights(row_logp_.data(), lpq_.data(), n, L, weights_.data(), bound_.data());
    for (int r = 0; r < R; ++r) weights_[r] /= T(n);
    scale_rows(logits_.data(), weights_.data(), R, out.out);
    if (logvar) scale_rows(dlv_rows_.data(), weights_.data(), R, out.out);
  } else {
    likelihood_pass<T, true>(cfg_, logits_.data(), p + out.bias, logvar, x, n, L, T(1) / T(R), dlv_rows_.data(),
                             row_logp_.data());
  }
  if (pass != Pass::forward) {
    column_sums(logits_.data(), R, out.out, g + out.bias);
    if (logvar) column_sums(dlv_rows_.data(), R, out.out, g + layout_.logvar());
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

template <class T>
void CpuModel<T>::backward(const T* x, const T* eps, int n, int L, double beta, Pass pass) {
  const int Z = cfg_.latent;
  const int R = n * L;
  const T* p = params_.data();
  T* g = grads_.data();
  T* dcur = grad_a_.data();
  T* dnext = grad_b_.data();
  const bool need_dz = pass != Pass::elbo_score;  // the score estimator does not go through z

  // Output layer: logits_ holds d loss / d logits (R, D); its bias gradient is done.
  const auto& out = layout_.output();
  const T* dec_last = dec_act_.empty() ? z_.data() : dec_act_.back().data();
  blas::linear_weight_grad(R, out.in, out.out, logits_.data(), dec_last, g + out.weight);
  if (need_dz || !dec_act_.empty()) blas::linear_input_grad(R, out.in, out.out, logits_.data(), p + out.weight, dcur);

  for (std::size_t k = layout_.decoder().size(); k-- > 0;) {
    const auto& l = layout_.decoder()[k];
    act_backward_bias_grad(cfg_.activation, dcur, dec_act_[k].data(), R, l.out, g + l.bias);
    const T* in = k == 0 ? z_.data() : dec_act_[k - 1].data();
    blas::linear_weight_grad(R, l.in, l.out, dcur, in, g + l.weight);
    if (k == 0 && !need_dz) break;
    blas::linear_input_grad(R, l.in, l.out, dcur, p + l.weight, dnext);
    std::swap(dcur, dnext);
  }

  // dcur = d loss / dz (R, Z) -> dnext = (d mu, d s) (n, 2Z)
  const auto& hd = layout_.head();
  switch (pass) {
    case Pass::elbo_reparam:
      latent_backward(head_.data(), eps, dcur, n, L, Z, T(beta) / T(n), dnext, g + hd.bias);
      break;
    case Pass::elbo_score:
      latent_backward_score(head_.data(), eps, row_logp_.data(), n, L, Z, T(1) / T(n), T(beta) / T(n), dnext,
                            g + hd.bias);
      break;
    case Pass::iwae:
      latent_backward_iwae(head_.data(), eps, z_.data(), weights_.data(), dcur, n, L, Z, dnext, g + hd.bias);
      break;
    case Pass::forward: return;
  }
  std::swap(dcur, dnext);
  const T* enc_last = enc_act_.empty() ? x : enc_act_.back().data();
  blas::linear_weight_grad(n, hd.in, hd.out, dcur, enc_last, g + hd.weight);
  if (enc_act_.empty()) return;
  blas::linear_input_grad(n, hd.in, hd.out, dcur, p + hd.weight, dnext);
  std::swap(dcur, dnext);

  for (std::size_t k = layout_.encoder().size(); k-- > 0;) {
    const auto& l = layout_.encoder()[k];
    act_backward_bias_grad(cfg_.activation, dcur, enc_act_[k].data(), n, l.out, g + l.bias);
    const T* in = k == 0 ? x : enc_act_[k - 1].data();
    blas::linear_weight_grad(n, l.in, l.out, dcur, in, g + l.weight);
    if (k == 0) break;  // no gradient for the data
    blas::linear_input_grad(n, l.in, l.out, dcur, p + l.weight, dnext);
    std::swap(dcur, dnext);
  }
}

template <class T>
void CpuModel<T>::decode_log_likelihood(const T* x, const T* z, int n, int L) {
  if (n <= 0 || n > max_batch_ || L <= 0 || L > max_samples_)
    throw_error("CpuModel::decode_log_likelihood: ", n, " x ", L, " codes, expected at most ", max_batch_, " x ",
                max_samples_);
  const T* a = decode(z, n * L);
  const auto& out = layout_.output();
  const T* p = params_.data();
  blas::linear_forward(n * L, out.in, out.out, a, p + out.weight, logits_.data());
  const T* logvar = layout_.has_logvar() ? p + layout_.logvar() : nullptr;
  likelihood_pass<T, false>(cfg_, logits_.data(), p + out.bias, logvar, x, n, L, T(0), nullptr, row_logp_.data());
}

template <class T>
void CpuModel<T>::decode_mean(const T* z, int n, T* result) {
  if (n <= 0 || n > max_batch_ * max_samples_)
    throw_error("CpuModel::decode_mean: ", n, " codes, expected 1..", max_batch_ * max_samples_);
  const T* a = decode(z, n);
  const auto& out = layout_.output();
  const T* p = params_.data();
  blas::linear_forward(n, out.in, out.out, a, p + out.weight, logits_.data());
  for (int r = 0; r < n; ++r)
    for (int d = 0; d < out.out; ++d) {
      const std::size_t i = static_cast<std::size_t>(r) * out.out + d;
      result[i] = ew::decoder_mean(cfg_.likelihood, logits_[i] + p[out.bias + d]);
    }
}

template class CpuModel<float>;
template class CpuModel<double>;

}  // namespace vae
