// CPU forward and backward of the MLP VAE. Data flow and formulas: docs/ARCHITECTURE.md.
//   x (n, D) -> encoder [GEMM, bias+act] -> head GEMM -> latent pass (bias, z, KL)
//   -> decoder [GEMM, bias+act] -> output GEMM -> likelihood pass (bias, log p, d/dlogits)
//   backward: output GEMMs, [act'+bias-grad pass, GEMMs] per layer, latent backward pass.
#include "cpu_model.h"

#include <algorithm>
#include <cmath>

#include "blas.h"
#include "vae/elementwise.h"
#include "vae/error.h"

namespace vae {
namespace {

// ---- fused elementwise passes ---------------------------------------------------------
// Each pass is parallel over OpenMP threads (the pool OpenBLAS uses too). Row work splits
// by rows; column sums (bias gradients) split by columns, each column summed over the rows
// in order by one thread, so results do not depend on the number of threads.

constexpr int kColumnTile = 64;

// Column sums db[c] = sum_r g[r, c] for c in [c0, c1), rows in order.
template <class T>
void column_sums(const T* g, int rows, int cols, int c0, int c1, T* db) {
  for (int c = c0; c < c1; ++c) db[c] = T(0);
  for (int r = 0; r < rows; ++r) {
    const T* row = g + static_cast<std::size_t>(r) * cols;
    for (int c = c0; c < c1; ++c) db[c] += row[c];
  }
}

template <class T>
void column_sums(const T* g, int rows, int cols, T* db) {
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < cols; c0 += kColumnTile) column_sums(g, rows, cols, c0, std::min(cols, c0 + kColumnTile), db);
}

// y = act(y + b), rows x cols, in place.
template <Activation A, class T>
void bias_act(T* y, const T* b, int rows, int cols) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    T* row = y + static_cast<std::size_t>(r) * cols;
    for (int c = 0; c < cols; ++c) row[c] = ew::act_forward<A>(row[c] + b[c]);
  }
}

// dy <- dy * act'(y) in place, and db = column sums of the result.
template <Activation A, class T>
void act_backward_bias_grad(T* dy, const T* y, int rows, int cols, T* db) {
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < cols; c0 += kColumnTile) {
    const int c1 = std::min(cols, c0 + kColumnTile);
    for (int c = c0; c < c1; ++c) db[c] = T(0);
    for (int r = 0; r < rows; ++r) {
      T* drow = dy + static_cast<std::size_t>(r) * cols;
      const T* yrow = y + static_cast<std::size_t>(r) * cols;
      for (int c = c0; c < c1; ++c) {
        const T g = drow[c] * ew::act_grad_from_output<A>(yrow[c]);
        drow[c] = g;
        db[c] += g;
      }
    }
  }
}

template <class T>
void bias_act(Activation a, T* y, const T* b, int rows, int cols) {
  switch (a) {
    case Activation::relu: return bias_act<Activation::relu>(y, b, rows, cols);
    case Activation::tanh: return bias_act<Activation::tanh>(y, b, rows, cols);
    case Activation::leaky_relu: return bias_act<Activation::leaky_relu>(y, b, rows, cols);
    case Activation::softplus: return bias_act<Activation::softplus>(y, b, rows, cols);
  }
}

template <class T>
void act_backward_bias_grad(Activation a, T* dy, const T* y, int rows, int cols, T* db) {
  switch (a) {
    case Activation::relu: return act_backward_bias_grad<Activation::relu>(dy, y, rows, cols, db);
    case Activation::tanh: return act_backward_bias_grad<Activation::tanh>(dy, y, rows, cols, db);
    case Activation::leaky_relu: return act_backward_bias_grad<Activation::leaky_relu>(dy, y, rows, cols, db);
    case Activation::softplus: return act_backward_bias_grad<Activation::softplus>(dy, y, rows, cols, db);
  }
}

// Latent forward: head += bias; z = mu + exp(s/2) eps for each of L samples; KL per row.
template <class T>
void latent_forward(T* head, const T* bias, const T* eps, int n, int L, int Z, T* z, T* kl) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; ++b) {
    T* h = head + static_cast<std::size_t>(b) * 2 * Z;
    T k = 0;
    for (int j = 0; j < 2 * Z; ++j) h[j] += bias[j];
    for (int j = 0; j < Z; ++j) k += ew::kl_term(h[j], h[Z + j]);
    kl[b] = k;
    for (int l = 0; l < L; ++l) {
      const std::size_t r = (static_cast<std::size_t>(b) * L + l) * Z;
      for (int j = 0; j < Z; ++j) z[r + j] = ew::reparameterize(h[j], h[Z + j], eps[r + j]);
    }
  }
}

// Latent backward: from dz (n*L, Z) to dhead (n, 2Z) = (d mu, d s), and the head bias grad.
template <class T>
void latent_backward(const T* head, const T* eps, const T* dz, int n, int L, int Z, T beta_scale, T* dhead, T* dbias) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; ++b) {
    const T* h = head + static_cast<std::size_t>(b) * 2 * Z;
    T* dh = dhead + static_cast<std::size_t>(b) * 2 * Z;
    for (int j = 0; j < Z; ++j) {
      T sdz = 0, sdze = 0;
      for (int l = 0; l < L; ++l) {
        const std::size_t r = (static_cast<std::size_t>(b) * L + l) * Z + j;
        sdz += dz[r];
        sdze += dz[r] * eps[r];
      }
      dh[j] = ew::latent_dmu(h[j], sdz, beta_scale);
      dh[Z + j] = ew::latent_ds(h[Z + j], sdze, beta_scale);
    }
  }
  column_sums(dhead, n, 2 * Z, 0, 2 * Z, dbias);
}

// Likelihood pass over R = n*L rows: o = raw + bias; row log p into row_logp; with
// backward, raw <- scale * d(-log p)/do and, for a learned log-variance, dlv_rows <-
// scale * d(-log p)/dlv. The bias and log-variance gradients are column sums of those.
template <class T, bool Backward>
void likelihood_pass(const ModelConfig& cfg, T* raw, const T* bias, const T* logvar, const T* x, int n, T scale,
                     T* dlv_rows, T* row_logp) {
  const int L = cfg.samples;
  const int D = cfg.input_dim;
  const T fixed_lv = T(2.0 * std::log(cfg.sigma));
  const T fixed_iv = T(1.0 / (cfg.sigma * cfg.sigma));
  const bool bernoulli = cfg.likelihood == Likelihood::bernoulli;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < n * L; ++r) {
    T* o = raw + static_cast<std::size_t>(r) * D;
    const T* xr = x + static_cast<std::size_t>(r / L) * D;
    T acc = 0;
    if (bernoulli) {
      for (int d = 0; d < D; ++d) {
        T lp, g;
        ew::bernoulli(xr[d], o[d] + bias[d], lp, g);
        acc += lp;
        if (Backward) o[d] = g * scale;
      }
    } else {
      T* dlv = logvar && Backward ? dlv_rows + static_cast<std::size_t>(r) * D : nullptr;
      for (int d = 0; d < D; ++d) {
        const T lv = logvar ? logvar[d] : fixed_lv;
        const T iv = logvar ? ew::exp_(-lv) : fixed_iv;
        T lp, gm, glv;
        ew::gaussian(xr[d], o[d] + bias[d], lv, iv, lp, gm, glv);
        acc += lp;
        if (Backward) {
          o[d] = gm * scale;
          if (dlv) dlv[d] = glv * scale;
        }
      }
    }
    row_logp[r] = acc;
  }
}

}  // namespace

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
