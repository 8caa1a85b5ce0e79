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
CpuModel<T>::CpuModel(const ModelConfig& cfg, int max_batch) : cfg_(cfg), layout_(cfg), max_batch_(max_batch) {
  if (max_batch <= 0) throw_error("CpuModel: max_batch must be positive, got ", max_batch);
  const std::size_t B = static_cast<std::size_t>(max_batch);
  const std::size_t R = B * static_cast<std::size_t>(cfg.samples);
  params_.assign(layout_.total(), T(0));
  grads_.assign(layout_.total(), T(0));
  for (const auto& l : layout_.encoder()) enc_act_.emplace_back(B * l.out);
  for (const auto& l : layout_.decoder()) dec_act_.emplace_back(R * l.out);
  head_.assign(B * 2 * cfg.latent, T(0));
  z_.assign(R * cfg.latent, T(0));
  logits_.assign(R * cfg.input_dim, T(0));
  grad_a_.assign(R * layout_.max_width(), T(0));
  grad_b_.assign(R * layout_.max_width(), T(0));
  row_logp_.assign(R, T(0));
  if (layout_.has_logvar()) dlv_rows_.assign(R * cfg.input_dim, T(0));
  recon_.assign(B, T(0));
  kl_.assign(B, T(0));
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
  if (n <= 0 || n > max_batch_) throw_error("CpuModel::forward: batch of ", n, " rows, expected 1..", max_batch_);
  const int L = cfg_.samples, Z = cfg_.latent;
  const int R = n * L;
  T* p = params_.data();
  T* g = grads_.data();

  const T* h = encode(x, n);
  const auto& hd = layout_.head();
  blas::linear_forward(n, hd.in, hd.out, h, p + hd.weight, head_.data());
  latent_forward(head_.data(), p + hd.bias, eps, n, L, Z, z_.data(), kl_.data());

  const T* a = decode(z_.data(), R);
  const auto& out = layout_.output();
  blas::linear_forward(R, out.in, out.out, a, p + out.weight, logits_.data());
  const T* logvar = layout_.has_logvar() ? p + layout_.logvar() : nullptr;
  const T scale = T(1) / T(R);
  if (backward) {
    likelihood_pass<T, true>(cfg_, logits_.data(), p + out.bias, logvar, x, n, scale, dlv_rows_.data(), row_logp_.data());
    column_sums(logits_.data(), R, out.out, g + out.bias);
    if (logvar) column_sums(dlv_rows_.data(), R, out.out, g + layout_.logvar());
  } else {
    likelihood_pass<T, false>(cfg_, logits_.data(), p + out.bias, logvar, x, n, scale, nullptr, row_logp_.data());
  }

  LossSums sums;
  sums.count = n;
  for (int b = 0; b < n; ++b) {
    T lp = 0;
    for (int l = 0; l < L; ++l) lp += row_logp_[static_cast<std::size_t>(b) * L + l];
    recon_[b] = -lp / T(L);
    sums.recon += double(recon_[b]);
    sums.kl += double(kl_[b]);
  }
  sums.loss = sums.recon + cfg_.beta * sums.kl;
  if (backward) this->backward(x, eps, n);
  return sums;
}

template <class T>
void CpuModel<T>::backward(const T* x, const T* eps, int n) {
  const int L = cfg_.samples, Z = cfg_.latent;
  const int R = n * L;
  const T* p = params_.data();
  T* g = grads_.data();
  T* dcur = grad_a_.data();
  T* dnext = grad_b_.data();

  // Output layer: logits_ holds d loss / d logits (R, D); its bias grad is done.
  const auto& out = layout_.output();
  const T* dec_last = dec_act_.empty() ? z_.data() : dec_act_.back().data();
  blas::linear_weight_grad(R, out.in, out.out, logits_.data(), dec_last, g + out.weight);
  blas::linear_input_grad(R, out.in, out.out, logits_.data(), p + out.weight, dcur);

  for (std::size_t k = layout_.decoder().size(); k-- > 0;) {
    const auto& l = layout_.decoder()[k];
    act_backward_bias_grad(cfg_.activation, dcur, dec_act_[k].data(), R, l.out, g + l.bias);
    const T* in = k == 0 ? z_.data() : dec_act_[k - 1].data();
    blas::linear_weight_grad(R, l.in, l.out, dcur, in, g + l.weight);
    blas::linear_input_grad(R, l.in, l.out, dcur, p + l.weight, dnext);
    std::swap(dcur, dnext);
  }

  // dcur = d loss / dz (R, Z) -> dnext = (d mu, d s) (n, 2Z)
  const auto& hd = layout_.head();
  latent_backward(head_.data(), eps, dcur, n, L, Z, T(cfg_.beta) / T(n), dnext, g + hd.bias);
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
void CpuModel<T>::decode_mean(const T* z, int n, T* result) {
  if (n <= 0 || n > max_batch_ * cfg_.samples)
    throw_error("CpuModel::decode_mean: ", n, " codes, expected 1..", max_batch_ * cfg_.samples);
  const T* a = decode(z, n);
  const auto& out = layout_.output();
  const T* p = params_.data();
  blas::linear_forward(n, out.in, out.out, a, p + out.weight, logits_.data());
  for (int r = 0; r < n; ++r)
    for (int d = 0; d < out.out; ++d) {
      const std::size_t i = static_cast<std::size_t>(r) * out.out + d;
      const T o = logits_[i] + p[out.bias + d];
      result[i] = cfg_.likelihood == Likelihood::bernoulli ? T(1) / (T(1) + ew::exp_(-o)) : o;
    }
}

template class CpuModel<float>;
template class CpuModel<double>;

}  // namespace vae
