// The CPU path's fused elementwise passes, one function per fused operation, shared by
// CpuModel and the kernel benchmarks (bench/cpu_kernels.cpp). Each is parallel over the
// OpenMP pool OpenBLAS uses too. Row work splits by rows; column sums (bias gradients) split
// by columns, each column summed over the rows in order by one thread, so results do not
// depend on the number of threads.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "vae/config.h"
#include "vae/elementwise.h"

namespace vae::cpu {

constexpr int kColumnTile = 64;

// Column sums db[c] = sum_r g[r, c] for c in [c0, c1), rows in order.
template <class T>
inline void column_sums(const T* g, int rows, int cols, int c0, int c1, T* db) {
  for (int c = c0; c < c1; ++c) db[c] = T(0);
  for (int r = 0; r < rows; ++r) {
    const T* row = g + static_cast<std::size_t>(r) * cols;
    for (int c = c0; c < c1; ++c) db[c] += row[c];
  }
}

template <class T>
inline void column_sums(const T* g, int rows, int cols, T* db) {
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < cols; c0 += kColumnTile) column_sums(g, rows, cols, c0, std::min(cols, c0 + kColumnTile), db);
}

// y = act(y + b), rows x cols, in place.
template <Activation A, class T>
inline void bias_act(T* y, const T* b, int rows, int cols) {
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
inline void bias_act(Activation a, T* y, const T* b, int rows, int cols) {
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

// True when every value is finite (one pass; an OR reduction, so thread-count independent).
template <class T>
bool all_finite(const T* v, std::size_t n) {
  int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad)
  for (std::size_t i = 0; i < n; ++i) bad |= !(std::isfinite(v[i]));
  return !bad;
}

// Adam over the whole flat buffer in one pass.
template <class T>
void adam_pass(T* p, T* m, T* v, const T* g, std::size_t n, const ew::AdamScalars& s) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) ew::adam_update(p[i], m[i], v[i], g[i], s);
}

}  // namespace vae::cpu
