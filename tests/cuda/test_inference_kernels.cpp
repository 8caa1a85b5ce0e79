// The kernels of the inference toolkit on the GPU against the CPU path's own passes
// (host/cpu_passes.h) or the same ew:: formulas, at odd sizes (batch 37, D 61, Z 13, K 3):
// the optimizer kernel (every kind, two parameter groups, scalars from device memory), the
// score-function and IWAE latent backward kernels, the importance weights, the weighted
// likelihood, the IWAE loss sums and the log-likelihood estimate's kernels. Every output
// buffer is poisoned with NaN first, so a passing test shows every element was written.
//
// Tolerances as in test_kernels.cpp: elementwise atol + rtol 1e-5 (device libm differs from
// glibc by an ulp or two; no FMA on either side), sums against a double reference with an
// allowance of 1e-6 * (sum of |terms|) + 1e-6; double-precision running sums 1e-12.
#include <array>
#include <cmath>
#include <cstring>
#include <utility>

#include "cpu_passes.h"
#include "gpu_test_util.h"
#include "importance.cuh"
#include "latent.cuh"
#include "layers.cuh"
#include "likelihood.cuh"
#include "loss_sums.cuh"
#include "optimizer.cuh"
#include "vae/elementwise.h"

namespace vae {
namespace {

using test::all_close;
using test::column_sums_ref;
using test::DeviceRecord;
using test::Dev;
using test::GpuTest;
using test::sums_close;

constexpr Optimizer kOptimizers[] = {Optimizer::adam, Optimizer::adamw, Optimizer::sgd, Optimizer::rmsprop};

OptimizerConfig optimizer_config(Optimizer kind) {
  OptimizerConfig c;
  c.kind = kind;
  c.lr = 1.0;  // not used: the kernel reads the step's learning rate from the record
  c.weight_decay = 0.1;
  c.momentum = 0.8;
  c.alpha = 0.95;
  c.eps = 1e-6;
  return c;
}

// ---- optimizer -----------------------------------------------------------------------------

class OptimizerKernel : public GpuTest {};

// Each kind, each combination of groups a step may update: the updated group as the CPU
// path's loop over ew::optimizer_update with that group's count, the other bit for bit as
// it was; the learning rate from the record, the counts from device memory.
TEST_F(OptimizerKernel, EveryKindMatchesTheCpuUpdateInEachGroup) {
  const std::size_t n = 4 * 1031, split = 4 * 517;  // the encoder group: [0, split)
  const std::int64_t counts[2] = {3, 11};            // updates of each group, this one included
  const double lr = 3e-3;
  for (Optimizer kind : kOptimizers) {
    const OptimizerConfig cfg = optimizer_config(kind);
    for (auto [enc, dec] : {std::array<int, 2>{1, 1}, std::array<int, 2>{1, 0}, std::array<int, 2>{0, 1}}) {
      auto p = test::uniform_values<float>(n, -1, 1, 100);
      auto s1 = test::uniform_values<float>(n, -0.1, 0.1, 101);
      auto s2 = test::uniform_values<float>(n, 0, 0.01, 102);
      const auto g = test::uniform_values<float>(n, -1, 1, 103);
      const auto p0 = p, s10 = s1, s20 = s2;
      Dev<float> dp(p), ds1(s1), ds2(s2), dg(g);
      Dev<std::int64_t> updates(std::vector<std::int64_t>{counts[0], counts[1]});
      DeviceRecord rec(1);
      gpu::StepHeader h;
      h.lr = lr;
      h.update_encoder = enc;
      h.update_decoder = dec;
      rec.write(h, {0});
      gpu::OptimizerArgs a;
      a.p = dp.get();
      a.g = dg.get();
      a.s1 = ds1.get();
      a.s2 = ds2.get();
      a.n = n;
      a.encoder_end = split;
      a.hdr = rec.header();
      a.updates = updates.get();
      gpu::optimizer_step(a, cfg, nullptr);

      const std::size_t begin[2] = {0, split}, end[2] = {split, n};
      const bool update[2] = {enc != 0, dec != 0};
      for (int grp = 0; grp < 2; ++grp) {
        if (!update[grp]) continue;
        const ew::OptimizerScalars s = ew::optimizer_scalars(cfg, lr, counts[grp]);
        for (std::size_t i = begin[grp]; i < end[grp]; ++i) ew::optimizer_update(p[i], s1[i], s2[i], g[i], s);
      }
      const auto gp = dp.download(), gs1 = ds1.download(), gs2 = ds2.download();
      const std::string what = std::string(to_string(kind)) + (enc ? " encoder" : "") + (dec ? " decoder" : "");
      EXPECT_TRUE(all_close(gp, p, 1e-7, 1e-6, "params, " + what));
      EXPECT_TRUE(all_close(gs1, s1, 1e-8, 1e-6, "slot 1, " + what));
      EXPECT_TRUE(all_close(gs2, s2, 1e-10, 1e-6, "slot 2, " + what));
      for (int grp = 0; grp < 2; ++grp) {
        auto part = [&](const std::vector<float>& v) {
          return std::vector<float>(v.begin() + static_cast<std::ptrdiff_t>(begin[grp]),
                                    v.begin() + static_cast<std::ptrdiff_t>(end[grp]));
        };
        const std::string group = grp == 0 ? "encoder group" : "decoder group";
        if (update[grp]) {
          EXPECT_NE(part(gp), part(p0)) << group << " did not move, " << what;
        } else {
          EXPECT_TRUE(test::bit_equal(part(gp), part(p0))) << group << " params changed, " << what;
          EXPECT_TRUE(test::bit_equal(part(gs1), part(s10))) << group << " slot 1 changed, " << what;
          EXPECT_TRUE(test::bit_equal(part(gs2), part(s20))) << group << " slot 2 changed, " << what;
        }
      }
      EXPECT_EQ(updates.download(), (std::vector<std::int64_t>{counts[0], counts[1]})) << "the kernel reads the counts";

      // A dropped step (the skip flag set) changes nothing.
      Dev<int> skip(std::vector<int>{1});
      a.skip = skip.get();
      gpu::optimizer_step(a, cfg, nullptr);
      EXPECT_TRUE(test::bit_equal(dp.download(), gp)) << what;
      EXPECT_TRUE(test::bit_equal(ds1.download(), gs1)) << what;
      EXPECT_TRUE(test::bit_equal(ds2.download(), gs2)) << what;
    }
  }
}

TEST_F(OptimizerKernel, DeviceScalarsEqualTheHostScalars) {
  const std::vector<std::int64_t> ts = {1, 2, 3, 10, 99, 1000, 4691, 100000, 10000000};
  std::vector<double> lrs;
  for (std::size_t i = 0; i < ts.size(); ++i) lrs.push_back(1e-3 * std::pow(0.7, double(i)));  // a decaying schedule
  Dev<std::int64_t> t(ts);
  Dev<double> lr(lrs);
  for (Optimizer kind : kOptimizers) {
    const OptimizerConfig cfg = optimizer_config(kind);
    Dev<ew::OptimizerScalars> out(ts.size());
    gpu::optimizer_scalars_on_device(lr.get(), t.get(), static_cast<int>(ts.size()), cfg, out.get(), nullptr);
    const auto got = out.download();
    for (std::size_t i = 0; i < ts.size(); ++i) {
      const ew::OptimizerScalars want = ew::optimizer_scalars(cfg, lrs[i], ts[i]);
      const std::string what = std::string(to_string(kind)) + " t=" + std::to_string(ts[i]);
      EXPECT_EQ(got[i].kind, want.kind) << what;
      EXPECT_EQ(got[i].lr, want.lr) << what;
      EXPECT_EQ(got[i].decay, want.decay) << what << " (1 - lr*wd: the same double operations)";
      EXPECT_EQ(got[i].momentum, want.momentum) << what;
      EXPECT_EQ(got[i].alpha, want.alpha) << what;
      EXPECT_EQ(got[i].eps, want.eps) << what;
      // pow may differ by an ulp or two between libdevice and glibc, and 1 - b^t (>= 1e-3
      // here) magnifies that to ~1e-13. The float values the update uses then agree, or sit
      // one float apart when the double lies on a rounding boundary (rare, and not a bug).
      EXPECT_NEAR(got[i].adam.step_size, want.adam.step_size, 1e-12 * want.adam.step_size) << what;
      EXPECT_NEAR(got[i].adam.inv_sqrt_bc2, want.adam.inv_sqrt_bc2, 1e-12 * want.adam.inv_sqrt_bc2) << what;
      for (const auto& [g, w] : {std::pair{got[i].adam.step_size, want.adam.step_size},
                                 std::pair{got[i].adam.inv_sqrt_bc2, want.adam.inv_sqrt_bc2}}) {
        const float gf = static_cast<float>(g), wf = static_cast<float>(w);
        EXPECT_TRUE(gf == wf || gf == std::nextafter(wf, 0.0f) || gf == std::nextafter(wf, 2 * wf))
            << what << ": float " << gf << " vs " << wf;
      }
    }
  }
}

// ---- latent backward: score function and IWAE ---------------------------------------------

class LatentBackwardKernels : public GpuTest {};

struct LatentInputs {
  int n, L, Z;
  std::vector<float> head, eps, z, dz, row_logp, w;
};

// A biased head, noise, the codes the forward pass makes of them, a decoder gradient,
// per-row log-likelihoods and normalized importance weights / n.
LatentInputs latent_inputs(int n, int L, int Z, std::uint64_t seed) {
  LatentInputs in{n, L, Z, {}, {}, {}, {}, {}, {}};
  const std::size_t R = static_cast<std::size_t>(n) * L;
  in.head = test::uniform_values<float>(static_cast<std::size_t>(n) * 2 * Z, -2, 2, seed);
  in.eps = test::normal_values<float>(R * Z, seed + 1);
  in.dz = test::uniform_values<float>(R * Z, -0.1, 0.1, seed + 2);
  in.row_logp = test::uniform_values<float>(R, -80, -20, seed + 3);
  in.z.resize(R * Z);
  for (int b = 0; b < n; ++b)
    for (int l = 0; l < L; ++l)
      for (int j = 0; j < Z; ++j) {
        const std::size_t hb = static_cast<std::size_t>(b) * 2 * Z, r = (static_cast<std::size_t>(b) * L + l) * Z + j;
        in.z[r] = ew::reparameterize(in.head[hb + j], in.head[hb + Z + j], in.eps[r]);
      }
  const auto lw = test::uniform_values<float>(R, -6, 0, seed + 4);
  std::vector<float> bound(static_cast<std::size_t>(n));
  const std::vector<float> zeros(R, 0.0f);
  in.w.resize(R);
  cpu::importance_weights(lw.data(), zeros.data(), n, L, in.w.data(), bound.data());
  for (auto& v : in.w) v /= static_cast<float>(n);
  return in;
}

TEST_F(LatentBackwardKernels, ScoreFunctionMatchesTheCpuPass) {
  const int n = 37, Z = 13;
  const double beta = 0.7;
  for (int L : {1, 3}) {
    const LatentInputs in = latent_inputs(n, L, Z, 200 + static_cast<std::uint64_t>(L));
    std::vector<float> want(in.head.size()), want_bias(2 * static_cast<std::size_t>(Z));
    cpu::latent_backward_score(in.head.data(), in.eps.data(), in.row_logp.data(), n, L, Z, 1.0f / static_cast<float>(n),
                               static_cast<float>(beta) / static_cast<float>(n), want.data(), want_bias.data());
    Dev<float> dh(in.head), de(in.eps), dlp(in.row_logp), dhead(in.head.size()), dbias(want_bias.size());
    Dev<double> dbeta(std::vector<double>{beta});
    const auto scratch = test::reduce_scratch(n, Z, 2, false);
    dhead.poison();
    dbias.poison();
    gpu::LatentBackwardArgs a;
    a.head = dh.get();
    a.eps_block = de.get();
    a.n = n;
    a.L = L;
    a.Z = Z;
    a.beta = dbeta.get();
    a.row_logp = dlp.get();
    a.dhead = dhead.get();
    a.dbias = dbias.get();
    gpu::latent_backward_score(a, scratch.view(), nullptr);
    std::vector<double> col, col_abs;
    column_sums_ref(want, n, 2 * Z, col, col_abs);
    const std::string what = "L=" + std::to_string(L);
    EXPECT_TRUE(all_close(dhead.download(), want, 1e-6, 1e-5, "(d mu, d s), score function, " + what));
    EXPECT_TRUE(sums_close(dbias.download(), col, col_abs, "head bias gradient, score function, " + what));
  }
}

TEST_F(LatentBackwardKernels, IwaeMatchesTheCpuPass) {
  const int n = 37, Z = 13;
  for (int K : {1, 3}) {
    const LatentInputs in = latent_inputs(n, K, Z, 300 + static_cast<std::uint64_t>(K));
    std::vector<float> want(in.head.size()), want_bias(2 * static_cast<std::size_t>(Z));
    cpu::latent_backward_iwae(in.head.data(), in.eps.data(), in.z.data(), in.w.data(), in.dz.data(), n, K, Z,
                              want.data(), want_bias.data());
    // An offset eps slice in device memory, as the training step reads it.
    std::vector<float> block(in.eps.size() + 64, 1e6f);
    std::copy(in.eps.begin(), in.eps.end(), block.begin() + 64);
    Dev<float> dh(in.head), de(block), dz(in.dz), dzz(in.z), dw(in.w), dhead(in.head.size()), dbias(want_bias.size());
    Dev<std::int64_t> off(std::vector<std::int64_t>{64});
    const auto scratch = test::reduce_scratch(n, Z, 2, false);
    dhead.poison();
    dbias.poison();
    gpu::LatentBackwardArgs a;
    a.head = dh.get();
    a.eps_block = de.get();
    a.eps_offset = off.get();
    a.n = n;
    a.L = K;
    a.Z = Z;
    a.dz = dz.get();
    a.z = dzz.get();
    a.w = dw.get();
    a.dhead = dhead.get();
    a.dbias = dbias.get();
    gpu::latent_backward_iwae(a, scratch.view(), nullptr);
    std::vector<double> col, col_abs;
    column_sums_ref(want, n, 2 * Z, col, col_abs);
    const std::string what = "K=" + std::to_string(K);
    EXPECT_TRUE(all_close(dhead.download(), want, 1e-6, 1e-5, "(d mu, d s), IWAE, " + what));
    EXPECT_TRUE(sums_close(dbias.download(), col, col_abs, "head bias gradient, IWAE, " + what));
  }
}

// ---- importance weights ----------------------------------------------------------------------

class ImportanceWeightsKernel : public GpuTest {};

TEST_F(ImportanceWeightsKernel, SoftmaxAndBoundMatchTheCpuPass) {
  for (auto [n, K] : {std::array<int, 2>{37, 3}, std::array<int, 2>{37, 1}, std::array<int, 2>{5, 200}}) {
    const std::size_t R = static_cast<std::size_t>(n) * K;
    const auto row_logp = test::uniform_values<float>(R, -80, -20, 400 + static_cast<std::uint64_t>(K));
    const auto lpq = test::uniform_values<float>(R, -6, 6, 401 + static_cast<std::uint64_t>(K));
    std::vector<float> want_w(R), want_bound(static_cast<std::size_t>(n));
    cpu::importance_weights(row_logp.data(), lpq.data(), n, K, want_w.data(), want_bound.data());
    for (auto& v : want_w) v /= static_cast<float>(n);  // as CpuModel::run
    Dev<float> dl(row_logp), dq(lpq), w(R), bound(static_cast<std::size_t>(n));
    w.poison();
    bound.poison();
    gpu::importance_weights(dl.get(), dq.get(), n, K, n, w.get(), bound.get(), nullptr);
    const auto got_w = w.download();
    const std::string what = "n=" + std::to_string(n) + " K=" + std::to_string(K);
    EXPECT_TRUE(all_close(got_w, want_w, 1e-12, 1e-5, "weights / n, " + what));
    EXPECT_TRUE(all_close(bound.download(), want_bound, 1e-5, 1e-6, "bound, " + what));
    // The weights of a data point sum to 1/n, up to the float sum of K exponentials the
    // normalization divides by (a few ulps per term at most: 1e-5 relative for K = 200).
    for (int b = 0; b < n; ++b) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += got_w[static_cast<std::size_t>(b) * K + k];
      EXPECT_NEAR(s, 1.0 / n, 1e-5 / n) << "the weights of data point " << b << " sum to 1/n, " << what;
    }
  }
}

// ---- weighted likelihood (IWAE's second phase) -----------------------------------------------

class WeightedLikelihood : public GpuTest {};

TEST_F(WeightedLikelihood, ScalesEachRowAndWritesNoRowSums) {
  struct Case {
    Likelihood lik;
    bool learned;
    int n, K, D;
  };
  const std::vector<Case> cases = {{Likelihood::bernoulli, false, 37, 3, 61},
                                   {Likelihood::gaussian, false, 37, 3, 61},
                                   {Likelihood::gaussian, true, 37, 3, 13},
                                   {Likelihood::gaussian, true, 37, 1, 61}};
  for (const auto& c : cases) {
    ModelConfig cfg;
    cfg.input_dim = c.D;
    cfg.likelihood = c.lik;
    cfg.learn_sigma = c.learned;
    cfg.sigma = 0.7;
    const int R = c.n * c.K, D = c.D;
    const std::size_t RD = static_cast<std::size_t>(R) * D;
    auto out0 = test::normal_values<float>(RD, 500);
    for (auto& v : out0) v *= 2.0f;
    const auto bias = test::uniform_values<float>(static_cast<std::size_t>(D), -0.5, 0.5, 501);
    const auto logvar = test::uniform_values<float>(static_cast<std::size_t>(D), -1, 1, 502);
    const auto x = test::uniform_values<float>(static_cast<std::size_t>(c.n) * D, 0, 1, 503);
    const auto scale = test::uniform_values<float>(static_cast<std::size_t>(R), 0, 1.0 / c.n, 504);
    Dev<float> out(out0), db(bias), dlv(logvar), dx(x), dscale(scale), dbias(static_cast<std::size_t>(D)),
        dlogvar(static_cast<std::size_t>(D)), row_logp(static_cast<std::size_t>(R));
    const auto scratch = test::reduce_scratch(R, D, c.learned ? 2 : 1, false);
    dbias.poison();
    dlogvar.poison();
    row_logp.poison();
    gpu::LikelihoodArgs a;
    a.out = out.get();
    a.bias = db.get();
    a.logvar = c.learned ? dlv.get() : nullptr;
    a.x = dx.get();
    a.n = c.n;
    a.L = c.K;
    a.row_scale = dscale.get();
    a.dbias = dbias.get();
    a.dlogvar = dlogvar.get();
    a.row_logp = row_logp.get();
    gpu::likelihood_forward_backward(cfg, a, gpu::LikelihoodMode::weighted,
                                     scratch.view(), nullptr);

    // The CPU path: gradient with scale 1, then each row times its weight (scale_rows).
    const float fixed_lv = static_cast<float>(2.0 * std::log(cfg.sigma));
    const float fixed_iv = static_cast<float>(1.0 / (cfg.sigma * cfg.sigma));
    std::vector<float> g(RD), glv(RD);
    for (int r = 0; r < R; ++r)
      for (int d = 0; d < D; ++d) {
        const std::size_t i = static_cast<std::size_t>(r) * D + d;
        const float xv = x[static_cast<std::size_t>(r / c.K) * D + d];
        const float o = out0[i] + bias[static_cast<std::size_t>(d)];
        float l, gm, gv = 0;
        if (c.lik == Likelihood::bernoulli) {
          ew::bernoulli(xv, o, l, gm);
        } else {
          const float lv = c.learned ? logvar[static_cast<std::size_t>(d)] : fixed_lv;
          const float iv = c.learned ? ew::exp_(-lv) : fixed_iv;
          ew::gaussian(xv, o, lv, iv, l, gm, gv);
        }
        g[i] = (gm * 1.0f) * scale[static_cast<std::size_t>(r)];
        glv[i] = (gv * 1.0f) * scale[static_cast<std::size_t>(r)];
      }
    const std::string what = std::string(to_string(c.lik)) + (c.learned ? " learned" : "") +
                             " K=" + std::to_string(c.K) + " D=" + std::to_string(D);
    EXPECT_TRUE(all_close(out.download(), g, 1e-8, 1e-5, "weighted d loss / d logits, " + what));
    std::vector<double> col, col_abs;
    column_sums_ref(g, R, D, col, col_abs);
    EXPECT_TRUE(sums_close(dbias.download(), col, col_abs, "output bias gradient, " + what));
    if (c.learned) {
      column_sums_ref(glv, R, D, col, col_abs);
      EXPECT_TRUE(sums_close(dlogvar.download(), col, col_abs, "log-variance gradient, " + what));
    }
    EXPECT_TRUE(test::all_nan(row_logp.download())) << "the weighted mode keeps the forward mode's row log p, " << what;
  }
}

// ---- IWAE loss sums --------------------------------------------------------------------------

class IwaeLossSums : public GpuTest {};

TEST_F(IwaeLossSums, LossIsMinusTheSumOfBoundsAndBetaIsReadFromTheDevice) {
  const int n = 37, K = 3;
  const auto row_logp = test::uniform_values<float>(static_cast<std::size_t>(n) * K, -200, -50, 600);
  const auto kl = test::uniform_values<float>(static_cast<std::size_t>(n), 0, 30, 601);
  const auto bound = test::uniform_values<float>(static_cast<std::size_t>(n), -150, -40, 602);
  Dev<float> dl(row_logp), dk(kl), db(bound), recon(static_cast<std::size_t>(n));
  Dev<double> beta(std::vector<double>{123.0});
  Dev<gpu::DeviceLossSums> acc(1);
  double want_recon = 0, want_kl = 0, want_bound = 0;
  for (int b = 0; b < n; ++b) {
    float lp = 0;
    for (int k = 0; k < K; ++k) lp += row_logp[static_cast<std::size_t>(b) * K + k];
    want_recon += double(-lp / static_cast<float>(K));
    want_kl += kl[static_cast<std::size_t>(b)];
    want_bound += bound[static_cast<std::size_t>(b)];
  }
  recon.poison();
  acc.poison();  // overwrite mode writes every field
  gpu::loss_accumulate(dl.get(), dk.get(), db.get(), n, K, beta.get(), recon.get(), acc.get(), false, nullptr);
  auto got = acc.download()[0];
  EXPECT_NEAR(got.loss, -want_bound, 1e-12 * std::fabs(want_bound)) << "IWAE: loss = -sum bound (beta unused)";
  EXPECT_NEAR(got.recon, want_recon, 1e-12 * std::fabs(want_recon)) << "IWAE: recon is the ELBO's part";
  EXPECT_NEAR(got.kl, want_kl, 1e-12 * want_kl);
  EXPECT_EQ(got.count, n);
  EXPECT_FALSE(test::any_nan(recon.download()));
  // The ELBO with the same inputs: beta (123, far from any default) from device memory.
  gpu::loss_accumulate(dl.get(), dk.get(), nullptr, n, K, beta.get(), nullptr, acc.get(), false, nullptr);
  got = acc.download()[0];
  EXPECT_NEAR(got.loss, want_recon + 123.0 * want_kl, 1e-12 * (want_recon + 123.0 * want_kl));
}

// ---- log-likelihood estimate kernels ---------------------------------------------------------

// The CPU path's running log-sum-exp (CpuBackend's LogSumExp), in the same order.
struct HostLogSumExp {
  double max = -INFINITY, sum = 0;
  void add(double v) { ew::logsumexp_add(max, sum, v); }
  double log_mean(int k) const { return ew::logsumexp_log_mean(max, sum, k); }
};

class EstimateKernels : public GpuTest {};

TEST_F(EstimateKernels, ChunksAndRunningSumsFollowTheCpuOrder) {
  const int Z = 13, k = 5;
  const std::size_t stride = round_up_even(static_cast<std::size_t>(k) * Z);  // odd k*Z: padded
  const int chunks[2][2] = {{0, 3}, {3, 2}};                                   // (c0, c): 3 samples, then 2
  Dev<gpu::DeviceLikelihoodSums> totals(1);
  totals.zero();
  gpu::DeviceLikelihoodSums want;
  std::uint64_t seed = 700;
  for (int n : {37, 10}) {  // two groups of data points
    const auto noise = test::normal_values<float>(static_cast<std::size_t>(n) * stride, seed++);
    const auto kl = test::uniform_values<float>(static_cast<std::size_t>(n), 0, 20, seed++);
    Dev<float> dnoise(noise), dkl(kl);
    Dev<gpu::IwRunning> running(static_cast<std::size_t>(n));
    running.poison();
    gpu::iw_reset(running.get(), n, nullptr);
    std::vector<HostLogSumExp> q(static_cast<std::size_t>(n)), p(static_cast<std::size_t>(n));
    std::vector<double> recon(static_cast<std::size_t>(n), 0.0);
    for (const auto& ch : chunks) {
      const int c0 = ch[0], c = ch[1];
      const std::size_t rows = static_cast<std::size_t>(n) * c;
      Dev<float> eps(rows * Z);
      eps.poison();
      gpu::iw_gather_chunk(dnoise.get(), n, stride, c0, c, Z, eps.get(), nullptr);
      std::vector<float> want_eps(rows * Z);
      for (int i = 0; i < n; ++i)
        for (int s = 0; s < c; ++s)
          for (int j = 0; j < Z; ++j)
            want_eps[(static_cast<std::size_t>(i) * c + s) * Z + j] =
                noise[static_cast<std::size_t>(i) * stride + static_cast<std::size_t>(c0 + s) * Z + j];
      EXPECT_TRUE(test::bit_equal(eps.download(), want_eps)) << "chunk " << c0 << "+" << c << ", n=" << n;

      const auto lp_q = test::uniform_values<float>(rows, -90, -20, seed++);
      const auto lpq = test::uniform_values<float>(rows, -5, 5, seed++);
      const auto lp_p = test::uniform_values<float>(rows, -200, -30, seed++);
      Dev<float> dlq(lp_q), dlpq(lpq), dlp(lp_p);
      gpu::iw_accumulate(dlq.get(), dlpq.get(), n, c, running.get(), nullptr);
      gpu::iw_accumulate(dlp.get(), nullptr, n, c, running.get(), nullptr);
      for (int i = 0; i < n; ++i)
        for (int s = 0; s < c; ++s) {
          const std::size_t r = static_cast<std::size_t>(i) * c + s;
          q[static_cast<std::size_t>(i)].add(double(lp_q[r]) + double(lpq[r]));
          recon[static_cast<std::size_t>(i)] -= double(lp_q[r]);
          p[static_cast<std::size_t>(i)].add(double(lp_p[r]));
        }
    }
    const auto run = running.download();
    for (int i = 0; i < n; ++i) {  // the maxima are exact: no rounding in a max
      EXPECT_EQ(run[static_cast<std::size_t>(i)].q_max, q[static_cast<std::size_t>(i)].max) << "data point " << i;
      EXPECT_EQ(run[static_cast<std::size_t>(i)].p_max, p[static_cast<std::size_t>(i)].max) << "data point " << i;
    }
    gpu::iw_finish(running.get(), dkl.get(), n, k, totals.get(), nullptr);
    double kl_sum = 0;
    for (int i = 0; i < n; ++i) {
      want.iwae += q[static_cast<std::size_t>(i)].log_mean(k);
      want.prior += p[static_cast<std::size_t>(i)].log_mean(k);
      want.recon += recon[static_cast<std::size_t>(i)] / k;
      kl_sum += double(kl[static_cast<std::size_t>(i)]);
    }
    want.kl += kl_sum;
    want.count += n;
  }
  const auto got = totals.download()[0];
  EXPECT_NEAR(got.iwae, want.iwae, 1e-12 * std::fabs(want.iwae));
  EXPECT_NEAR(got.prior, want.prior, 1e-12 * std::fabs(want.prior));
  EXPECT_NEAR(got.recon, want.recon, 1e-12 * std::fabs(want.recon));
  EXPECT_NEAR(got.kl, want.kl, 1e-12 * std::fabs(want.kl));
  EXPECT_EQ(got.count, 47);
}

// ---- cuBLASLt GEMM + bias + ReLU --------------------------------------------------------------

class LtEpilogue : public GpuTest {};

TEST_F(LtEpilogue, BiasReluMatchesADoubleReferenceAndTheUnfusedPath) {
  test::GpuContext ctx;
  gpu::DeviceBuffer<char> workspace(std::size_t(32) << 20, "test cuBLASLt workspace");
  gpu::LtBiasRelu lt(workspace.get(), workspace.bytes());
  for (auto [rows, in, out] : {std::array<int, 3>{37, 61, 13}, std::array<int, 3>{37, 13, 61},
                               std::array<int, 3>{128, 784, 400}, std::array<int, 3>{1, 7, 3}}) {
    const auto x = test::uniform_values<float>(static_cast<std::size_t>(rows) * in, -1, 1, 800);
    const auto w = test::uniform_values<float>(static_cast<std::size_t>(out) * in, -1, 1, 801);
    const auto b = test::uniform_values<float>(static_cast<std::size_t>(out), -1, 1, 802);
    Dev<float> dx(x), dw(w), db(b), y(static_cast<std::size_t>(rows) * out), y2(y.size());
    y.poison();
    y2.poison();
    const bool fused = lt.forward(rows, in, out, dx.get(), dw.get(), db.get(), y.get(), ctx.stream);
    gpu::linear_forward(ctx.blas, rows, in, out, dx.get(), dw.get(), y2.get());
    gpu::bias_act_forward(Activation::relu, y2.get(), db.get(), rows, out, ctx.stream);
    ctx.sync();
    const std::string shape = std::to_string(rows) + "x" + std::to_string(in) + "->" + std::to_string(out);
    if (!fused) {
      // cuBLASLt may have no algorithm for odd leading dimensions: then nothing is launched
      // (the caller falls back). The reference layer's shape must run.
      EXPECT_FALSE(in % 4 == 0 && out % 4 == 0) << "cuBLASLt found no algorithm for " << shape;
      EXPECT_TRUE(test::all_nan(y.download())) << "a refused shape launched something, " << shape;
      continue;
    }
    std::vector<double> want(y.size());
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < out; ++o) {
        double acc = b[static_cast<std::size_t>(o)];
        for (int i = 0; i < in; ++i)
          acc += double(x[static_cast<std::size_t>(r) * in + i]) * w[static_cast<std::size_t>(o) * in + i];
        want[static_cast<std::size_t>(r) * out + o] = acc > 0 ? acc : 0;
      }
    const auto got = y.download();
    EXPECT_TRUE(all_close(got, want, 1e-5 * std::sqrt(double(in)), 1e-5, "relu(X W^T + b) " + shape));
    EXPECT_TRUE(all_close(got, y2.download(), 1e-5 * std::sqrt(double(in)), 1e-5, "against GEMM + bias_act " + shape));
    // The plan is reused: the same call again gives the same bits.
    y.poison();
    ASSERT_TRUE(lt.forward(rows, in, out, dx.get(), dw.get(), db.get(), y.get(), ctx.stream));
    ctx.sync();
    EXPECT_TRUE(test::bit_equal(y.download(), got)) << shape;
  }
}

}  // namespace
}  // namespace vae
