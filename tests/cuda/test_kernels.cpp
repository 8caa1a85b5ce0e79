// Each fused kernel on the GPU against a CPU reference built from the same ew:: functions
// (vae/elementwise.h), at odd sizes (batch 37, dims 61 and 13, L = 1, 2, 3, every
// activation, both likelihoods with fixed and learned sigma), and the device model
// against CpuModel. Every output buffer is poisoned with NaN first, so a passing test
// shows every element was written; NaN never passes all_close.
//
// Tolerances (FP32 on both sides): elementwise results atol 1e-6 + rtol 1e-5 (device libm
// and FMA contraction differ from glibc by an ulp or two); sums over rows or columns
// against a double reference, allowance 1e-6 * (sum of |terms|) + 1e-6 (float summation
// in a different order); the device model against CpuModel 1e-5 relative in norm (IWAE
// gradients 1e-4, see DeviceModel.EveryPassMatchesCpuModel). The inference toolkit's own
// kernels (optimizer, score / IWAE latent backward, importance weights, estimates) are in
// test_inference_kernels.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "column_sum.cuh"
#include "cpu_model.h"
#include "cuda_model.cuh"
#include "gather.cuh"
#include "gpu_test_util.h"
#include "latent.cuh"
#include "layers.cuh"
#include "likelihood.cuh"
#include "loss_sums.cuh"
#include "noise.cuh"
#include "step_guard.cuh"
#include "step_record.cuh"
#include "vae/elementwise.h"

namespace vae {
namespace {

using test::all_close;
using test::column_sums_ref;
using test::DeviceRecord;
using test::sums_close;
using test::Dev;
using test::GpuContext;
using test::GpuTest;

constexpr Activation kActivations[] = {Activation::relu, Activation::tanh, Activation::leaky_relu, Activation::softplus};

float act_forward_ref(Activation a, float x) {
  switch (a) {
    case Activation::relu: return ew::act_forward<Activation::relu>(x);
    case Activation::tanh: return ew::act_forward<Activation::tanh>(x);
    case Activation::leaky_relu: return ew::act_forward<Activation::leaky_relu>(x);
    case Activation::softplus: return ew::act_forward<Activation::softplus>(x);
  }
  return NAN;
}
float act_grad_ref(Activation a, float y) {
  switch (a) {
    case Activation::relu: return ew::act_grad_from_output<Activation::relu>(y);
    case Activation::tanh: return ew::act_grad_from_output<Activation::tanh>(y);
    case Activation::leaky_relu: return ew::act_grad_from_output<Activation::leaky_relu>(y);
    case Activation::softplus: return ew::act_grad_from_output<Activation::softplus>(y);
  }
  return NAN;
}

std::vector<std::uint32_t> random_indices(int n, std::uint32_t count, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<std::uint32_t> idx(static_cast<std::size_t>(n));
  for (auto& i : idx) i = static_cast<std::uint32_t>(g() % count);
  return idx;
}

// ---- gather ------------------------------------------------------------------------------

class Gather : public GpuTest {};

TEST_F(Gather, PicksRowsByIndexFromUint8AndFloatData) {
  const int n = 37, D = 61;
  for (bool as_float : {false, true}) {
    const auto data = test::synthetic(100, D, 3, as_float);
    const auto idx = random_indices(n, 100, 11);
    Dev<unsigned char> rows(as_float ? data->f32.size() * 4 : data->u8.size());
    if (as_float) test::copy_to_device(rows.get(), data->f32.data(), rows.size());
    else test::copy_to_device(rows.get(), data->u8.data(), rows.size());
    DeviceRecord rec(n);
    gpu::StepHeader h;
    h.rows = reinterpret_cast<std::uint64_t>(rows.get());
    h.rows_u8 = as_float ? 0 : 1;
    h.n = n;
    rec.write(h, idx);
    Dev<float> x(static_cast<std::size_t>(n) * D);
    x.poison();
    gpu::gather_rows(rec.header(), rec.indices(), n, D, nullptr, x.get(), nullptr);
    std::vector<float> want(x.size());
    for (int i = 0; i < n; ++i) data->row(idx[static_cast<std::size_t>(i)], want.data() + static_cast<std::size_t>(i) * D);
    // x/255 is one IEEE multiply on both sides: the same bits.
    EXPECT_TRUE(test::bit_equal(x.download(), want)) << (as_float ? "float" : "uint8") << " rows";
  }
}

TEST_F(Gather, DynamicBinarizationMatchesTheCpuWithDeviceUniforms) {
  const int n = 37, D = 61;
  const auto data = test::synthetic(100, D, 4);
  const auto idx = random_indices(n, 100, 12);
  Dev<unsigned char> rows(data->u8.size());
  test::copy_to_device(rows.get(), data->u8.data(), rows.size());
  const std::size_t stride = round_up_4(static_cast<std::size_t>(n) * D);  // as RngPlan lays steps out
  const std::uint64_t seed = derive_seed(9, RngStream::bin);
  GpuContext ctx;
  gpu::NoiseBlock block(seed, gpu::NoiseBlock::Kind::uniform, stride, 3 * stride, ctx.stream, "test uniforms");
  StepNoise host_noise(seed, StepNoise::Kind::uniform, stride, 3 * stride);
  DeviceRecord rec(n);
  Dev<float> x(static_cast<std::size_t>(n) * D);
  for (std::int64_t step : {0, 2, 7}) {
    gpu::StepHeader h;
    h.step = step;
    h.bin_offset = block.prepare(step);
    h.rows = reinterpret_cast<std::uint64_t>(rows.get());
    h.rows_u8 = 1;
    h.n = n;
    rec.write(h, idx);
    x.poison();
    gpu::gather_rows(rec.header(), rec.indices(), n, D, block.data(), x.get(), ctx.stream);
    ctx.sync();
    const float* u = host_noise.step(step);
    std::vector<float> want(x.size());
    for (int i = 0; i < n; ++i) data->row(idx[static_cast<std::size_t>(i)], want.data() + static_cast<std::size_t>(i) * D);
    double ones = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      want[i] = u[i] <= want[i] ? 1.0f : 0.0f;
      ones += want[i];
    }
    const auto got = x.download();
    int mismatches = 0;
    for (std::size_t i = 0; i < got.size(); ++i) mismatches += got[i] != want[i];
    EXPECT_EQ(mismatches, 0) << "step " << step << ": binarized pixels that differ from the CPU's";
    EXPECT_GT(ones, 0.1 * double(want.size()));
    EXPECT_LT(ones, 0.9 * double(want.size()));
  }
}

// ---- linear layers -------------------------------------------------------------------------

class Layers : public GpuTest {};

TEST_F(Layers, CublasProductsMatchADoubleReference) {
  GpuContext ctx;
  for (auto [rows, in, out] : {std::array<int, 3>{37, 61, 13}, std::array<int, 3>{37, 13, 61}, std::array<int, 3>{1, 7, 3}}) {
    const auto x = test::uniform_values<float>(static_cast<std::size_t>(rows) * in, -1, 1, 1);
    const auto w = test::uniform_values<float>(static_cast<std::size_t>(out) * in, -1, 1, 2);
    const auto dy = test::uniform_values<float>(static_cast<std::size_t>(rows) * out, -1, 1, 3);
    Dev<float> dx_(x), dw_(w), ddy(dy), y(static_cast<std::size_t>(rows) * out), gw(w.size()), gx(x.size());
    y.poison();
    gw.poison();
    gx.poison();
    gpu::linear_forward(ctx.blas, rows, in, out, dx_.get(), dw_.get(), y.get());
    gpu::linear_weight_grad(ctx.blas, rows, in, out, ddy.get(), dx_.get(), gw.get());
    gpu::linear_input_grad(ctx.blas, rows, in, out, ddy.get(), dw_.get(), gx.get());
    ctx.sync();
    std::vector<double> ry(y.size(), 0), rgw(w.size(), 0), rgx(x.size(), 0);
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < out; ++o)
        for (int i = 0; i < in; ++i) {
          const std::size_t xi = static_cast<std::size_t>(r) * in + i, wi = static_cast<std::size_t>(o) * in + i,
                            yi = static_cast<std::size_t>(r) * out + o;
          ry[yi] += double(x[xi]) * w[wi];
          rgw[wi] += double(dy[yi]) * x[xi];
          rgx[xi] += double(dy[yi]) * w[wi];
        }
    const std::string shape = std::to_string(rows) + "x" + std::to_string(in) + "->" + std::to_string(out);
    EXPECT_TRUE(all_close(y.download(), ry, 1e-5, 1e-5, "Y = X W^T " + shape));
    EXPECT_TRUE(all_close(gw.download(), rgw, 1e-5, 1e-5, "dW = dY^T X " + shape));
    EXPECT_TRUE(all_close(gx.download(), rgx, 1e-5, 1e-5, "dX = dY W " + shape));
  }
}

TEST_F(Layers, BiasActivationForwardEveryActivation) {
  const int rows = 37, cols = 61;
  const auto y0 = test::uniform_values<float>(static_cast<std::size_t>(rows) * cols, -3, 3, 5);
  const auto b = test::uniform_values<float>(static_cast<std::size_t>(cols), -1, 1, 6);
  Dev<float> db(b);
  for (Activation a : kActivations) {
    Dev<float> y(y0);
    gpu::bias_act_forward(a, y.get(), db.get(), rows, cols, nullptr);
    std::vector<float> want(y0.size());
    for (std::size_t i = 0; i < want.size(); ++i) want[i] = act_forward_ref(a, y0[i] + b[i % cols]);
    EXPECT_TRUE(all_close(y.download(), want, 1e-6, 1e-5, std::string("bias+") + to_string(a)));
  }
}

TEST_F(Layers, ActivationBackwardAndBiasGradientEveryActivation) {
  // (37, 61): two column tiles, two row chunks; (37, 13); (1000, 45): 32 row chunks.
  for (auto [rows, cols] : {std::array<int, 2>{37, 61}, std::array<int, 2>{37, 13}, std::array<int, 2>{1000, 45}}) {
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    const auto buffers = test::reduce_scratch(rows, cols, 1, false);
    const gpu::ReduceScratch& scratch = buffers.view();
    for (Activation a : kActivations) {
      // y is an activation output: apply the activation to random pre-activations.
      auto y = test::uniform_values<float>(n, -3, 3, 7);
      for (auto& v : y) v = act_forward_ref(a, v);
      const auto dy0 = test::uniform_values<float>(n, -1, 1, 8);
      Dev<float> dy_y(y), db(static_cast<std::size_t>(cols));
      std::vector<float> db_runs[2];
      std::vector<float> want(n);
      for (std::size_t i = 0; i < n; ++i) want[i] = dy0[i] * act_grad_ref(a, y[i]);
      std::vector<double> col, col_abs;
      column_sums_ref(want, rows, cols, col, col_abs);
      const std::string what = std::string(to_string(a)) + " " + std::to_string(rows) + "x" + std::to_string(cols);
      for (auto& db_run : db_runs) {  // twice: the tickets reset themselves, the sums repeat
        Dev<float> dy(dy0);
        db.poison();
        gpu::act_backward_bias_grad(a, dy.get(), dy_y.get(), rows, cols, db.get(), scratch, nullptr);
        EXPECT_TRUE(all_close(dy.download(), want, 1e-6, 1e-5, "dy*act'(y) " + what));
        db_run = db.download();
        EXPECT_TRUE(sums_close(db_run, col, col_abs, "bias gradient " + what));
      }
      EXPECT_TRUE(test::bit_equal(db_runs[0], db_runs[1])) << "bias gradient not deterministic: " << what;
    }
    EXPECT_EQ(test::download_range(scratch.counters, scratch.counter_count),
              std::vector<unsigned>(scratch.counter_count, 0u))
        << "tickets not reset";
  }
}

// ---- latent --------------------------------------------------------------------------------

class Latent : public GpuTest {};

TEST_F(Latent, ForwardMatchesTheCpuFormulas) {
  const int n = 37, Z = 13;
  for (int L : {1, 2, 3}) {
    const std::size_t R = static_cast<std::size_t>(n) * L;
    const auto head0 = test::uniform_values<float>(static_cast<std::size_t>(n) * 2 * Z, -2, 2, 20 + L);
    const auto bias = test::uniform_values<float>(2 * static_cast<std::size_t>(Z), -0.5, 0.5, 30);
    // Three steps of noise; the kernel must read the slice at the offset held on the device.
    const std::size_t stride = R * Z;
    const auto noise = test::normal_values<float>(3 * stride, 40 + L);
    const std::int64_t offset = static_cast<std::int64_t>(2 * stride);
    Dev<float> head(head0), dbias(bias), eps(noise), z(R * Z), kl(static_cast<std::size_t>(n)), lpq(R);
    Dev<std::int64_t> off(std::vector<std::int64_t>{offset});
    z.poison();
    kl.poison();
    lpq.poison();
    gpu::latent_forward(head.get(), dbias.get(), eps.get(), off.get(), n, L, Z, z.get(), kl.get(), lpq.get(), nullptr);

    std::vector<float> wh(head0.size()), wz(R * Z);
    std::vector<double> wkl(static_cast<std::size_t>(n)), wkl_abs(static_cast<std::size_t>(n));
    std::vector<double> wlpq(R, 0.0), wlpq_abs(R, 0.0);  // log p(z) - log q(z|x) per row
    const float* e = noise.data() + offset;
    for (int b = 0; b < n; ++b) {
      for (int j = 0; j < 2 * Z; ++j) {
        const std::size_t i = static_cast<std::size_t>(b) * 2 * Z + j;
        wh[i] = head0[i] + bias[static_cast<std::size_t>(j)];
      }
      const float* h = wh.data() + static_cast<std::size_t>(b) * 2 * Z;
      for (int j = 0; j < Z; ++j) {
        const double k = ew::kl_term(h[j], h[Z + j]);
        wkl[static_cast<std::size_t>(b)] += k;
        wkl_abs[static_cast<std::size_t>(b)] += std::fabs(k);
        for (int l = 0; l < L; ++l) {
          const std::size_t row = static_cast<std::size_t>(b) * L + l, r = row * Z + j;
          wz[r] = ew::reparameterize(h[j], h[Z + j], e[r]);
          const double t = ew::log_prior_minus_log_q(wz[r], e[r], h[Z + j]);
          wlpq[row] += t;
          wlpq_abs[row] += std::fabs(t);
        }
      }
    }
    const std::string what = "L=" + std::to_string(L);
    const auto got_z = z.download(), got_kl = kl.download();
    EXPECT_TRUE(test::bit_equal(head.download(), wh)) << "head + bias, " << what;
    EXPECT_TRUE(all_close(got_z, wz, 1e-6, 1e-5, "z " + what));
    EXPECT_TRUE(sums_close(got_kl, wkl, wkl_abs, "KL " + what));
    EXPECT_TRUE(sums_close(lpq.download(), wlpq, wlpq_abs, "log p(z) - log q(z|x) per row, " + what));

    // Without lpq (the ELBO passes): the same z and KL, bit for bit, and lpq untouched.
    Dev<float> head2(head0);
    z.poison();
    kl.poison();
    lpq.poison();
    gpu::latent_forward(head2.get(), dbias.get(), eps.get(), off.get(), n, L, Z, z.get(), kl.get(), nullptr, nullptr);
    EXPECT_TRUE(test::bit_equal(z.download(), got_z)) << what;
    EXPECT_TRUE(test::bit_equal(kl.download(), got_kl)) << what;
    EXPECT_TRUE(test::all_nan(lpq.download())) << "lpq written although not asked for, " << what;
  }
}

TEST_F(Latent, BackwardMatchesTheCpuFormulas) {
  const int n = 37, Z = 13;
  for (int L : {1, 2, 3}) {
    const std::size_t R = static_cast<std::size_t>(n) * L;
    const auto head = test::uniform_values<float>(static_cast<std::size_t>(n) * 2 * Z, -2, 2, 50 + L);
    const auto eps = test::normal_values<float>(R * Z, 60 + L);
    const auto dz = test::uniform_values<float>(R * Z, -0.1, 0.1, 70 + L);
    const double beta = 1.5;  // from device memory; beta/n formed in float as the CPU forms it
    const float beta_scale = static_cast<float>(beta) / static_cast<float>(n);
    Dev<double> dbeta(std::vector<double>{beta});
    Dev<float> dh(head), de(eps), ddz(dz), dhead(head.size()), dbias(2 * static_cast<std::size_t>(Z));
    const auto scratch = test::reduce_scratch(n, Z, 2, false);
    dhead.poison();
    dbias.poison();
    gpu::LatentBackwardArgs a;
    a.head = dh.get();
    a.eps_block = de.get();
    a.n = n;
    a.L = L;
    a.Z = Z;
    a.dz = ddz.get();
    a.beta = dbeta.get();
    a.dhead = dhead.get();
    a.dbias = dbias.get();
    gpu::latent_backward(a, scratch.view(), nullptr);

    std::vector<float> want(head.size());
    for (int b = 0; b < n; ++b)
      for (int j = 0; j < Z; ++j) {
        float sdz = 0, sdze = 0;
        for (int l = 0; l < L; ++l) {
          const std::size_t r = (static_cast<std::size_t>(b) * L + l) * Z + j;
          sdz += dz[r];
          sdze += dz[r] * eps[r];
        }
        const std::size_t hb = static_cast<std::size_t>(b) * 2 * Z;
        want[hb + j] = ew::latent_dmu(head[hb + j], sdz, beta_scale);
        want[hb + Z + j] = ew::latent_ds(head[hb + Z + j], sdze, beta_scale);
      }
    std::vector<double> col, col_abs;
    column_sums_ref(want, n, 2 * Z, col, col_abs);
    const std::string what = "L=" + std::to_string(L);
    EXPECT_TRUE(all_close(dhead.download(), want, 1e-6, 1e-5, "(d mu, d s) " + what));
    EXPECT_TRUE(sums_close(dbias.download(), col, col_abs, "head bias gradient " + what));
  }
}

// ---- likelihood ----------------------------------------------------------------------------

struct LikelihoodCase {
  Likelihood lik;
  bool learned;
  int n, L, D;
};

class LikelihoodKernel : public GpuTest {};

TEST_F(LikelihoodKernel, LogProbAndGradientsMatchTheCpuFormulas) {
  const std::vector<LikelihoodCase> cases = {
      {Likelihood::bernoulli, false, 37, 2, 61},       {Likelihood::bernoulli, false, 37, 3, 13},
      {Likelihood::gaussian, false, 37, 2, 61},        {Likelihood::gaussian, true, 37, 3, 61},
      {Likelihood::gaussian, true, 37, 2, 13},         {Likelihood::bernoulli, false, 500, 2, 100},
      {Likelihood::gaussian, true, 500, 1, 100}};
  for (const auto& c : cases) {
    for (bool backward : {true, false}) {
      ModelConfig cfg;
      cfg.input_dim = c.D;
      cfg.samples = c.L;
      cfg.likelihood = c.lik;
      cfg.learn_sigma = c.learned;
      cfg.sigma = 0.7;
      const int R = c.n * c.L, D = c.D;
      const std::size_t RD = static_cast<std::size_t>(R) * D;
      auto out0 = test::normal_values<float>(RD, 80);
      for (auto& v : out0) v *= 2.0f;
      const auto bias = test::uniform_values<float>(static_cast<std::size_t>(D), -0.5, 0.5, 81);
      const auto logvar = test::uniform_values<float>(static_cast<std::size_t>(D), -1, 1, 82);
      const auto x = test::uniform_values<float>(static_cast<std::size_t>(c.n) * D, 0, 1, 83);
      Dev<float> out(out0), db(bias), dlv(logvar), dx(x), dbias(static_cast<std::size_t>(D)),
          dlogvar(static_cast<std::size_t>(D)), row_logp(static_cast<std::size_t>(R));
      const int nv = backward ? (c.learned ? 2 : 1) : 0;
      const auto scratch = test::reduce_scratch(R, D, nv, true);
      dbias.poison();
      dlogvar.poison();
      row_logp.poison();
      gpu::LikelihoodArgs a;
      a.out = out.get();
      a.bias = db.get();
      a.logvar = c.learned ? dlv.get() : nullptr;
      a.x = dx.get();
      a.n = c.n;
      a.L = c.L;
      a.dbias = dbias.get();
      a.dlogvar = dlogvar.get();
      a.row_logp = row_logp.get();
      gpu::likelihood_forward_backward(cfg, a, backward ? gpu::LikelihoodMode::backward : gpu::LikelihoodMode::forward,
                                       scratch.view(), nullptr);

      // The CPU formulas, element by element; sums in double.
      const float scale = 1.0f / static_cast<float>(R);
      const float fixed_lv = static_cast<float>(2.0 * std::log(cfg.sigma));
      const float fixed_iv = static_cast<float>(1.0 / (cfg.sigma * cfg.sigma));
      std::vector<float> g(RD), glv(RD);
      std::vector<double> lp(static_cast<std::size_t>(R), 0), lp_abs(static_cast<std::size_t>(R), 0);
      for (int r = 0; r < R; ++r)
        for (int d = 0; d < D; ++d) {
          const std::size_t i = static_cast<std::size_t>(r) * D + d;
          const float xv = x[static_cast<std::size_t>(r / c.L) * D + d];
          const float o = out0[i] + bias[static_cast<std::size_t>(d)];
          float l, gm, gv = 0;
          if (c.lik == Likelihood::bernoulli) {
            ew::bernoulli(xv, o, l, gm);
          } else {
            const float lv = c.learned ? logvar[static_cast<std::size_t>(d)] : fixed_lv;
            const float iv = c.learned ? ew::exp_(-lv) : fixed_iv;
            ew::gaussian(xv, o, lv, iv, l, gm, gv);
          }
          g[i] = gm * scale;
          glv[i] = gv * scale;
          lp[static_cast<std::size_t>(r)] += l;
          lp_abs[static_cast<std::size_t>(r)] += std::fabs(l);
        }
      const std::string what = std::string(to_string(c.lik)) + (c.learned ? " learned" : "") + " n=" +
                               std::to_string(c.n) + " L=" + std::to_string(c.L) + " D=" + std::to_string(D) +
                               (backward ? " backward" : " forward");
      EXPECT_TRUE(sums_close(row_logp.download(), lp, lp_abs, "row log p, " + what));
      if (backward) {
        EXPECT_TRUE(all_close(out.download(), g, 1e-6, 1e-5, "d loss / d logits, " + what));
        std::vector<double> col, col_abs;
        column_sums_ref(g, R, D, col, col_abs);
        EXPECT_TRUE(sums_close(dbias.download(), col, col_abs, "output bias gradient, " + what));
        if (c.learned) {
          column_sums_ref(glv, R, D, col, col_abs);
          EXPECT_TRUE(sums_close(dlogvar.download(), col, col_abs, "log-variance gradient, " + what));
        }
      } else {
        EXPECT_TRUE(test::bit_equal(out.download(), out0)) << "forward-only must leave the outputs alone, " << what;
      }
    }
  }
}

// ---- loss sums -----------------------------------------------------------------------------

class LossSumsKernel : public GpuTest {};

TEST_F(LossSumsKernel, PerItemReconAndAccumulatedSums) {
  Dev<gpu::DeviceLossSums> acc(1);
  acc.zero();
  double want_recon = 0, want_kl = 0;
  const double beta = 0.75;
  Dev<double> dbeta(std::vector<double>{beta});
  long long want_count = 0;
  for (auto [n, L] : {std::array<int, 2>{37, 3}, std::array<int, 2>{300, 2}}) {
    const auto row_logp = test::uniform_values<float>(static_cast<std::size_t>(n) * L, -200, -50, 90 + n);
    const auto kl = test::uniform_values<float>(static_cast<std::size_t>(n), 0, 30, 91 + n);
    Dev<float> dl(row_logp), dk(kl), recon(static_cast<std::size_t>(n));
    recon.poison();
    gpu::loss_accumulate(dl.get(), dk.get(), nullptr, n, L, dbeta.get(), recon.get(), acc.get(), true, nullptr);
    std::vector<float> want(static_cast<std::size_t>(n));
    for (int b = 0; b < n; ++b) {
      float lp = 0;  // CpuModel::forward's order and precision
      for (int l = 0; l < L; ++l) lp += row_logp[static_cast<std::size_t>(b) * L + l];
      want[static_cast<std::size_t>(b)] = -lp / static_cast<float>(L);
      want_recon += want[static_cast<std::size_t>(b)];
      want_kl += kl[static_cast<std::size_t>(b)];
    }
    want_count += n;
    EXPECT_TRUE(test::bit_equal(recon.download(), want)) << "recon per item (same float operations as the CPU)";
  }
  const auto got = acc.download()[0];
  EXPECT_NEAR(got.recon, want_recon, 1e-12 * std::fabs(want_recon));
  EXPECT_NEAR(got.kl, want_kl, 1e-12 * std::fabs(want_kl));
  EXPECT_NEAR(got.loss, want_recon + beta * want_kl, 1e-12 * std::fabs(want_recon + beta * want_kl));
  EXPECT_EQ(got.count, want_count);

  // Overwrite mode (a training step's own sums): the earlier sums are gone.
  const auto row_logp = test::uniform_values<float>(10, -200, -50, 95);
  const auto kl = test::uniform_values<float>(5, 0, 30, 96);
  Dev<float> dl(row_logp), dk(kl);
  gpu::loss_accumulate(dl.get(), dk.get(), nullptr, 5, 2, dbeta.get(), nullptr, acc.get(), false, nullptr);
  const auto one = acc.download()[0];
  EXPECT_EQ(one.count, 5);
  double r = 0;
  for (int b = 0; b < 5; ++b) r += double(-(row_logp[2 * b] + row_logp[2 * b + 1]) / 2.0f);
  EXPECT_NEAR(one.recon, r, 1e-12 * std::fabs(r));
}

// ---- step guard ----------------------------------------------------------------------------

class StepGuardKernel : public GpuTest {};

TEST_F(StepGuardKernel, DropsNonFiniteStepsCountsThemAndHalts) {
  const std::size_t n = 4 * 5000;
  for (bool stop : {false, true}) {
    DeviceRecord rec(1);
    gpu::StepHeader h;
    Dev<gpu::DeviceStepState> state(std::vector<gpu::DeviceStepState>{gpu::DeviceStepState{}});
    Dev<gpu::DeviceLossSums> acc(1);
    acc.zero();
    auto grads = test::uniform_values<float>(n, -1, 1, 110);
    Dev<float> g(grads);
    gpu::DeviceLossSums step;
    step.loss = 10.5;
    step.recon = 8.5;
    step.kl = 2.0;
    step.count = 7;
    auto set_step = [&](double loss) {
      auto st = state.download()[0];
      st.step = step;
      st.step.loss = loss;
      state.upload({st});
    };
    // 1. finite: counted in the sums, both groups' update counts advance.
    h.step = 40;
    rec.write(h, {0});
    set_step(step.loss);
    gpu::step_guard(g.get(), n, rec.header(), state.get(), acc.get(), stop, nullptr);
    auto st = state.download()[0];
    EXPECT_EQ(st.bad, 0);
    EXPECT_EQ(st.updates[0], 1);
    EXPECT_EQ(st.updates[1], 1);
    EXPECT_EQ(acc.download()[0].count, 7);
    EXPECT_EQ(acc.download()[0].loss, 10.5);
    // 2. two non-finite gradients: dropped; the lower index is remembered.
    grads[4123] = NAN;
    grads[9001] = INFINITY;
    g.upload(grads);
    h.step = 41;
    rec.write(h, {0});
    set_step(step.loss);
    gpu::step_guard(g.get(), n, rec.header(), state.get(), acc.get(), stop, nullptr);
    st = state.download()[0];
    EXPECT_EQ(st.bad, 1);
    EXPECT_EQ(st.updates[0], 1);
    EXPECT_EQ(st.updates[1], 1);
    EXPECT_EQ(st.bad_steps, 1);
    EXPECT_EQ(st.first_bad_step, 41);
    EXPECT_EQ(st.first_bad_index, 4123);
    EXPECT_EQ(st.halted, stop ? 1 : 0);
    EXPECT_EQ(st.min_bad, gpu::kNoBadIndex) << "the scratch minimum is reset for the next step";
    EXPECT_EQ(st.ticket, 0u) << "the ticket is reset for the next step";
    EXPECT_EQ(acc.download()[0].count, 7) << "a dropped step adds nothing";
    // 3. finite gradients, infinite loss: dropped (or, when halted, dropped uncounted).
    grads[4123] = 0.5f;
    grads[9001] = 0.25f;
    g.upload(grads);
    h.step = 42;
    rec.write(h, {0});
    set_step(INFINITY);
    gpu::step_guard(g.get(), n, rec.header(), state.get(), acc.get(), stop, nullptr);
    st = state.download()[0];
    EXPECT_EQ(st.bad, 1);
    EXPECT_EQ(st.bad_steps, stop ? 1 : 2);
    EXPECT_EQ(st.first_bad_index, 4123) << "the first dropped step stays the one remembered";
    // 4. finite again, an E-step (encoder only): skip carries on, stop stays halted.
    h.step = 43;
    h.update_decoder = 0;
    rec.write(h, {0});
    set_step(step.loss);
    gpu::step_guard(g.get(), n, rec.header(), state.get(), acc.get(), stop, nullptr);
    st = state.download()[0];
    EXPECT_EQ(st.bad, stop ? 1 : 0);
    EXPECT_EQ(st.updates[0], stop ? 1 : 2);
    EXPECT_EQ(st.updates[1], 1) << "an encoder-only step leaves the decoder's count";
    EXPECT_EQ(acc.download()[0].count, stop ? 7 : 14);
    // 5. an M-step (decoder only).
    h.step = 44;
    h.update_encoder = 0;
    h.update_decoder = 1;
    rec.write(h, {0});
    set_step(step.loss);
    gpu::step_guard(g.get(), n, rec.header(), state.get(), acc.get(), stop, nullptr);
    st = state.download()[0];
    EXPECT_EQ(st.updates[0], stop ? 1 : 2) << "a decoder-only step leaves the encoder's count";
    EXPECT_EQ(st.updates[1], stop ? 1 : 2);
  }
}

// ---- noise ---------------------------------------------------------------------------------

class Noise : public GpuTest {};

// cuRAND's device Philox generator against the host generator the CPU path uses, at the
// same seed and offsets, across block boundaries and back.
TEST_F(Noise, DeviceBlocksMatchTheHostGenerator) {
  const std::size_t stride = round_up_4(2 * 37 * 13);  // a multiple of 4, as RngPlan lays steps out
  GpuContext ctx;
  for (auto kind : {StepNoise::Kind::normal, StepNoise::Kind::uniform}) {
    const bool normal = kind == StepNoise::Kind::normal;
    const std::uint64_t seed = normal ? 77 : 78;
    gpu::NoiseBlock dev(seed, normal ? gpu::NoiseBlock::Kind::normal : gpu::NoiseBlock::Kind::uniform, stride,
                        4 * stride, ctx.stream, "test noise");
    StepNoise host(seed, kind, stride, 4 * stride);
    std::size_t exact = 0, total = 0;
    for (std::int64_t t : {0, 1, 5, 3, 4, 12, 2, 13, 40, 0}) {
      const std::int64_t off = dev.prepare(t);
      ctx.sync();
      const auto got = test::download_range(dev.data() + off, stride);
      const std::vector<float> want(host.step(t), host.step(t) + stride);
      const std::string what = std::string(normal ? "normal" : "uniform") + " step " + std::to_string(t);
      if (normal) {
        EXPECT_TRUE(all_close(got, want, 1e-6, 1e-6, what));  // Box-Muller on device vs host libm
      } else {
        EXPECT_TRUE(test::bit_equal(got, want)) << what;
      }
      for (std::size_t i = 0; i < stride; ++i) exact += got[i] == want[i];
      total += stride;
    }
    EXPECT_EQ(dev.refills(), 8) << "blocks drawn for the step sequence (4 steps per block)";
    ::testing::Test::RecordProperty(normal ? "normal_bit_exact_fraction" : "uniform_bit_exact_fraction",
                                    std::to_string(double(exact) / double(total)));
  }
}

// A block of many steps equals the same steps drawn one block at a time, on the device.
TEST_F(Noise, ABlockOfStepsEqualsTheStepsDrawnOneByOneOnTheDevice) {
  const std::size_t stride = round_up_4(2 * 9 * 7);
  GpuContext ctx;
  gpu::NoiseBlock big(5, gpu::NoiseBlock::Kind::normal, stride, 6 * stride, ctx.stream, "big");
  gpu::NoiseBlock one(5, gpu::NoiseBlock::Kind::normal, stride, stride, ctx.stream, "one");
  for (std::int64_t t = 3; t < 9; ++t) {
    const auto a = test::download_range(big.data() + big.prepare(t), stride);
    const auto b = test::download_range(one.data() + one.prepare(t), stride);
    ctx.sync();
    EXPECT_TRUE(test::bit_equal(a, b)) << "step " << t;
  }
  EXPECT_EQ(big.refills(), 1);
  EXPECT_EQ(one.refills(), 6);
}

// ---- the device model against CpuModel -----------------------------------------------------

struct ModelCase {
  Activation act;
  Likelihood lik;
  bool learned;
  int L;
  std::vector<int> enc, dec;
};

class DeviceModel : public GpuTest {};

// Every pass (ELBO reparameterized, ELBO score function, IWAE) and the forward pass.
// Tolerances: sums 1e-5 relative; gradients 1e-5 relative in norm per tensor, IWAE 1e-4:
// its weights are exp(lw_k - max) of log-weights that are sums of D + Z float terms (tens
// of nats) added in a different order on each side, so an absolute rounding difference
// of ~1e-5 in lw_k is a relative ~1e-5 in w_k, and in the gradient it scales.
TEST_F(DeviceModel, EveryPassMatchesCpuModel) {
  const std::vector<ModelCase> cases = {
      {Activation::relu, Likelihood::bernoulli, false, 1, {24}, {24}},
      {Activation::tanh, Likelihood::gaussian, false, 2, {17, 9}, {11}},
      {Activation::leaky_relu, Likelihood::gaussian, true, 3, {19}, {23, 7}},
      {Activation::softplus, Likelihood::bernoulli, false, 2, {}, {}},
      {Activation::relu, Likelihood::gaussian, true, 2, {}, {19}},
      {Activation::softplus, Likelihood::bernoulli, false, 3, {29}, {}},
  };
  const int D = 61, Z = 13, n = 37, max_batch = 40;
  const auto data = test::synthetic(n, D, 21);
  std::vector<float> x(static_cast<std::size_t>(n) * D);
  for (int i = 0; i < n; ++i) data->row(i, x.data() + static_cast<std::size_t>(i) * D);
  GpuContext ctx;
  for (const auto& c : cases) {
    ModelConfig cfg;
    cfg.input_dim = D;
    cfg.latent = Z;
    cfg.encoder_hidden = c.enc;
    cfg.decoder_hidden = c.dec;
    cfg.activation = c.act;
    cfg.likelihood = c.lik;
    cfg.learn_sigma = c.learned;
    cfg.sigma = 0.3;
    cfg.samples = c.L;
    cfg.beta = 0.8;
    const std::string model_what = std::string(to_string(c.act)) + "/" + to_string(c.lik) +
                                   (c.learned ? " learned" : "") + " L=" + std::to_string(c.L) + " enc " +
                                   std::to_string(c.enc.size()) + " dec " + std::to_string(c.dec.size());
    CpuModel<float> cpu(cfg, max_batch);
    const auto params = init_parameters(cpu.layout(), cfg, 5);
    std::copy(params.begin(), params.end(), cpu.params().begin());
    const auto eps = test::normal_values<float>(round_up_even(static_cast<std::size_t>(n) * c.L * Z), 22);

    gpu::CudaModel gpu_model(cfg, max_batch, max_batch * c.L, ctx.stream, ctx.blas);
    ASSERT_EQ(gpu_model.total(), params.size());
    test::copy_to_device(gpu_model.params(), params.data(), params.size() * sizeof(float));
    test::copy_to_device(gpu_model.x(), x.data(), x.size() * sizeof(float));
    Dev<float> deps(eps);
    Dev<double> dbeta(std::vector<double>{cfg.beta});
    Dev<gpu::DeviceLossSums> acc(1);
    const std::vector<std::pair<gpu::Pass, Pass>> passes = {
        {gpu::Pass::elbo_reparam, Pass::elbo_reparam}, {gpu::Pass::elbo_score, Pass::elbo_score},
        {gpu::Pass::iwae, Pass::iwae}};
    std::vector<float> grads;
    for (const auto& [gpass, cpass] : passes) {
      const bool iwae = cpass == Pass::iwae;
      const std::string what = model_what + (cpass == Pass::elbo_reparam ? ", reparameterized ELBO"
                                             : iwae                       ? ", IWAE"
                                                                          : ", score-function ELBO");
      const LossSums want = cpu.run(x.data(), eps.data(), n, c.L, cfg.beta, cpass);
      for (const auto& t : gpu_model.layout().tensors()) test::poison_range(gpu_model.grads() + t.offset, t.size());
      test::poison_range(const_cast<float*>(gpu_model.bound()), static_cast<std::size_t>(n));
      acc.zero();
      gpu_model.run(deps.get(), nullptr, n, c.L, gpass, dbeta.get());
      gpu::loss_accumulate(gpu_model.row_logp(), gpu_model.kl(), iwae ? gpu_model.bound() : nullptr, n, c.L,
                           dbeta.get(), gpu_model.recon(), acc.get(), true, ctx.stream);
      ctx.sync();
      const auto got = acc.download()[0];
      EXPECT_NEAR(got.loss, want.loss, 1e-5 * std::fabs(want.loss)) << what;
      EXPECT_NEAR(got.recon, want.recon, 1e-5 * std::fabs(want.recon)) << what;
      EXPECT_NEAR(got.kl, want.kl, 1e-5 * std::fabs(want.kl) + 1e-6) << what;
      EXPECT_EQ(got.count, n);
      const std::vector<float> cpu_head(cpu.head(), cpu.head() + static_cast<std::size_t>(n) * 2 * Z);
      EXPECT_TRUE(
          all_close(test::download_range(gpu_model.head(), cpu_head.size()), cpu_head, 1e-5, 1e-5, "head " + what));
      const std::vector<float> cpu_recon(cpu.recon(), cpu.recon() + n), cpu_kl(cpu.kl(), cpu.kl() + n);
      EXPECT_TRUE(all_close(test::download_range(gpu_model.recon(), static_cast<std::size_t>(n)), cpu_recon, 1e-4,
                            1e-5, "recon per item " + what));
      EXPECT_TRUE(all_close(test::download_range(gpu_model.kl(), static_cast<std::size_t>(n)), cpu_kl, 1e-4, 1e-5,
                            "KL per item " + what));
      if (iwae) {
        const std::vector<float> cpu_bound(cpu.iwae_bound(), cpu.iwae_bound() + n);
        EXPECT_TRUE(all_close(test::download_range(gpu_model.bound(), static_cast<std::size_t>(n)), cpu_bound, 1e-4,
                              1e-5, "IWAE bound per item " + what));
      }
      grads = test::download_range(gpu_model.grads(), gpu_model.total());
      const std::vector<float> cpu_grads(cpu.grads().begin(), cpu.grads().end());
      for (const auto& t : gpu_model.layout().tensors()) {
        const auto g = test::tensor_of(grads, t), w = test::tensor_of(cpu_grads, t);
        EXPECT_FALSE(test::any_nan(g)) << t.name << " not fully written, " << what;
        EXPECT_LE(test::rel_norm_error(g, w), iwae ? 1e-4 : 1e-5) << t.name << ", " << what;
      }
    }

    // Forward only, on a shorter batch: the losses and the per-row terms of the importance
    // weights again, no gradient touched.
    const int n2 = 29;
    const LossSums want2 = cpu.run(x.data(), eps.data(), n2, c.L, cfg.beta, Pass::forward);
    acc.zero();
    test::poison_range(const_cast<float*>(gpu_model.lpq()), static_cast<std::size_t>(n2) * c.L);
    gpu_model.run(deps.get(), nullptr, n2, c.L, gpu::Pass::forward, nullptr);
    gpu::loss_accumulate(gpu_model.row_logp(), gpu_model.kl(), nullptr, n2, c.L, dbeta.get(), gpu_model.recon(),
                         acc.get(), true, ctx.stream);
    ctx.sync();
    const auto got2 = acc.download()[0];
    EXPECT_NEAR(got2.loss, want2.loss, 1e-5 * std::fabs(want2.loss)) << "forward only, " << model_what;
    const std::size_t R2 = static_cast<std::size_t>(n2) * c.L;
    const std::vector<float> cpu_lpq(cpu.row_lpq(), cpu.row_lpq() + R2), cpu_logp(cpu.row_logp(), cpu.row_logp() + R2);
    EXPECT_TRUE(all_close(test::download_range(gpu_model.lpq(), R2), cpu_lpq, 1e-4, 1e-5,
                          "log p(z) - log q(z|x) per row, " + model_what));
    EXPECT_TRUE(all_close(test::download_range(gpu_model.row_logp(), R2), cpu_logp, 1e-4, 1e-5,
                          "log p(x|z) per row, " + model_what));
    EXPECT_TRUE(test::bit_equal(test::download_range(gpu_model.grads(), gpu_model.total()), grads))
        << "a forward-only pass changed the gradients, " << model_what;

    // The naive estimate's pass: codes from the caller, no encoder.
    const auto codes = test::normal_values<float>(static_cast<std::size_t>(n2) * c.L * Z, 23);
    cpu.decode_log_likelihood(x.data(), codes.data(), n2, c.L);
    Dev<float> dcodes(codes);
    test::poison_range(const_cast<float*>(gpu_model.row_logp()), R2);
    gpu_model.decode_log_likelihood(dcodes.get(), n2, c.L);
    ctx.sync();
    const std::vector<float> cpu_decoded(cpu.row_logp(), cpu.row_logp() + R2);
    EXPECT_TRUE(all_close(test::download_range(gpu_model.row_logp(), R2), cpu_decoded, 1e-4, 1e-5,
                          "decode_log_likelihood, " + model_what));
  }
}

}  // namespace
}  // namespace vae
