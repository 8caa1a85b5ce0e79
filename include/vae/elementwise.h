// The elementwise math both backends compute, written once: activations and their
// derivatives, the latent reparameterization and KL, the Bernoulli and Gaussian
// log-likelihoods with their gradients, and Adam's update. Every function is host+device,
// so the CPU path (the oracle) and the CUDA kernels evaluate the same formula.
// The formulas are those of shared/design/ARCHITECTURE.md (docs/ARCHITECTURE.md).
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

// ---- Adam (PyTorch's form) ------------------------------------------------------------
// m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 - b_i^t.
struct AdamScalars {
  double beta1, beta2, eps;
  double step_size;     // lr / bc1
  double inv_sqrt_bc2;  // 1 / sqrt(bc2)
};
// The scalars for step t (1-based), computed once on the host in double.
inline AdamScalars adam_scalars(double lr, double beta1, double beta2, double eps, long long t) {
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

}  // namespace ew
}  // namespace vae
