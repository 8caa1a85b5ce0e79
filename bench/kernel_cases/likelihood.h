// Cases of the decoder likelihood (kernels/likelihood.cuh): Bernoulli, Gaussian (fixed or
// learned variance) and the count likelihoods (the ZINB's zero inflation per feature or per
// item) in its three modes, forward, backward (the ELBO) and weighted (IWAE).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cpu_passes.h"
#include "kernel_cases/harness.h"
#include "likelihood.cuh"
#include "vae/config.h"

namespace vae::cases {

// gpu::likelihood_forward_backward against cpu::likelihood_pass (weighted: with scale 1,
// then cpu::scale_rows by each row's weight, as CpuModel::run does for IWAE). Row log p as
// sums of the twin's own float terms (the twin run on one column at a time); the gradient
// 1e-6 + 1e-5 relative (weighted: 1e-8 + 1e-5); the output-bias and log-variance
// gradients as sums. What a mode does not produce stays untouched: the outputs in forward
// mode, the row log p in weighted mode, the gradients' sums in forward mode.
class LikelihoodCase final : public OpCase {
 public:
  using Mode = gpu::LikelihoodMode;
  // zi_item: the ZINB's zero-inflation logits in the outputs' columns [D, 2D).
  LikelihoodCase(Likelihood lik, bool learned, int n, int L, int D, Mode mode, bool zi_item = false)
      : OpCase(std::string("likelihood ") + to_string(lik) + (learned ? " learned" : "") + (zi_item ? " zi per item" : "") +
               (mode == Mode::forward    ? " forward"
                : mode == Mode::backward ? " backward"
                                         : " weighted") +
               " n=" + std::to_string(n) + " L=" + std::to_string(L) + " D=" + std::to_string(D)),
        cfg_(config(lik, learned, L, D, zi_item)),
        n_(n),
        L_(L),
        mode_(mode),
        out_(logits(static_cast<std::size_t>(n) * L * output_width(cfg_), seed()), "logits"),
        bias_(uniform(static_cast<std::size_t>(output_width(cfg_)), -0.5, 0.5, seed() + 1), "output bias"),
        logvar_(uniform(static_cast<std::size_t>(D), -1, 1, seed() + 2), "log-variance"),
        zi_(uniform(static_cast<std::size_t>(D), -3, 1, seed() + 5), "zero-inflation logits"),
        x_(targets(lik, static_cast<std::size_t>(n) * D, seed() + 3), "x"),
        scale_(uniform(static_cast<std::size_t>(n) * L, 0, 1.0 / n, seed() + 4), "row weights"),
        dbias_(static_cast<std::size_t>(output_width(cfg_)), "output bias gradient"),
        dlogvar_(static_cast<std::size_t>(D), "log-variance gradient"),
        dzi_(static_cast<std::size_t>(D), "zero-inflation logit gradient"),
        row_logp_(static_cast<std::size_t>(n) * L, "row log p"),
        scratch_(reduce_scratch(n * L, D, mode == Mode::forward ? 0 : gpu::likelihood_column_sums(cfg_),
                                mode != Mode::weighted)) {
    arrays({&out_, &bias_, &logvar_, &zi_, &x_, &scale_, &dbias_, &dlogvar_, &dzi_, &row_logp_},
           {&out_, &dbias_, &dlogvar_, &dzi_, &row_logp_});
  }
  void launch(Context& ctx) override {
    gpu::LikelihoodArgs a;
    a.out = out_.get();
    a.bias = bias_.get();
    a.logvar = has_feature_parameter(cfg_) ? logvar_.get() : nullptr;
    a.x = x_.get();
    a.n = n_;
    a.L = L_;
    a.row_scale = mode_ == Mode::weighted ? scale_.get() : nullptr;
    a.dbias = dbias_.get();
    a.dlogvar = dlogvar_.get();
    a.row_logp = row_logp_.get();
    a.zi = zinb() && !item() ? zi_.get() : nullptr;
    a.dzi = item() ? dbias_.get() + cfg_.input_dim : zinb() ? dzi_.get() : nullptr;  // per item: the logits' bias
    gpu::likelihood_forward_backward(cfg_, a, mode_, scratch_.view(), ctx.stream());
  }
  void verify(Check& c) override {
    const Want& w = want_.get([&] { return twin(); });
    const int R = n_ * L_, D = cfg_.input_dim, W = output_width(cfg_);
    if (mode_ == Mode::weighted)
      c.untouched(row_logp_.download(), "row log p in weighted mode");
    else
      c.sums(row_logp_.download(), w.row_logp, "row log p");
    if (mode_ == Mode::forward) {
      c.bits(out_.download(), out_.init(), "logits in forward mode");
      c.untouched(dbias_.download(), "output bias gradient in forward mode");
      c.untouched(dlogvar_.download(), "log-variance gradient in forward mode");
      c.untouched(dzi_.download(), "zero-inflation logit gradient in forward mode");
      return;
    }
    c.close(out_.download(), w.grad, mode_ == Mode::weighted ? 1e-8 : 1e-6, 1e-5, "d loss / d logits");
    c.sums(dbias_.download(), column_sums(w.grad, R, W), "output bias gradient");  // per item: the logits' bias too
    if (has_feature_parameter(cfg_))
      c.sums(dlogvar_.download(), column_sums(w.dlv, R, D), "log-variance gradient");
    else
      c.untouched(dlogvar_.download(), "log-variance gradient of a fixed variance");
    if (zinb() && !item())
      c.sums(dzi_.download(), column_sums(w.dzi, R, D), "zero-inflation logit gradient");
    else if (item())
      c.untouched(dzi_.download(), "the per-feature zero-inflation gradient under per-item zero inflation");
    else
      c.untouched(dzi_.download(), "zero-inflation logit gradient without zero inflation");
  }
  Traffic traffic() const override {
    const bool grad = mode_ != Mode::forward;
    return {double(2 * out_.size() + x_.size() + bias_.size() + (grad ? dbias_.size() : 0) + row_logp_.size()) * 4, 0};
  }
  Array<float>& out() { return out_; }
  Array<float>& bias() { return bias_; }
  Array<float>& x() { return x_; }
  Array<float>& dbias() { return dbias_; }
  Array<float>& row_logp() { return row_logp_; }
  float scale() const { return 1.0f / static_cast<float>(n_ * L_); }  // backward mode's, as the CPU: T(1) / T(R)
  int rows() const { return n_ * L_; }
  int D() const { return cfg_.input_dim; }

 private:
  struct Want {
    std::vector<float> grad, dlv, dzi;  // (R, D): d loss / d logits, d logvar, d zero-inflation logit per row
    SumRef row_logp;
  };
  static ModelConfig config(Likelihood lik, bool learned, int L, int D, bool zi_item) {
    ModelConfig cfg;
    if (zi_item) cfg.zero_inflation = ZeroInflation::item;
    cfg.input_dim = D;
    cfg.samples = L;
    cfg.likelihood = lik;
    cfg.learn_sigma = learned;
    cfg.sigma = 0.7;
    return cfg;
  }
  std::uint64_t seed() const { return mode_ == Mode::weighted ? 500 : 80; }
  // Values in [0, 1], or for a count likelihood the counts 0..6.
  static std::vector<float> targets(Likelihood lik, std::size_t n, std::uint64_t seed) {
    auto v = uniform(n, 0, 1, seed);
    if (counts_likelihood(lik))
      for (auto& x : v) x = std::floor(x * 7.0f);
    return v;
  }
  static std::vector<float> logits(std::size_t n, std::uint64_t seed) {
    auto v = normal(n, seed);
    for (auto& o : v) o *= 2.0f;
    return v;
  }
  const float* logvar() const { return has_feature_parameter(cfg_) ? logvar_.init().data() : nullptr; }
  bool zinb() const { return cfg_.likelihood == Likelihood::zinb; }
  bool item() const { return zero_inflation_per_item(cfg_); }
  const float* zi() const { return zinb() && !item() ? zi_.init().data() : nullptr; }
  Want twin() const {
    const int R = n_ * L_, D = cfg_.input_dim;
    Want w{out_.init(), std::vector<float>(out_.size(), 0.0f), std::vector<float>(out_.size(), 0.0f), {}};
    std::vector<float> row_logp(static_cast<std::size_t>(R));
    const float scale = mode_ == Mode::weighted ? 1.0f : 1.0f / static_cast<float>(R);
    cpu::likelihood_pass<float, true>(cfg_, w.grad.data(), bias_.init().data(), logvar(), x_.init().data(), n_, L_,
                                      scale, w.dlv.data(), row_logp.data(), zi(), w.dzi.data());
    if (mode_ == Mode::weighted) {
      cpu::scale_rows(w.grad.data(), scale_.init().data(), R, output_width(cfg_));
      cpu::scale_rows(w.dlv.data(), scale_.init().data(), R, D);
      cpu::scale_rows(w.dzi.data(), scale_.init().data(), R, D);
    }
    if (mode_ != Mode::weighted) w.row_logp = row_sums(row_terms(), R, D);
    return w;
  }
  // log p of each element (R, D): the forward twin on column d alone (input_dim 1).
  // Per-item zero inflation: column d's outputs are (o_d, o_{D+d}), its biases likewise.
  std::vector<float> row_terms() const {
    const int R = n_ * L_, D = cfg_.input_dim, W = output_width(cfg_), w1 = item() ? 2 : 1;
    ModelConfig one = cfg_;
    one.input_dim = 1;
    std::vector<float> terms(static_cast<std::size_t>(R) * D), o(static_cast<std::size_t>(R) * w1),
        x(static_cast<std::size_t>(n_)), lp(static_cast<std::size_t>(R));
    for (int d = 0; d < D; ++d) {
      for (int r = 0; r < R; ++r)
        for (int k = 0; k < w1; ++k) o[static_cast<std::size_t>(r) * w1 + k] = out_.init()[static_cast<std::size_t>(r) * W + d + k * D];
      for (int b = 0; b < n_; ++b) x[b] = x_.init()[static_cast<std::size_t>(b) * D + d];
      const float* lv = has_feature_parameter(cfg_) ? logvar_.init().data() + d : nullptr;
      const float bias[2] = {bias_.init()[d], item() ? bias_.init()[D + d] : 0.0f};
      cpu::likelihood_pass<float, false>(one, o.data(), bias, lv, x.data(), n_, L_, 0.0f, nullptr, lp.data(),
                                         zi() ? zi_.init().data() + d : nullptr);
      for (int r = 0; r < R; ++r) terms[static_cast<std::size_t>(r) * D + d] = lp[r];
    }
    return terms;
  }
  ModelConfig cfg_;
  int n_, L_;
  Mode mode_;
  Array<float> out_, bias_, logvar_, zi_, x_, scale_, dbias_, dlogvar_, dzi_, row_logp_;
  gpu::ReduceScratchBuffers scratch_;
  Once<Want> want_;
};

}  // namespace vae::cases
