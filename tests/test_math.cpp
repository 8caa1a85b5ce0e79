// The elementwise math against direct formulas: KL closed form vs Monte Carlo, the
// log-likelihoods (extreme logits included), the activations, every optimizer vs
// hand-computed steps, the step scalars' schedules and the importance-weight terms.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "vae/config.h"

#include "elementwise.h"
#include "test_util.h"

namespace vae {
namespace {

TEST(KL, ClosedFormMatchesMonteCarlo) {
  // E_q[log q(z) - log p(z)] with z ~ N(mu, exp(s)), estimated with 2e6 samples per case.
  std::mt19937_64 g(7);
  std::normal_distribution<double> nd(0, 1);
  const double cases[][2] = {{0.0, 0.0}, {1.3, -0.7}, {-0.4, 1.1}, {2.0, -2.5}};
  for (const auto& c : cases) {
    const double mu = c[0], s = c[1], sd = std::exp(0.5 * s);
    const int N = 2000000;
    double sum = 0, sum2 = 0;
    for (int i = 0; i < N; ++i) {
      const double e = nd(g), z = mu + sd * e;
      const double log_q = -0.5 * e * e - 0.5 * std::log(2 * M_PI) - 0.5 * s;
      const double log_p = -0.5 * z * z - 0.5 * std::log(2 * M_PI);
      sum += log_q - log_p;
      sum2 += (log_q - log_p) * (log_q - log_p);
    }
    const double mean = sum / N, se = std::sqrt((sum2 / N - mean * mean) / N);
    const double closed = ew::kl_term(mu, s);
    EXPECT_NEAR(closed, mean, 4 * se + 1e-12) << "mu " << mu << " s " << s;
    if (mu != 0 || s != 0) {
      EXPECT_GT(se, 0.0);  // else q = p and every sample is exactly 0
    }
  }
  EXPECT_EQ(ew::kl_term(0.0, 0.0), 0.0);  // q = p
}

TEST(Likelihood, BernoulliMatchesDirectFormula) {
  for (double o : {-6.0, -1.5, -0.3, 0.0, 0.4, 2.2, 7.0})
    for (double x : {0.0, 0.25, 0.5, 1.0}) {
      double lp, g;
      ew::bernoulli(x, o, lp, g);
      const double p = 1.0 / (1.0 + std::exp(-o));
      EXPECT_NEAR(lp, x * std::log(p) + (1 - x) * std::log(1 - p), 1e-12) << "o " << o << " x " << x;
      EXPECT_NEAR(g, p - x, 1e-14);
    }
}

TEST(Likelihood, ExtremeLogitsStayFiniteAndExact) {
  for (double o : {-80.0, 80.0, -200.0, 200.0})
    for (double x : {0.0, 0.3, 1.0}) {
      float lpf, gf;
      ew::bernoulli(float(x), float(o), lpf, gf);
      double lp, g;
      ew::bernoulli(x, o, lp, g);
      ASSERT_TRUE(std::isfinite(lpf) && std::isfinite(gf)) << "float o " << o << " x " << x;
      ASSERT_TRUE(std::isfinite(lp) && std::isfinite(g));
      // Exact limits: log p = x*o - softplus(o), softplus(o) = max(o,0) + log1p(exp(-|o|)).
      const double softplus = std::max(o, 0.0) + std::log1p(std::exp(-std::fabs(o)));
      EXPECT_NEAR(lp, x * o - softplus, 1e-12 * std::fabs(o));
      EXPECT_NEAR(lpf, x * o - softplus, 1e-6 * std::fabs(o));
      EXPECT_NEAR(g, (o > 0 ? 1.0 : 0.0) - x, 1e-30);
      EXPECT_NEAR(gf, (o > 0 ? 1.0 : 0.0) - x, 1e-7);
    }
  float lp, g;
  ew::bernoulli(1.0f, 80.0f, lp, g);
  EXPECT_LE(lp, 0.0f);
  EXPECT_GT(lp, -1e-30f);  // -log1p(exp(-80)) ~ -1.8e-35: tiny, not zero-crossing
}

TEST(Likelihood, GaussianMatchesDirectFormula) {
  for (double sigma : {0.1, 1.0, 2.5})
    for (double x : {-1.0, 0.0, 0.7})
      for (double m : {-0.3, 0.7, 3.0}) {
        const double lv = std::log(sigma * sigma);
        double lp, gm, glv;
        ew::gaussian(x, m, lv, 1.0 / (sigma * sigma), lp, gm, glv);
        const double direct = -0.5 * std::log(2 * M_PI * sigma * sigma) - (x - m) * (x - m) / (2 * sigma * sigma);
        EXPECT_NEAR(lp, direct, 1e-12 * (1 + std::fabs(direct)));
        EXPECT_NEAR(gm, (m - x) / (sigma * sigma), 1e-12 * (1 + std::fabs(gm)));
        // d(-log p)/d lv by central differences of the direct formula in lv
        const double h = 1e-6;
        auto neg = [&](double l) { return 0.5 * (l + std::log(2 * M_PI) + (x - m) * (x - m) * std::exp(-l)); };
        EXPECT_NEAR(glv, (neg(lv + h) - neg(lv - h)) / (2 * h), 1e-7 * (1 + std::fabs(glv)));
      }
}

TEST(Activation, ForwardAndDerivativeFromOutput) {
  const double h = 1e-6;
  for (double x : {-3.0, -0.4, 0.3, 2.5}) {
    EXPECT_EQ(ew::act_forward<Activation::relu>(x), std::max(x, 0.0));
    EXPECT_NEAR(ew::act_forward<Activation::tanh>(x), std::tanh(x), 1e-15);
    EXPECT_EQ(ew::act_forward<Activation::leaky_relu>(x), x > 0 ? x : 0.01 * x);
    EXPECT_NEAR(ew::act_forward<Activation::softplus>(x), std::log(1 + std::exp(x)), 1e-14);
    auto check = [&](auto f, auto df, const char* name) {
      EXPECT_NEAR(df(f(x)), (f(x + h) - f(x - h)) / (2 * h), 1e-8) << name << " at " << x;
    };
    check([](double v) { return ew::act_forward<Activation::relu>(v); },
          [](double y) { return ew::act_grad_from_output<Activation::relu>(y); }, "relu");
    check([](double v) { return ew::act_forward<Activation::tanh>(v); },
          [](double y) { return ew::act_grad_from_output<Activation::tanh>(y); }, "tanh");
    check([](double v) { return ew::act_forward<Activation::leaky_relu>(v); },
          [](double y) { return ew::act_grad_from_output<Activation::leaky_relu>(y); }, "leaky_relu");
    check([](double v) { return ew::act_forward<Activation::softplus>(v); },
          [](double y) { return ew::act_grad_from_output<Activation::softplus>(y); }, "softplus");
  }
  // softplus stays finite and accurate far out
  EXPECT_NEAR(ew::act_forward<Activation::softplus>(-50.0), std::exp(-50.0), 1e-30);
  EXPECT_NEAR(ew::act_grad_from_output<Activation::softplus>(ew::act_forward<Activation::softplus>(-50.0)),
              std::exp(-50.0), 1e-30);
}

TEST(Latent, ReparameterizationAndGradients) {
  EXPECT_DOUBLE_EQ(ew::reparameterize(1.0, std::log(4.0), 0.5), 2.0);  // 1 + 2 * 0.5
  // d/dmu and d/ds of beta*scale*KL by central differences
  const double h = 1e-6, beta_scale = 0.3;
  for (double mu : {-1.0, 0.2})
    for (double s : {-0.8, 0.5}) {
      const double dmu = ew::latent_dmu(mu, 0.0, beta_scale);
      const double ds = ew::latent_ds(s, 0.0, beta_scale);
      EXPECT_NEAR(dmu, beta_scale * (ew::kl_term(mu + h, s) - ew::kl_term(mu - h, s)) / (2 * h), 1e-8);
      EXPECT_NEAR(ds, beta_scale * (ew::kl_term(mu, s + h) - ew::kl_term(mu, s - h)) / (2 * h), 1e-8);
      // pathwise: dz/ds = eps * exp(s/2) / 2
      const double eps = 0.7, dz = 1.9;
      EXPECT_NEAR(ew::latent_ds(s, dz * eps, 0.0),
                  dz * (ew::reparameterize(mu, s + h, eps) - ew::reparameterize(mu, s - h, eps)) / (2 * h), 1e-8);
    }
}

TEST(Adam, FirstStepMovesByLearningRateTimesSign) {
  // Step 1 by hand: m = 0.1*0.5 = 0.05, v = 0.001*0.25 = 0.00025, m_hat = 0.5, v_hat = 0.25,
  // p = 1 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.900000002
  const auto s = ew::adam_scalars(0.1, 0.9, 0.999, 1e-8, 1);
  double p = 1.0, m = 0, v = 0;
  ew::adam_update(p, m, v, 0.5, s);
  EXPECT_NEAR(m, 0.05, 1e-16);
  EXPECT_NEAR(v, 0.00025, 1e-18);
  EXPECT_NEAR(p, 0.900000002, 1e-12);
}

TEST(Adam, MatchesTextbookStepsOverManyIterations) {
  // Kingma & Ba's algorithm written out independently, in long double.
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const double grads[] = {0.5, -0.2, 0.1, 3.0, -4.0, 0.0, 1e-4, -0.7};
  double p = 0.3, m = 0, v = 0;
  float pf = 0.3f, mf = 0, vf = 0;
  long double P = 0.3L, M = 0, V = 0;
  int t = 0;
  for (double g : grads) {
    ++t;
    const auto s = ew::adam_scalars(lr, b1, b2, eps, t);
    ew::adam_update(p, m, v, g, s);
    ew::adam_update(pf, mf, vf, float(g), s);
    M = b1 * M + (1 - b1) * (long double)g;
    V = b2 * V + (1 - b2) * (long double)g * g;
    const long double mhat = M / (1 - std::pow((long double)b1, t));
    const long double vhat = V / (1 - std::pow((long double)b2, t));
    P -= lr * mhat / (std::sqrt(vhat) + eps);
    EXPECT_NEAR(p, (double)P, 1e-13) << "step " << t;
    EXPECT_NEAR(pf, (double)P, 2e-7) << "step " << t;
    EXPECT_NEAR(m, (double)M, 1e-15);
    EXPECT_NEAR(v, (double)V, 1e-15);
  }
  EXPECT_NE(p, 0.3);
}

}  // namespace
}  // namespace vae

namespace vae {
namespace {

// Each optimizer against its update written out by hand, as PyTorch defines it.
TEST(Optimizers, MatchHandWrittenUpdates) {
  const double grads[] = {0.5, -0.2, 0.1, 3.0, -4.0, 0.0, 1e-4, -0.7};
  for (Optimizer kind : {Optimizer::adam, Optimizer::adamw, Optimizer::sgd, Optimizer::rmsprop}) {
    OptimizerConfig c;
    c.kind = kind;
    c.lr = 0.05;
    c.weight_decay = 0.1;
    c.momentum = 0.8;
    c.alpha = 0.9;
    double p = 0.3, s1 = 0, s2 = 0;
    long double P = 0.3L, M = 0, V = 0, buf = 0, sq = 0;
    int t = 0;
    for (double g : grads) {
      ++t;
      ew::optimizer_update(p, s1, s2, g, ew::optimizer_scalars(c, c.lr, t));
      switch (kind) {
        case Optimizer::adamw:
          P *= 1 - (long double)c.lr * c.weight_decay;
          [[fallthrough]];
        case Optimizer::adam: {
          M = c.beta1 * M + (1 - c.beta1) * (long double)g;
          V = c.beta2 * V + (1 - c.beta2) * (long double)g * g;
          const long double mhat = M / (1 - std::pow((long double)c.beta1, t));
          const long double vhat = V / (1 - std::pow((long double)c.beta2, t));
          P -= c.lr * mhat / (std::sqrt(vhat) + c.eps);
          break;
        }
        case Optimizer::sgd:
          buf = t == 1 ? (long double)g : c.momentum * buf + g;  // torch.optim.SGD, dampening 0
          P -= c.lr * buf;
          break;
        case Optimizer::rmsprop:
          sq = c.alpha * sq + (1 - c.alpha) * (long double)g * g;
          P -= c.lr * g / (std::sqrt(sq) + c.eps);
          break;
      }
      EXPECT_NEAR(p, (double)P, 1e-13) << to_string(kind) << " step " << t;
    }
    EXPECT_NE(p, 0.3) << to_string(kind);
  }
  // SGD's first step by hand: buf = g = 0.5, p = 0.3 - 0.05 * 0.5 = 0.275.
  OptimizerConfig c;
  c.kind = Optimizer::sgd;
  c.lr = 0.05;
  double p = 0.3, s1 = 0, s2 = 0;
  ew::optimizer_update(p, s1, s2, 0.5, ew::optimizer_scalars(c, c.lr, 1));
  EXPECT_DOUBLE_EQ(p, 0.275);
  // RMSprop's first step by hand: sq = 0.01 * 0.25 = 0.0025, p = 0.3 - 0.05 * 0.5 / (0.05 + 1e-8).
  c.kind = Optimizer::rmsprop;
  p = 0.3, s1 = 0, s2 = 0;
  ew::optimizer_update(p, s1, s2, 0.5, ew::optimizer_scalars(c, c.lr, 1));
  EXPECT_NEAR(p, 0.3 - 0.025 / (0.05 + 1e-8), 1e-15);
}

TEST(StepScalars, SchedulesWarmupAndAlternation) {
  ModelConfig m;
  m.beta = 2.0;
  TrainConfig t;
  t.epochs = 4;
  t.optimizer.lr = 0.1;
  const std::int64_t per_epoch = 10;  // 40 steps in all
  EXPECT_DOUBLE_EQ(step_scalars(m, t, 17, per_epoch).lr, 0.1);
  EXPECT_DOUBLE_EQ(step_scalars(m, t, 17, per_epoch).beta, 2.0);

  t.optimizer.schedule = LrSchedule::cosine;
  t.optimizer.lr_min = 0.01;
  EXPECT_DOUBLE_EQ(step_scalars(m, t, 0, per_epoch).lr, 0.1);
  EXPECT_NEAR(step_scalars(m, t, 39, per_epoch).lr, 0.01, 1e-15);
  EXPECT_NEAR(step_scalars(m, t, 19, per_epoch).lr, 0.01 + 0.09 * 0.5 * (1 + std::cos(M_PI * 19 / 39)), 1e-15);

  t.optimizer.schedule = LrSchedule::step;
  t.optimizer.lr_step_epochs = 2;
  t.optimizer.lr_gamma = 0.5;
  EXPECT_DOUBLE_EQ(step_scalars(m, t, 19, per_epoch).lr, 0.1);   // epoch 1
  EXPECT_DOUBLE_EQ(step_scalars(m, t, 20, per_epoch).lr, 0.05);  // epoch 2
  EXPECT_DOUBLE_EQ(step_scalars(m, t, 39, per_epoch).lr, 0.05);

  t.kl_warmup_steps = 8;
  EXPECT_DOUBLE_EQ(step_scalars(m, t, 0, per_epoch).beta, 0.0);
  EXPECT_DOUBLE_EQ(step_scalars(m, t, 2, per_epoch).beta, 0.5);
  EXPECT_DOUBLE_EQ(step_scalars(m, t, 8, per_epoch).beta, 2.0);
  EXPECT_DOUBLE_EQ(step_scalars(m, t, 100, per_epoch).beta, 2.0);

  EXPECT_TRUE(step_scalars(m, t, 3, per_epoch).update_encoder);
  EXPECT_TRUE(step_scalars(m, t, 3, per_epoch).update_decoder);
  t.schedule = Schedule::alternating;
  t.e_steps = 2;
  t.m_steps = 3;
  const bool e[] = {true, true, false, false, false, true, true, false};
  for (int s = 0; s < 8; ++s) {
    EXPECT_EQ(step_scalars(m, t, s, per_epoch).update_encoder, e[s]) << "step " << s;
    EXPECT_EQ(step_scalars(m, t, s, per_epoch).update_decoder, !e[s]) << "step " << s;
  }
}

TEST(ImportanceWeights, LogPriorMinusLogQMatchesDensities) {
  for (double mu : {-0.7, 0.4})
    for (double s : {-1.2, 0.3})
      for (double eps : {-1.5, 0.2}) {
        const double z = ew::reparameterize(mu, s, eps), sd = std::exp(0.5 * s);
        const double log_p = -0.5 * z * z - 0.5 * std::log(2 * M_PI);
        const double log_q = -0.5 * std::pow((z - mu) / sd, 2) - std::log(sd) - 0.5 * std::log(2 * M_PI);
        EXPECT_NEAR(ew::log_prior_minus_log_q(z, eps, s), log_p - log_q, 1e-13);
      }
}

}  // namespace
}  // namespace vae
