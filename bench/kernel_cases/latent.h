// Cases of the latent layer (kernels/latent.cuh): the forward kernel (head bias,
// reparameterization, KL, log p(z) - log q(z|x)) and the three backward kernels
// (reparameterized ELBO, score-function ELBO, IWAE).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cpu_passes.h"
#include "kernel_cases/harness.h"
#include "latent.cuh"

namespace vae::cases {

// gpu::latent_forward against cpu::latent_forward: head + bias bit for bit (one IEEE add),
// z 1e-6 + 1e-5 relative, the KL per data point and log p(z) - log q(z|x) per row as sums
// of the twin's own float terms (the twin run on one latent dimension at a time). The
// noise is read at an offset held in device memory, two steps into a block of three. With
// `lpq`, extra() runs it again without: the same z and KL, bit for bit, lpq untouched.
class LatentForwardCase final : public OpCase {
 public:
  LatentForwardCase(int n, int L, int Z, bool lpq)
      : OpCase("latent_forward L=" + std::to_string(L) + " " + shape(n, Z) + (lpq ? "" : " without lpq")),
        n_(n),
        L_(L),
        Z_(Z),
        with_lpq_(lpq),
        stride_(static_cast<std::size_t>(n) * L * Z),
        head_(uniform(static_cast<std::size_t>(n) * 2 * Z, -2, 2, 20 + static_cast<std::uint64_t>(L)), "head"),
        bias_(uniform(2 * static_cast<std::size_t>(Z), -0.5, 0.5, 30), "head bias"),
        noise_(normal(3 * stride_, 40 + static_cast<std::uint64_t>(L)), "eps block"),
        offset_(std::vector<std::int64_t>{static_cast<std::int64_t>(2 * stride_)}, "eps offset"),
        z_(stride_, "z"),
        kl_(static_cast<std::size_t>(n), "kl"),
        lpq_(static_cast<std::size_t>(n) * L, "lpq") {
    arrays({&head_, &bias_, &noise_, &offset_, &z_, &kl_, &lpq_}, {&head_, &z_, &kl_, &lpq_});
  }
  void launch(Context& ctx) override { run(ctx, with_lpq_); }
  void verify(Check& c) override {
    const Want& w = want_.get([&] { return twin(); });
    c.bits(head_.download(), w.head, "head + bias");
    c.close(z_.download(), w.z, 1e-6, 1e-5, "z");
    c.sums(kl_.download(), w.kl, "KL");
    if (with_lpq_)
      c.sums(lpq_.download(), w.lpq, "log p(z) - log q(z|x) per row");
    else
      c.untouched(lpq_.download(), "lpq not asked for");
  }
  void extra(Context& ctx, Check& c) override {
    if (!with_lpq_) return;
    const auto z = z_.download(), kl = kl_.download();
    reset();
    run(ctx, false);
    ctx.sync();
    c.bits(z_.download(), z, "z without lpq");
    c.bits(kl_.download(), kl, "KL without lpq");
    c.untouched(lpq_.download(), "lpq not asked for");
  }
  Traffic traffic() const override {
    return {double(2 * head_.size() + 2 * stride_ + kl_.size() + bias_.size() + (with_lpq_ ? lpq_.size() : 0)) * 4, 0};
  }
  Array<float>& head() { return head_; }
  Array<float>& bias() { return bias_; }
  Array<float>& z() { return z_; }
  Array<float>& kl() { return kl_; }
  const float* eps() const { return noise_.get() + 2 * stride_; }
  int n() const { return n_; }
  int Z() const { return Z_; }

 private:
  struct Want {
    std::vector<float> head, z;
    SumRef kl, lpq;
  };
  void run(Context& ctx, bool lpq) {
    gpu::latent_forward(head_.get(), bias_.get(), noise_.get(), offset_.get(), n_, L_, Z_, z_.get(), kl_.get(),
                        lpq ? lpq_.get() : nullptr, ctx.stream());
  }
  Want twin() const {
    Want w{head_.init(), std::vector<float>(stride_), {}, {}};
    std::vector<float> kl(static_cast<std::size_t>(n_)), lpq(lpq_.size());
    const float* eps = noise_.init().data() + 2 * stride_;
    cpu::latent_forward(w.head.data(), bias_.init().data(), eps, n_, L_, Z_, w.z.data(), kl.data(), lpq.data());
    // The terms of each sum: the twin on latent dimension j alone.
    const std::size_t R = lpq.size();
    std::vector<float> kl_terms(static_cast<std::size_t>(n_) * Z_), lpq_terms(R * Z_);
    std::vector<float> h(2 * static_cast<std::size_t>(n_)), e(R), z(R), k(kl.size()), q(R);
    for (int j = 0; j < Z_; ++j) {
      for (int b = 0; b < n_; ++b) {
        h[2 * b] = head_.init()[static_cast<std::size_t>(b) * 2 * Z_ + j];
        h[2 * b + 1] = head_.init()[static_cast<std::size_t>(b) * 2 * Z_ + Z_ + j];
      }
      for (std::size_t r = 0; r < R; ++r) e[r] = eps[r * Z_ + j];
      const float b2[2] = {bias_.init()[j], bias_.init()[Z_ + j]};
      cpu::latent_forward(h.data(), b2, e.data(), n_, L_, 1, z.data(), k.data(), q.data());
      for (int b = 0; b < n_; ++b) kl_terms[static_cast<std::size_t>(b) * Z_ + j] = k[b];
      for (std::size_t r = 0; r < R; ++r) lpq_terms[r * Z_ + j] = q[r];
    }
    w.kl = row_sums(kl_terms, n_, Z_);
    w.lpq = row_sums(lpq_terms, static_cast<int>(R), Z_);
    return w;
  }
  int n_, L_, Z_;
  bool with_lpq_;
  std::size_t stride_;
  Array<float> head_, bias_, noise_;
  Array<std::int64_t> offset_;
  Array<float> z_, kl_, lpq_;
  Once<Want> want_;
};

enum class LatentGrad { reparam, score, iwae };

// The inputs of a latent backward kernel: a biased head (n, 2Z), noise (n*L, Z), and what
// the gradient needs: the decoder's dz (reparameterization, IWAE), per-row log p(x|z)
// (score), the codes z the forward pass makes (cpu::latent_forward) and normalized
// importance weights / n (cpu::importance_weights) for IWAE.
struct LatentGradInputs {
  std::vector<float> head, eps, dz, row_logp, z, w;
  double beta = 0;
  LatentGradInputs(LatentGrad g, int n, int L, int Z) {
    const std::size_t R = static_cast<std::size_t>(n) * L;
    const std::uint64_t s = static_cast<std::uint64_t>(L) + (g == LatentGrad::score ? 200 : 300);
    if (g == LatentGrad::reparam) {
      head = uniform(static_cast<std::size_t>(n) * 2 * Z, -2, 2, 50 + static_cast<std::uint64_t>(L));
      eps = normal(R * Z, 60 + static_cast<std::uint64_t>(L));
      dz = uniform(R * Z, -0.1, 0.1, 70 + static_cast<std::uint64_t>(L));
      beta = 1.5;
      return;
    }
    head = uniform(static_cast<std::size_t>(n) * 2 * Z, -2, 2, s);
    eps = normal(R * Z, s + 1);
    if (g == LatentGrad::score) {
      row_logp = uniform(R, -80, -20, s + 3);
      beta = 0.7;
      return;
    }
    dz = uniform(R * Z, -0.1, 0.1, s + 2);
    z.resize(R * Z);
    std::vector<float> h = head, kl(static_cast<std::size_t>(n)), bound(static_cast<std::size_t>(n));
    const std::vector<float> zero_bias(2 * static_cast<std::size_t>(Z), 0.0f), zeros(R, 0.0f);
    cpu::latent_forward(h.data(), zero_bias.data(), eps.data(), n, L, Z, z.data(), kl.data());
    const auto lw = uniform(R, -6, 0, s + 4);
    w.resize(R);
    cpu::importance_weights(lw.data(), zeros.data(), n, L, w.data(), bound.data());
    for (auto& v : w) v /= static_cast<float>(n);
  }
};

// gpu::latent_backward, latent_backward_score, latent_backward_iwae against
// cpu::latent_backward, latent_backward_score, latent_backward_iwae: (d mu, d s)
// 1e-6 + 1e-5 relative, the head-bias gradient as sums. beta from device memory, beta/n
// formed in float as the CPU forms it. IWAE reads its noise 64 floats into a block.
class LatentBackwardCase final : public OpCase {
 public:
  LatentBackwardCase(LatentGrad g, int n, int L, int Z)
      : OpCase(std::string(g == LatentGrad::reparam ? "latent_backward"
                           : g == LatentGrad::score ? "latent_backward_score"
                                                    : "latent_backward_iwae") +
               " L=" + std::to_string(L) + " " + shape(n, Z)),
        g_(g),
        n_(n),
        L_(L),
        Z_(Z),
        in_(g, n, L, Z),
        head_(in_.head, "head"),
        eps_(eps_block(), "eps block"),
        offset_(std::vector<std::int64_t>{pad()}, "eps offset"),
        dz_(or_one(in_.dz), "dz"),
        row_logp_(or_one(in_.row_logp), "row log p"),
        z_(or_one(in_.z), "z"),
        w_(or_one(in_.w), "weights"),
        beta_(std::vector<double>{in_.beta}, "beta"),
        dhead_(in_.head.size(), "dhead"),
        dbias_(2 * static_cast<std::size_t>(Z), "head bias gradient"),
        scratch_(reduce_scratch(n, Z, 2, false)) {
    arrays({&head_, &eps_, &offset_, &dz_, &row_logp_, &z_, &w_, &beta_, &dhead_, &dbias_}, {&dhead_, &dbias_});
  }
  void launch(Context& ctx) override {
    gpu::LatentBackwardArgs a;
    a.head = head_.get();
    a.eps_block = eps_.get();
    a.eps_offset = pad() ? offset_.get() : nullptr;
    a.n = n_;
    a.L = L_;
    a.Z = Z_;
    a.dz = in_.dz.empty() ? nullptr : dz_.get();  // what the kernel does not read is null
    a.beta = g_ == LatentGrad::iwae ? nullptr : beta_.get();
    a.row_logp = in_.row_logp.empty() ? nullptr : row_logp_.get();
    a.z = in_.z.empty() ? nullptr : z_.get();
    a.w = in_.w.empty() ? nullptr : w_.get();
    a.dhead = dhead_.get();
    a.dbias = dbias_.get();
    if (g_ == LatentGrad::reparam)
      gpu::latent_backward(a, scratch_.view(), ctx.stream());
    else if (g_ == LatentGrad::score)
      gpu::latent_backward_score(a, scratch_.view(), ctx.stream());
    else
      gpu::latent_backward_iwae(a, scratch_.view(), ctx.stream());
  }
  void verify(Check& c) override {
    const std::vector<float>& want = want_.get([&] { return twin(); });
    c.close(dhead_.download(), want, 1e-6, 1e-5, "(d mu, d s)");
    c.sums(dbias_.download(), column_sums(want, n_, 2 * Z_), "head bias gradient");
  }
  Traffic traffic() const override {
    return {double(2 * head_.size() + in_.eps.size() + in_.dz.size() + dbias_.size()) * 4, 0};
  }
  Array<float>& head() { return head_; }
  Array<float>& dz() { return dz_; }
  Array<float>& dhead() { return dhead_; }
  Array<float>& dbias() { return dbias_; }
  const float* eps() const { return eps_.get() + pad(); }
  float beta_scale() const { return static_cast<float>(in_.beta) / static_cast<float>(n_); }
  int n() const { return n_; }
  int Z() const { return Z_; }

 private:
  std::int64_t pad() const { return g_ == LatentGrad::iwae ? 64 : 0; }
  std::vector<float> eps_block() const {  // IWAE: behind 64 floats no kernel may read
    std::vector<float> block(in_.eps.size() + static_cast<std::size_t>(pad()), 1e6f);
    std::copy(in_.eps.begin(), in_.eps.end(), block.begin() + pad());
    return block;
  }
  static std::vector<float> or_one(const std::vector<float>& v) { return v.empty() ? std::vector<float>{NAN} : v; }
  std::vector<float> twin() const {
    std::vector<float> dhead(in_.head.size()), dbias(2 * static_cast<std::size_t>(Z_));
    const float* h = in_.head.data();
    const float* e = in_.eps.data();
    const float n = static_cast<float>(n_), beta = static_cast<float>(in_.beta);
    if (g_ == LatentGrad::reparam)
      cpu::latent_backward(h, e, in_.dz.data(), n_, L_, Z_, beta / n, dhead.data(), dbias.data());
    else if (g_ == LatentGrad::score)
      cpu::latent_backward_score(h, e, in_.row_logp.data(), n_, L_, Z_, 1.0f / n, beta / n, dhead.data(), dbias.data());
    else
      cpu::latent_backward_iwae(h, e, in_.z.data(), in_.w.data(), in_.dz.data(), n_, L_, Z_, dhead.data(),
                                dbias.data());
    return dhead;
  }
  LatentGrad g_;
  int n_, L_, Z_;
  LatentGradInputs in_;
  Array<float> head_, eps_;
  Array<std::int64_t> offset_;
  Array<float> dz_, row_logp_, z_, w_;
  Array<double> beta_;
  Array<float> dhead_, dbias_;
  gpu::ReduceScratchBuffers scratch_;
  Once<std::vector<float>> want_;
};

}  // namespace vae::cases
