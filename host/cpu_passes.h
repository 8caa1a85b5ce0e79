// The CPU path's fused elementwise passes, one function per fused operation, shared by
// CpuModel and the kernel benchmarks (bench/cpu_kernels.cpp). Each is parallel over the
// OpenMP pool OpenBLAS uses too. Row work splits by rows; column sums (bias gradients) split
// by columns, each column summed over the rows in order by one thread, so results do not
// depend on the number of threads.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "elementwise.h"
#include "vae/config.h"

#if defined(VAE_HAVE_SLEEF) && (defined(__AVX512F__) || defined(__AVX2__))
#include <immintrin.h>
#include <sleef.h>
#endif

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

// Latent forward: head += bias; z = mu + exp(s/2) eps for each of L samples; KL per data
// point; and, when lpq is given, log p(z) - log q(z|x) per sample row (importance weights).
template <class T>
void latent_forward(T* head, const T* bias, const T* eps, int n, int L, int Z, T* z, T* kl, T* lpq = nullptr) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; ++b) {
    T* h = head + static_cast<std::size_t>(b) * 2 * Z;
    T k = 0;
    for (int j = 0; j < 2 * Z; ++j) h[j] += bias[j];
    for (int j = 0; j < Z; ++j) k += ew::kl_term(h[j], h[Z + j]);
    kl[b] = k;
    for (int l = 0; l < L; ++l) {
      const std::size_t r = (static_cast<std::size_t>(b) * L + l) * Z;
      T w = 0;
      for (int j = 0; j < Z; ++j) {
        z[r + j] = ew::reparameterize(h[j], h[Z + j], eps[r + j]);
        w += ew::log_prior_minus_log_q(z[r + j], eps[r + j], h[Z + j]);
      }
      if (lpq) lpq[static_cast<std::size_t>(b) * L + l] = w;
    }
  }
}

// Latent backward: from dz (n*L, Z) to dhead (n, 2Z) = (d mu, d s), and the head bias grad.
// ELBO: the reparameterization path plus beta_scale times the KL gradient.
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

// Latent backward of the score-function (REINFORCE) estimator: the reconstruction term's
// gradient is (1/L) sum_l -log p(x|z_l) * grad log q(z_l|x), with z held fixed, scaled by
// `scale` (1/n); the KL keeps its closed-form gradient. row_logp (n*L).
template <class T>
void latent_backward_score(const T* head, const T* eps, const T* row_logp, int n, int L, int Z, T scale, T beta_scale,
                           T* dhead, T* dbias) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; ++b) {
    const T* h = head + static_cast<std::size_t>(b) * 2 * Z;
    T* dh = dhead + static_cast<std::size_t>(b) * 2 * Z;
    for (int j = 0; j < Z; ++j) {
      T sfe = 0, sfe2 = 0;
      for (int l = 0; l < L; ++l) {
        const std::size_t r = static_cast<std::size_t>(b) * L + l;
        const T e = eps[r * Z + j];
        sfe += row_logp[r] * e;
        sfe2 += row_logp[r] * (e * e - T(1));
      }
      dh[j] = ew::score_dmu(h[j], h[Z + j], sfe, -scale / T(L), beta_scale);
      dh[Z + j] = ew::score_ds(h[Z + j], sfe2, -scale / T(L), beta_scale);
    }
  }
  column_sums(dhead, n, 2 * Z, 0, 2 * Z, dbias);
}

// IWAE weights: per data point b, lw_k = row_logp + lpq over its K rows; writes the
// normalized weights w_k = softmax(lw)_k into w and returns log(1/K sum_k exp(lw_k)) in
// bound[b] (a stable logsumexp).
template <class T>
void importance_weights(const T* row_logp, const T* lpq, int n, int K, T* w, T* bound) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; ++b) {
    const std::size_t r0 = static_cast<std::size_t>(b) * K;
    T mx = -INFINITY;
    for (int k = 0; k < K; ++k) mx = std::max(mx, row_logp[r0 + k] + lpq[r0 + k]);
    T sum = 0;
    for (int k = 0; k < K; ++k) {
      w[r0 + k] = ew::exp_(row_logp[r0 + k] + lpq[r0 + k] - mx);
      sum += w[r0 + k];
    }
    for (int k = 0; k < K; ++k) w[r0 + k] /= sum;
    bound[b] = mx + ew::log_(sum) - ew::log_(T(K));
  }
}

// IWAE latent backward. w (n*K): the normalized importance weights already divided by n;
// dz (n*K, Z) from the decoder holds -w_k d log p/dz. Adds the prior's part w_k z, then
// d mu = sum_k dz and d s = sum_k dz eps exp(s/2)/2 - 1/2 sum_k w_k (log q's own -s/2).
template <class T>
void latent_backward_iwae(const T* head, const T* eps, const T* z, const T* w, const T* dz, int n, int K, int Z,
                          T* dhead, T* dbias) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; ++b) {
    const T* h = head + static_cast<std::size_t>(b) * 2 * Z;
    T* dh = dhead + static_cast<std::size_t>(b) * 2 * Z;
    T wsum = 0;
    for (int k = 0; k < K; ++k) wsum += w[static_cast<std::size_t>(b) * K + k];
    for (int j = 0; j < Z; ++j) {
      T sdz = 0, sdze = 0;
      for (int k = 0; k < K; ++k) {
        const std::size_t r = static_cast<std::size_t>(b) * K + k;
        const T d = dz[r * Z + j] + w[r] * z[r * Z + j];
        sdz += d;
        sdze += d * eps[r * Z + j];
      }
      dh[j] = sdz;
      dh[Z + j] = ew::latent_ds(h[Z + j], sdze, T(0)) - T(0.5) * wsum;
    }
  }
  column_sums(dhead, n, 2 * Z, 0, 2 * Z, dbias);
}

// Multiplies each row r of g (rows, cols) by scale[r].
template <class T>
void scale_rows(T* g, const T* scale, int rows, int cols) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    T* row = g + static_cast<std::size_t>(r) * cols;
    for (int c = 0; c < cols; ++c) row[c] *= scale[r];
  }
}

// One row of the Bernoulli likelihood: o <- scale * d(-log p)/do when Backward; returns the
// row's log p. ew::bernoulli per element; in float with AVX-512 or AVX2, the same formula
// on 16 or 8 elements at a time with SLEEF's vector exp and log1p (1-ulp functions), the
// row's sum in vector lanes then added in a fixed order.
template <bool Backward, class T>
T bernoulli_row(const T* x, T* o, const T* bias, int D, T scale) {
  T acc = 0;
  for (int d = 0; d < D; ++d) {
    T lp, g;
    ew::bernoulli(x[d], o[d] + bias[d], lp, g);
    acc += lp;
    if (Backward) o[d] = g * scale;
  }
  return acc;
}

#if defined(VAE_HAVE_SLEEF) && (defined(__AVX512F__) || defined(__AVX2__))
template <bool Backward>
float bernoulli_row(const float* x, float* o, const float* bias, int D, float scale) {
#if defined(__AVX512F__)
  constexpr int W = 16;
  using V = __m512;
  auto load = [](const float* p) { return _mm512_loadu_ps(p); };
  auto set = [](float v) { return _mm512_set1_ps(v); };
  auto exp_v = [](V v) { return Sleef_expf16_u10(v); };
  auto log1p_v = [](V v) { return Sleef_log1pf16_u10(v); };
  auto select_ge0 = [](V key, V if_ge, V if_lt) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(key, _mm512_setzero_ps(), _CMP_GE_OQ), if_lt, if_ge);
  };
  auto abs_v = [](V v) {  // clears the sign bit (_mm512_abs_ps trips GCC 12's -Wmaybe-uninitialized)
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
  };
  auto store = [](float* p, V v) { _mm512_storeu_ps(p, v); };
  auto add = [](V a, V b) { return _mm512_add_ps(a, b); };
  auto sub = [](V a, V b) { return _mm512_sub_ps(a, b); };
  auto mul = [](V a, V b) { return _mm512_mul_ps(a, b); };
  auto div = [](V a, V b) { return _mm512_div_ps(a, b); };
  auto max0 = [](V a) {  // max(a, 0) (_mm512_max_ps trips GCC 12's -Wmaybe-uninitialized)
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ), a);
  };
#else
  constexpr int W = 8;
  using V = __m256;
  auto load = [](const float* p) { return _mm256_loadu_ps(p); };
  auto set = [](float v) { return _mm256_set1_ps(v); };
  auto exp_v = [](V v) { return Sleef_expf8_u10(v); };
  auto log1p_v = [](V v) { return Sleef_log1pf8_u10(v); };
  auto select_ge0 = [](V key, V if_ge, V if_lt) {
    return _mm256_blendv_ps(if_lt, if_ge, _mm256_cmp_ps(key, _mm256_setzero_ps(), _CMP_GE_OQ));
  };
  auto abs_v = [](V v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); };
  auto store = [](float* p, V v) { _mm256_storeu_ps(p, v); };
  auto add = [](V a, V b) { return _mm256_add_ps(a, b); };
  auto sub = [](V a, V b) { return _mm256_sub_ps(a, b); };
  auto mul = [](V a, V b) { return _mm256_mul_ps(a, b); };
  auto div = [](V a, V b) { return _mm256_div_ps(a, b); };
  auto max0 = [](V a) { return _mm256_max_ps(a, _mm256_setzero_ps()); };
#endif
  const V zero = set(0.0f), one = set(1.0f), vscale = set(scale);
  V lanes = zero;
  int d = 0;
  for (; d + W <= D; d += W) {
    const V xv = load(x + d);
    const V ov = add(load(o + d), load(bias + d));
    const V e = exp_v(sub(zero, abs_v(ov)));                  // exp(-|o|)
    const V softplus = add(max0(ov), log1p_v(e));             // max(o,0) + log1p(e)
    lanes = add(lanes, sub(mul(xv, ov), softplus));           // x o - softplus(o)
    if (Backward) {
      const V inv = div(one, add(one, e));
      const V sigmoid = select_ge0(ov, inv, mul(e, inv));
      store(o + d, mul(sub(sigmoid, xv), vscale));
    }
  }
  alignas(64) float part[W];
  store(part, lanes);
  float acc = 0;
  for (int k = 0; k < W; ++k) acc += part[k];
  for (; d < D; ++d) {
    float lp, g;
    ew::bernoulli(x[d], o[d] + bias[d], lp, g);
    acc += lp;
    if (Backward) o[d] = g * scale;
  }
  return acc;
}
#endif

// Likelihood pass over R = n*L rows (L samples of each data point): o = raw + bias; row log p into row_logp; with
// backward, raw <- scale * d(-log p)/do and, for a learned log-variance, dlv_rows <-
// scale * d(-log p)/dlv. The bias and log-variance gradients are column sums of those.
// The ZINB's zero-inflation logits zi (D) come with dzi_rows like logvar with dlv_rows.
// x: (n, data_width(cfg)) rows, the D features first (a condition may follow). raw: rows of
// output_width(cfg); with per-item zero inflation its columns [D, 2D) are the ZINB's logits
// (bias included in `bias`, 2D long), whose gradients go there too (zi, dzi_rows unused).
template <class T, bool Backward>
void likelihood_pass(const ModelConfig& cfg, T* raw, const T* bias, const T* logvar, const T* x, int n, int L, T scale,
                     T* dlv_rows, T* row_logp, const T* zi = nullptr, T* dzi_rows = nullptr) {
  const int D = cfg.input_dim;
  const std::size_t ldx = static_cast<std::size_t>(data_width(cfg)), ldo = static_cast<std::size_t>(output_width(cfg));
  const bool zi_item = zero_inflation_per_item(cfg);
  const T fixed_lv = T(2.0 * std::log(cfg.sigma));
  const T fixed_iv = T(1.0 / (cfg.sigma * cfg.sigma));
  const bool bernoulli = cfg.likelihood == Likelihood::bernoulli;
  const bool counts = counts_likelihood(cfg.likelihood);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < n * L; ++r) {
    T* o = raw + static_cast<std::size_t>(r) * ldo;
    const T* xr = x + static_cast<std::size_t>(r / L) * ldx;
    T acc = 0;
    if (bernoulli) {
      acc = bernoulli_row<Backward>(xr, o, bias, D, scale);
    } else if (counts) {  // logvar: log theta (NB, ZINB); zi: the ZINB's zero-inflation logits
      T* dt = Backward && logvar ? dlv_rows + static_cast<std::size_t>(r) * D : nullptr;
      T* dw = Backward && zi ? dzi_rows + static_cast<std::size_t>(r) * D : nullptr;
      T lib = 0;  // --library-size: log of the item's total count
      if (cfg.library_size) {
        T total = 0;
        for (int d = 0; d < D; ++d) total += xr[d];
        lib = ew::log_library(total);
      }
      for (int d = 0; d < D; ++d) {
        T lp, g, gt = 0, gw = 0;
        const T on = o[d] + bias[d] + lib;
        if (cfg.likelihood == Likelihood::zinb)
          ew::zinb(xr[d], on, logvar[d], zi_item ? o[D + d] + bias[D + d] : zi[d], lp, g, gt, gw);
        else if (cfg.likelihood == Likelihood::negative_binomial) ew::negative_binomial(xr[d], on, logvar[d], lp, g, gt);
        else ew::poisson(xr[d], on, lp, g);
        acc += lp;
        if (Backward) {
          o[d] = g * scale;
          if (dt) dt[d] = gt * scale;
          if (dw) dw[d] = gw * scale;
          if (zi_item) o[D + d] = gw * scale;
        }
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

// Any optimizer over a flat range in one pass; Adam keeps its own loop, which vectorizes.
template <class T>
void optimizer_pass(T* p, T* s1, T* s2, const T* g, std::size_t n, const ew::OptimizerScalars& s) {
  if (static_cast<Optimizer>(s.kind) == Optimizer::adam) return adam_pass(p, s1, s2, g, n, s.adam);
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) ew::optimizer_update(p[i], s1[i], s2[i], g[i], s);
}

}  // namespace vae::cpu
