// The elementwise math both backends compute, written once: activations and their
// derivatives, the latent reparameterization and KL, the score-function terms, the
// Bernoulli, Gaussian, Poisson, negative binomial and ZINB log-likelihoods with their gradients, every optimizer's update
// and the importance-weight terms. Every function is host+device, so the CPU path (the
// oracle) and the CUDA kernels evaluate the same formula. Internal to libvae, its tests and
// benchmarks (not installed). The formulas: docs/ARCHITECTURE.md, "The math".
#pragma once
#include <math.h>

#include "vae/config.h"

#if defined(__CUDACC__)
#define VAE_HD __host__ __device__ __forceinline__
#else
#define VAE_HD inline
#endif

namespace vae {
namespace ew {

// Overloads so that templates call expf/log1pf for float and exp/log1p for double, on
// the host and on the device alike.
VAE_HD float exp_(float x) { return expf(x); }
VAE_HD double exp_(double x) { return exp(x); }
VAE_HD float expm1_(float x) { return expm1f(x); }
VAE_HD double expm1_(double x) { return expm1(x); }
VAE_HD float log1p_(float x) { return log1pf(x); }
VAE_HD double log1p_(double x) { return log1p(x); }
VAE_HD float log_(float x) { return logf(x); }
VAE_HD double log_(double x) { return log(x); }
VAE_HD float sqrt_(float x) { return sqrtf(x); }
VAE_HD double sqrt_(double x) { return sqrt(x); }
VAE_HD float tanh_(float x) { return tanhf(x); }
VAE_HD double tanh_(double x) { return tanh(x); }
VAE_HD float abs_(float x) { return fabsf(x); }
VAE_HD double abs_(double x) { return fabs(x); }
#if defined(__CUDA_ARCH__)
VAE_HD float lgamma_(float x) { return lgammaf(x); }
VAE_HD double lgamma_(double x) { return lgamma(x); }
#else  // glibc's lgamma writes the global signgam: its reentrant forms, for the OpenMP loops
inline float lgamma_(float x) {
  int sign;
  return lgammaf_r(x, &sign);
}
inline double lgamma_(double x) {
  int sign;
  return lgamma_r(x, &sign);
}
#endif

constexpr double kLeakySlope = 0.01;                  // PyTorch's LeakyReLU default
constexpr double kLog2Pi = 1.8378770664093454835606;  // log(2*pi)

// ---- activations -------------------------------------------------------------------
// y = act(x), and act'(x) written as a function of y, so backward needs only the output.
template <Activation A, class T>
VAE_HD T act_forward(T x) {
  if constexpr (A == Activation::relu) {
    return x > T(0) ? x : T(0);
  } else if constexpr (A == Activation::tanh) {
    return tanh_(x);
  } else if constexpr (A == Activation::leaky_relu) {
    return x > T(0) ? x : T(kLeakySlope) * x;
  } else {  // softplus(x) = max(x,0) + log1p(exp(-|x|))
    return (x > T(0) ? x : T(0)) + log1p_(exp_(-abs_(x)));
  }
}

template <Activation A, class T>
VAE_HD T act_grad_from_output(T y) {
  if constexpr (A == Activation::relu) {
    return y > T(0) ? T(1) : T(0);
  } else if constexpr (A == Activation::tanh) {
    return T(1) - y * y;
  } else if constexpr (A == Activation::leaky_relu) {
    return y > T(0) ? T(1) : T(kLeakySlope);
  } else {  // sigmoid(x) = 1 - exp(-softplus(x))
    return -expm1_(-y);
  }
}

// ---- Bernoulli decoder: logits o, targets x in [0,1] ---------------------------------
// log p = x*o - softplus(o);  d(-log p)/do = sigmoid(o) - x.  Finite for any finite o.
template <class T>
VAE_HD void bernoulli(T x, T o, T& logp, T& dneg_do) {
  const T e = exp_(-abs_(o));  // in (0, 1]
  const T softplus = (o > T(0) ? o : T(0)) + log1p_(e);
  const T inv = T(1) / (T(1) + e);
  const T sigmoid = o >= T(0) ? inv : e * inv;
  logp = x * o - softplus;
  dneg_do = sigmoid - x;
}

// ---- Poisson decoder: log-rate o, counts x (non-negative integers) --------------------
// log p = x*o - exp(o) - lgamma(x+1);  d(-log p)/do = exp(o) - x.
template <class T>
VAE_HD void poisson(T x, T o, T& logp, T& dneg_do) {
  const T rate = exp_(o);
  logp = x * o - rate - lgamma_(x + T(1));
  dneg_do = rate - x;
}

// --library-size: the offset of an item's log-rate or log-mean, from its total count (the sum
// of its counts): log(max(1, total)), so an item of no counts adds nothing.
template <class T>
VAE_HD T log_library(T total) {
  return log_(total > T(1) ? total : T(1));
}

// digamma(x) = d lgamma(x) / dx for x > 0: the recurrence psi(x) = psi(x + 1) - 1/x up to
// x >= 6, then the asymptotic series (error below 1e-10 there). The CUDA math library has
// no digamma; this one serves both sides.
template <class T>
VAE_HD T digamma(T x) {
  T acc = 0;
  while (x < T(6)) {
    acc -= T(1) / x;
    x += T(1);
  }
  const T f = T(1) / (x * x);
  return acc + log_(x) - T(0.5) / x -
         f * (T(1.0 / 12) - f * (T(1.0 / 120) - f * (T(1.0 / 252) - f * (T(1.0 / 240) - f * T(1.0 / 132)))));
}

// softplus(v) = log(1 + exp(v)), stably.
template <class T>
VAE_HD T softplus_(T v) {
  return (v > T(0) ? v : T(0)) + log1p_(exp_(-abs_(v)));
}

// ---- negative binomial decoder: log-mean o, log inverse dispersion t (per feature) -------
// mu = exp(o), theta = exp(t), lse = log(theta + mu), p = mu / (theta + mu):
// log p = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1) + theta (t - lse) + x (o - lse)
// d(-log p)/do = (x + theta) p - x
// d(-log p)/dt = -theta [psi(x + theta) - psi(theta) + t - lse + p] + x (1 - p)
// with t - lse = -softplus(o - t) and o - lse = -softplus(t - o). In double whatever T: once
// theta >> mu (a feature with little overdispersion drives t up), lgamma(x + theta) -
// lgamma(theta) and the softplus terms are small differences of large numbers, which float
// loses (the gradient in t changes sign by t = 8).
template <class T>
VAE_HD void negative_binomial(T x_in, T o_in, T t_in, T& logp, T& dneg_do, T& dneg_dt) {
  const double x = x_in, o = o_in, t = t_in;
  const double theta = exp_(t);
  const double lse_t = softplus_(o - t), lse_o = softplus_(t - o);  // lse - t, lse - o
  const double p = exp_(-lse_o);
  logp = T(lgamma_(x + theta) - lgamma_(theta) - lgamma_(x + 1.0) - theta * lse_t - x * lse_o);
  dneg_do = T((x + theta) * p - x);
  dneg_dt = T(-theta * (digamma(x + theta) - digamma(theta) - lse_t + p) + x * (1.0 - p));
}

// ---- zero-inflated negative binomial: the NB above and a zero-inflation logit w ---------
// pi = sigmoid(w) structural zeros: log p = log(pi + (1 - pi) NB(0)) for x = 0, and
// log(1 - pi) + log NB(x) for x > 0. With a = log NB(0) = theta (t - lse) and
// r = NB(0)(1 - pi) / p(0), the NB's share of a zero: at x = 0 the NB's gradients are
// scaled by r and d(-log p)/dw = sigmoid(w) - (1 - r); at x > 0, d(-log p)/dw = sigmoid(w).
template <class T>
VAE_HD void zinb(T x, T o, T t, T w, T& logp, T& dneg_do, T& dneg_dt, T& dneg_dw) {
  T lnb, go, gt;
  negative_binomial(x, o, t, lnb, go, gt);
  const T e = exp_(-abs_(w));
  const T softplus_w = softplus_(w);  // -log(1 - pi)
  const T sigmoid_w = w >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
  if (x > T(0)) {
    logp = lnb - softplus_w;
    dneg_do = go;
    dneg_dt = gt;
    dneg_dw = sigmoid_w;
    return;
  }
  const T hi = w > lnb ? w : lnb, lo = w > lnb ? lnb : w;
  const T l2 = hi + log1p_(exp_(lo - hi));  // log(e^w + NB(0))
  const T r = exp_(lnb - l2);
  logp = l2 - softplus_w;
  dneg_do = r * go;
  dneg_dt = r * gt;
  dneg_dw = sigmoid_w - (T(1) - r);
}

// The decoder's mean at output o (bias added): sigmoid(o) for Bernoulli logits, o itself
// for a Gaussian mean, exp(o) for a Poisson log-rate or a negative binomial's log-mean (the
// ZINB's too: the count expected when it is not a structural zero, scVI's rate). The stable
// sigmoid, as above.
template <class T>
VAE_HD T decoder_mean(Likelihood lik, T o) {
  // counts_likelihood(lik), written out: that one is host code
  if (lik == Likelihood::poisson || lik == Likelihood::negative_binomial || lik == Likelihood::zinb) return exp_(o);
  if (lik != Likelihood::bernoulli) return o;
  const T e = exp_(-abs_(o));
  const T inv = T(1) / (T(1) + e);
  return o >= T(0) ? inv : e * inv;
}

// ---- Gaussian decoder: mean m, log-variance lv (fixed or learned) --------------------
// log p = -1/2 [ (x-m)^2 exp(-lv) + lv + log(2 pi) ]
// d(-log p)/dm = (m - x) exp(-lv);  d(-log p)/dlv = 1/2 (1 - (x-m)^2 exp(-lv))
template <class T>
VAE_HD void gaussian(T x, T m, T lv, T inv_var, T& logp, T& dneg_dm, T& dneg_dlv) {
  const T r = x - m;
  const T r2iv = r * r * inv_var;
  logp = T(-0.5) * (r2iv + lv + T(kLog2Pi));
  dneg_dm = -r * inv_var;
  dneg_dlv = T(0.5) * (T(1) - r2iv);
}

// ---- latent: q(z|x) = N(mu, exp(s)), prior N(0, I) -----------------------------------
template <class T>
VAE_HD T reparameterize(T mu, T s, T eps) {
  return mu + exp_(T(0.5) * s) * eps;
}
// KL for one latent dimension: 1/2 (mu^2 + exp(s) - s - 1)
template <class T>
VAE_HD T kl_term(T mu, T s) {
  return T(0.5) * (mu * mu + exp_(s) - s - T(1));
}
// Gradient of beta*scale*KL for one dimension, added to the reparameterization path:
//   d mu += beta*scale*mu;  d s += beta*scale*(exp(s)-1)/2
// and the pathwise part for one sample l: d mu += dz_l;  d s += dz_l * eps_l * exp(s/2) / 2.
template <class T>
VAE_HD T latent_dmu(T mu, T sum_dz, T beta_scale) {
  return sum_dz + beta_scale * mu;
}
template <class T>
VAE_HD T latent_ds(T s, T sum_dz_eps, T beta_scale) {
  return T(0.5) * sum_dz_eps * exp_(T(0.5) * s) + beta_scale * T(0.5) * expm1_(s);
}

// Score-function (REINFORCE) gradient for one latent dimension, z held fixed:
//   grad_mu log q = eps / sigma;  grad_s log q = (eps^2 - 1) / 2
// sum_f_eps = sum_l f_l eps_l, sum_f_eps2 = sum_l f_l (eps_l^2 - 1), scaled by `scale`, plus
// the KL's closed-form gradient times beta_scale.
template <class T>
VAE_HD T score_dmu(T mu, T s, T sum_f_eps, T scale, T beta_scale) {
  return scale * sum_f_eps * exp_(T(-0.5) * s) + beta_scale * mu;
}
template <class T>
VAE_HD T score_ds(T s, T sum_f_eps2, T scale, T beta_scale) {
  return T(0.5) * scale * sum_f_eps2 + beta_scale * T(0.5) * expm1_(s);
}

// ---- Adam (PyTorch's form) ------------------------------------------------------------
// m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 - b_i^t.
struct AdamScalars {
  double beta1, beta2, eps;
  double step_size;     // lr / bc1
  double inv_sqrt_bc2;  // 1 / sqrt(bc2)
};
// The scalars for step t (1-based), in double (on the host, or once per launch on the device).
VAE_HD AdamScalars adam_scalars(double lr, double beta1, double beta2, double eps, long long t) {
  const double bc1 = 1.0 - pow(beta1, double(t));
  const double bc2 = 1.0 - pow(beta2, double(t));
  return AdamScalars{beta1, beta2, eps, lr / bc1, 1.0 / sqrt(bc2)};
}

template <class T>
VAE_HD void adam_update(T& p, T& m, T& v, T g, const AdamScalars& s) {
  m = T(s.beta1) * m + (T(1) - T(s.beta1)) * g;
  v = T(s.beta2) * v + (T(1) - T(s.beta2)) * g * g;
  const T denom = sqrt_(v) * T(s.inv_sqrt_bc2) + T(s.eps);
  p -= T(s.step_size) * m / denom;
}

// ---- every optimizer (PyTorch's forms); s1, s2 are its two state slots -------------------
//   adam:    s1 = m, s2 = v, as adam_update
//   adamw:   p *= 1 - lr*wd, then adam_update (decoupled weight decay)
//   sgd:     s1 = momentum * s1 + g;  p -= lr * s1          (s2 unused)
//   rmsprop: s2 = alpha * s2 + (1-alpha) g^2;  p -= lr * g / (sqrt(s2) + eps)   (s1 unused)
struct OptimizerScalars {
  int kind = 0;           // vae::Optimizer
  double lr = 0;          // this step's learning rate
  AdamScalars adam{};     // adam, adamw (step_size = lr / bc1)
  double decay = 1;       // adamw: 1 - lr * weight_decay
  double momentum = 0;    // sgd
  double alpha = 0;       // rmsprop
  double eps = 0;         // rmsprop
};

// Scalars of one update of a parameter group that has had t updates including this one.
// OptimizerConfig is plain data: a kernel may take it by value and call this on the device.
VAE_HD OptimizerScalars optimizer_scalars(const OptimizerConfig& c, double lr, long long t) {
  OptimizerScalars s;
  s.kind = static_cast<int>(c.kind);
  s.lr = lr;
  s.adam = adam_scalars(lr, c.beta1, c.beta2, c.eps, t);
  s.decay = c.kind == Optimizer::adamw ? 1.0 - lr * c.weight_decay : 1.0;
  s.momentum = c.momentum;
  s.alpha = c.alpha;
  s.eps = c.eps;
  return s;
}

template <class T>
VAE_HD void optimizer_update(T& p, T& s1, T& s2, T g, const OptimizerScalars& s) {
  switch (static_cast<Optimizer>(s.kind)) {
    case Optimizer::adamw:
      p *= T(s.decay);
      adam_update(p, s1, s2, g, s.adam);
      break;
    case Optimizer::sgd:
      s1 = T(s.momentum) * s1 + g;
      p -= T(s.lr) * s1;
      break;
    case Optimizer::rmsprop:
      s2 = T(s.alpha) * s2 + (T(1) - T(s.alpha)) * g * g;
      p -= T(s.lr) * g / (sqrt_(s2) + T(s.eps));
      break;
    default:
      adam_update(p, s1, s2, g, s.adam);
  }
}

// ---- importance weights ---------------------------------------------------------------
// log p(z) - log q(z|x) for one latent dimension, z = mu + exp(s/2) eps:
//   log p(z) = -z^2/2 - log(2 pi)/2;  log q(z|x) = -eps^2/2 - s/2 - log(2 pi)/2
template <class T>
VAE_HD T log_prior_minus_log_q(T z, T eps, T s) {
  return T(0.5) * (eps * eps - z * z + s);
}
// A running log-sum-exp in double: (mx, sum) start at (-inf, 0); after adding v_1..v_k,
// log((1/k) sum_i exp(v_i)) = logsumexp_log_mean(mx, sum, k). Order-dependent: add in order.
VAE_HD void logsumexp_add(double& mx, double& sum, double v) {
  if (v == -INFINITY) return;  // exp(-inf) adds nothing (and -inf - -inf would be NaN)
  if (v <= mx) {
    sum += exp(v - mx);
  } else {
    sum = sum * exp(mx - v) + 1.0;
    mx = v;
  }
}
VAE_HD double logsumexp_log_mean(double mx, double sum, int k) { return mx + log(sum) - log(double(k)); }

// log N(z; 0, 1) for one dimension.
template <class T>
VAE_HD T log_standard_normal(T z) {
  return T(-0.5) * (z * z + T(kLog2Pi));
}

}  // namespace ew
}  // namespace vae
