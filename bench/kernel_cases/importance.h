// Cases of the loss sums and of importance sampling (kernels/loss_sums.cuh,
// kernels/importance.cuh): the per-step loss sums (ELBO and IWAE), the IWAE importance
// weights, and the log-likelihood estimate's chunks and running log-sum-exps.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cpu_passes.h"
#include "elementwise.h"
#include "importance.cuh"
#include "kernel_cases/harness.h"
#include "loss_sums.cuh"
#include "rng.h"

namespace vae::cases {

// The CPU's reconstruction term per data point (CpuModel::run, inline there): the float sum
// of its L rows' log p in order, then -lp / L.
inline std::vector<float> recon_per_item(const std::vector<float>& row_logp, int n, int L) {
  std::vector<float> recon(static_cast<std::size_t>(n));
  for (int b = 0; b < n; ++b) {
    float lp = 0;
    for (int l = 0; l < L; ++l) lp += row_logp[static_cast<std::size_t>(b) * L + l];
    recon[static_cast<std::size_t>(b)] = -lp / static_cast<float>(L);
  }
  return recon;
}
inline double sum_of(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x);
  return s;
}

// gpu::loss_accumulate for the ELBO against CpuModel::run's sums: two batches accumulated
// into one device total ((37, 3), then (300, 2)), the per-item recon bit for bit (the same
// float operations), the sums in double within 1e-12 relative; then overwrite mode (a
// training step's own sums): the earlier sums are gone.
class LossSumsScenario final : public KernelCase {
 public:
  LossSumsScenario() : KernelCase("loss_accumulate ELBO, accumulated and overwritten") {}
  void check(Context& ctx, Check& c) override {
    Array<gpu::DeviceLossSums> acc(std::vector<gpu::DeviceLossSums>{gpu::DeviceLossSums{}}, "loss sums");
    const double beta = 0.75;
    Array<double> dbeta(std::vector<double>{beta}, "beta");
    double recon = 0, kl = 0;
    for (auto [n, L] : {std::pair<int, int>{37, 3}, std::pair<int, int>{300, 2}}) {
      Array<float> row_logp(uniform(static_cast<std::size_t>(n) * L, -200, -50, 90 + static_cast<std::uint64_t>(n)),
                            "row log p");
      Array<float> dkl(uniform(static_cast<std::size_t>(n), 0, 30, 91 + static_cast<std::uint64_t>(n)), "kl");
      Array<float> drecon(static_cast<std::size_t>(n), "recon");
      gpu::loss_accumulate(row_logp.get(), dkl.get(), nullptr, n, L, dbeta.get(), drecon.get(), acc.get(), true,
                           ctx.stream());
      const auto want = recon_per_item(row_logp.init(), n, L);
      c.bits(drecon.download(), want, "recon per item (the CPU's float operations), n=" + std::to_string(n));
      recon += sum_of(want);
      kl += sum_of(dkl.init());
    }
    const auto got = acc.download()[0];
    c.near(got.recon, recon, 1e-12 * std::fabs(recon), "accumulated recon");
    c.near(got.kl, kl, 1e-12 * std::fabs(kl), "accumulated KL");
    c.near(got.loss, recon + beta * kl, 1e-12 * std::fabs(recon + beta * kl), "accumulated loss");
    c.equal(got.count, 337LL, "accumulated count");
    const auto row_logp = uniform(10, -200, -50, 95);
    Array<float> dl(row_logp, "row log p"), dk(uniform(5, 0, 30, 96), "kl");
    gpu::loss_accumulate(dl.get(), dk.get(), nullptr, 5, 2, dbeta.get(), nullptr, acc.get(), false, ctx.stream());
    const auto one = acc.download()[0];
    c.equal(one.count, 5LL, "count in overwrite mode");
    const double r = sum_of(recon_per_item(row_logp, 5, 2));
    c.near(one.recon, r, 1e-12 * std::fabs(r), "recon in overwrite mode");
  }
};

// gpu::loss_accumulate for IWAE: loss = -sum of the bounds (beta unused), recon and KL the
// ELBO's parts, every field written over a poisoned total; then the ELBO from the same
// inputs with beta (123, far from any default) read from device memory. 1e-12 relative.
class IwaeLossSumsScenario final : public KernelCase {
 public:
  IwaeLossSumsScenario() : KernelCase("loss_accumulate IWAE n=37 K=3") {}
  void check(Context& ctx, Check& c) override {
    const int n = 37, K = 3;
    Array<float> row_logp(uniform(static_cast<std::size_t>(n) * K, -200, -50, 600), "row log p");
    Array<float> kl(uniform(static_cast<std::size_t>(n), 0, 30, 601), "kl");
    Array<float> bound(uniform(static_cast<std::size_t>(n), -150, -40, 602), "bound");
    Array<float> recon(static_cast<std::size_t>(n), "recon");
    Array<double> beta(std::vector<double>{123.0}, "beta");
    Array<gpu::DeviceLossSums> acc(1, "loss sums");  // poisoned: overwrite mode writes every field
    const double want_recon = sum_of(recon_per_item(row_logp.init(), n, K)), want_kl = sum_of(kl.init()),
                 want_bound = sum_of(bound.init());
    gpu::loss_accumulate(row_logp.get(), kl.get(), bound.get(), n, K, beta.get(), recon.get(), acc.get(), false,
                         ctx.stream());
    auto got = acc.download()[0];
    c.near(got.loss, -want_bound, 1e-12 * std::fabs(want_bound), "IWAE loss = -sum bound (beta unused)");
    c.near(got.recon, want_recon, 1e-12 * std::fabs(want_recon), "IWAE recon, the ELBO's part");
    c.near(got.kl, want_kl, 1e-12 * want_kl, "IWAE KL");
    c.equal(got.count, static_cast<long long>(n), "count");
    bool written = true;
    for (float v : recon.download()) written = written && !std::isnan(v);
    c.expect(written, "recon per item fully written");
    gpu::loss_accumulate(row_logp.get(), kl.get(), nullptr, n, K, beta.get(), nullptr, acc.get(), false, ctx.stream());
    got = acc.download()[0];
    c.near(got.loss, want_recon + 123.0 * want_kl, 1e-12 * (want_recon + 123.0 * want_kl),
           "ELBO loss, beta from the device");
  }
};

// gpu::importance_weights against cpu::importance_weights (divided by n, as CpuModel::run):
// weights 1e-12 + 1e-5 relative, bounds 1e-5 + 1e-6 relative, and each data point's
// weights sum to 1/n within 1e-5/n (the float sum of K exponentials they divide by).
class ImportanceWeightsCase final : public OpCase {
 public:
  ImportanceWeightsCase(int n, int K)
      : OpCase("importance_weights n=" + std::to_string(n) + " K=" + std::to_string(K)),
        n_(n),
        K_(K),
        row_logp_(uniform(static_cast<std::size_t>(n) * K, -80, -20, 400 + static_cast<std::uint64_t>(K)), "row log p"),
        lpq_(uniform(static_cast<std::size_t>(n) * K, -6, 6, 401 + static_cast<std::uint64_t>(K)), "lpq"),
        w_(static_cast<std::size_t>(n) * K, "weights"),
        bound_(static_cast<std::size_t>(n), "bound") {
    arrays({&row_logp_, &lpq_, &w_, &bound_}, {&w_, &bound_});
  }
  void launch(Context& ctx) override {
    gpu::importance_weights(row_logp_.get(), lpq_.get(), n_, K_, n_, w_.get(), bound_.get(), ctx.stream());
  }
  void verify(Check& c) override {
    std::vector<float> w(w_.size()), bound(bound_.size());
    cpu::importance_weights(row_logp_.init().data(), lpq_.init().data(), n_, K_, w.data(), bound.data());
    for (auto& v : w) v /= static_cast<float>(n_);
    const auto got = w_.download();
    c.close(got, w, 1e-12, 1e-5, "weights / n");
    c.close(bound_.download(), bound, 1e-5, 1e-6, "bound");
    for (int b = 0; b < n_; ++b) {
      double s = 0;
      for (int k = 0; k < K_; ++k) s += got[static_cast<std::size_t>(b) * K_ + k];
      c.near(s, 1.0 / n_, 1e-5 / n_, "the weights of data point " + std::to_string(b) + " sum to 1/n");
    }
  }

 private:
  int n_, K_;
  Array<float> row_logp_, lpq_, w_, bound_;
};

// gpu::iw_gather_chunk, iw_reset, iw_accumulate, iw_finish against the CPU backend's
// estimate_log_likelihood (its loops are inline there): two groups of data points (37,
// then 10), k = 5 samples each in chunks of 3 and 2; the chunk copies bit for bit, the
// running maxima exactly, the totals within 1e-12 relative (the running log-sum-exp of
// ew::logsumexp_add in the CPU's order, as its LogSumExp).
class EstimateScenario final : public KernelCase {
 public:
  EstimateScenario() : KernelCase("log-likelihood estimate Z=13 k=5, chunks 3+2, groups 37+10") {}
  void check(Context& ctx, Check& c) override {
    Array<gpu::DeviceLikelihoodSums> totals(std::vector<gpu::DeviceLikelihoodSums>{gpu::DeviceLikelihoodSums{}},
                                            "totals");
    gpu::DeviceLikelihoodSums want;
    std::uint64_t seed = 700;
    for (int n : {37, 10}) group(ctx, c, n, seed, totals, want);
    const auto got = totals.download()[0];
    c.near(got.iwae, want.iwae, 1e-12 * std::fabs(want.iwae), "IWAE estimate");
    c.near(got.prior, want.prior, 1e-12 * std::fabs(want.prior), "prior estimate");
    c.near(got.recon, want.recon, 1e-12 * std::fabs(want.recon), "recon");
    c.near(got.kl, want.kl, 1e-12 * std::fabs(want.kl), "KL");
    c.equal(got.count, 47LL, "count");
  }

 private:
  static constexpr int kZ = 13, kK = 5;
  struct Running {  // the CPU's per data point state
    double q_max = -INFINITY, q_sum = 0, p_max = -INFINITY, p_sum = 0, recon = 0;
  };
  static std::size_t stride() { return round_up_even(static_cast<std::size_t>(kK) * kZ); }  // odd k*Z: padded

  void group(Context& ctx, Check& c, int n, std::uint64_t& seed, Array<gpu::DeviceLikelihoodSums>& totals,
             gpu::DeviceLikelihoodSums& want) {
    Array<float> noise(normal(static_cast<std::size_t>(n) * stride(), seed++), "noise");
    Array<float> kl(uniform(static_cast<std::size_t>(n), 0, 20, seed++), "kl");
    Array<gpu::IwRunning> running(static_cast<std::size_t>(n), "running sums");  // poisoned, then reset
    gpu::iw_reset(running.get(), n, ctx.stream());
    std::vector<Running> cpu(static_cast<std::size_t>(n));
    for (auto [c0, cn] : {std::pair<int, int>{0, 3}, std::pair<int, int>{3, 2}}) {
      check_chunk(ctx, c, noise, n, c0, cn);
      accumulate(ctx, n, cn, seed, running, cpu);
    }
    const auto run = running.download();
    for (int i = 0; i < n; ++i) {  // the maxima are exact: no rounding in a max
      c.equal(run[static_cast<std::size_t>(i)].q_max, cpu[static_cast<std::size_t>(i)].q_max,
              "q max of data point " + std::to_string(i));
      c.equal(run[static_cast<std::size_t>(i)].p_max, cpu[static_cast<std::size_t>(i)].p_max,
              "p max of data point " + std::to_string(i));
    }
    gpu::iw_finish(running.get(), kl.get(), n, kK, totals.get(), ctx.stream());
    ctx.sync();
    for (const Running& r : cpu) {
      want.iwae += ew::logsumexp_log_mean(r.q_max, r.q_sum, kK);
      want.prior += ew::logsumexp_log_mean(r.p_max, r.p_sum, kK);
      want.recon += r.recon / kK;
    }
    want.kl += sum_of(kl.init());
    want.count += n;
  }
  // Samples c0 .. c0+cn-1 of each data point, copied into (n*cn, Z) rows.
  static void check_chunk(Context& ctx, Check& c, const Array<float>& noise, int n, int c0, int cn) {
    Array<float> eps(static_cast<std::size_t>(n) * cn * kZ, "chunk");
    gpu::iw_gather_chunk(noise.get(), n, stride(), c0, cn, kZ, eps.get(), ctx.stream());
    std::vector<float> want(eps.size());
    for (int i = 0; i < n; ++i)
      for (int s = 0; s < cn; ++s)
        for (int j = 0; j < kZ; ++j)
          want[(static_cast<std::size_t>(i) * cn + s) * kZ + j] =
              noise.init()[static_cast<std::size_t>(i) * stride() + static_cast<std::size_t>(c0 + s) * kZ + j];
    c.bits(eps.download(), want, "chunk " + std::to_string(c0) + "+" + std::to_string(cn) + ", n=" + std::to_string(n));
  }
  // A chunk's log p(x|z) and lpq of the samples from q, and log p(x|z) of those from the prior.
  static void accumulate(Context& ctx, int n, int cn, std::uint64_t& seed, Array<gpu::IwRunning>& running,
                         std::vector<Running>& cpu) {
    const std::size_t rows = static_cast<std::size_t>(n) * cn;
    Array<float> lp_q(uniform(rows, -90, -20, seed++), "log p(x|z), q"), lpq(uniform(rows, -5, 5, seed++), "lpq"),
        lp_p(uniform(rows, -200, -30, seed++), "log p(x|z), prior");
    gpu::iw_accumulate(lp_q.get(), lpq.get(), n, cn, running.get(), ctx.stream());
    gpu::iw_accumulate(lp_p.get(), nullptr, n, cn, running.get(), ctx.stream());
    for (std::size_t r = 0; r < rows; ++r) {
      Running& s = cpu[r / static_cast<std::size_t>(cn)];
      ew::logsumexp_add(s.q_max, s.q_sum, double(lp_q.init()[r]) + double(lpq.init()[r]));
      s.recon -= double(lp_q.init()[r]);
      ew::logsumexp_add(s.p_max, s.p_sum, double(lp_p.init()[r]));
    }
    ctx.sync();
  }
};

}  // namespace vae::cases
