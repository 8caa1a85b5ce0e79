// The inference toolkit on the CPU path: importance-sampled log-likelihoods (ordering and
// exactness against probabilistic PCA's closed form), the score-function estimator's
// unbiasedness, and the variational-EM (alternating) schedule.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "test_util.h"
#include "vae/vae.h"

namespace vae {
namespace {

// Data drawn from a PPCA model x = W z + b + sigma e with D = 6, q = 2, as floats.
std::shared_ptr<Dataset> ppca_data(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> nd(0, 1);
  const double W[6][2] = {{1.0, 0.2}, {-0.6, 0.9}, {0.3, -1.1}, {0.8, 0.5}, {-0.2, -0.4}, {0.1, 0.7}};
  const double b[6] = {0.5, -0.3, 0.2, 0.0, 1.0, -0.8};
  auto d = test::dataset_of("ppca", n, 6);
  d->f32.resize(static_cast<std::size_t>(n) * 6);
  for (std::int64_t i = 0; i < n; ++i) {
    const double z0 = nd(g), z1 = nd(g);
    for (int j = 0; j < 6; ++j)
      d->f32[static_cast<std::size_t>(i) * 6 + j] = float(W[j][0] * z0 + W[j][1] * z1 + b[j] + 0.4 * nd(g));
  }
  return d;
}

ModelConfig linear_model(double sigma) {
  ModelConfig m;
  m.input_dim = 6;
  m.encoder_hidden = {16};
  m.decoder_hidden = {};  // linear decoder: probabilistic PCA
  m.latent = 2;
  m.activation = Activation::tanh;
  m.likelihood = Likelihood::gaussian;
  m.sigma = sigma;
  return m;
}

void train_epochs(Backend& backend, const Dataset& data, const TrainConfig& t, int epochs) {
  BatchStream stream(data.count, t.batch, t.seed);
  for (int e = 0; e < epochs; ++e) {
    stream.start_epoch(e);
    Batch b;
    while (stream.next(b)) backend.train_step(b);
  }
}

// A linear model trained towards the PPCA solution; used by the exactness tests.
struct TrainedPpca {
  std::shared_ptr<Dataset> data = ppca_data(2000, 3);
  PpcaSolution ml = fit_ppca(*data, 2);
  ModelConfig model = linear_model(std::sqrt(ml.sigma2));
  TrainConfig train;
  std::unique_ptr<Backend> backend;
  TrainedPpca(int epochs) {
    train.batch = 100;
    train.eval_batch = 500;
    train.optimizer.lr = 1e-2;
    train.precision = Precision::fp64;
    backend = make_backend(Device::cpu, model, train);
    backend->set_parameters(init_parameters(backend->layout(), model, 1));
    backend->set_train_data(data);
    train_epochs(*backend, *data, train, epochs);
  }
  double exact() const { return exact_log_likelihood(model, backend->parameters(), *data) / double(data->count); }
};

TEST(LinearGaussian, ExactLogLikelihoodMatchesADirectGaussianDensity) {
  // D = 2, Z = 1 by hand: C = w w^T + s^2 I, log N(x; b, C) with the 2x2 inverse and determinant.
  ModelConfig m = linear_model(0.5);
  m.input_dim = 2;
  m.latent = 1;
  const ParamLayout layout(m);
  std::vector<float> p(layout.total(), 0.0f);
  const float w[2] = {0.8f, -0.3f}, b[2] = {0.1f, 0.4f};
  for (int i = 0; i < 2; ++i) {
    p[layout.output().weight + i] = w[i];
    p[layout.output().bias + i] = b[i];
  }
  Dataset d;
  d.count = 1;
  d.dim = 2;
  d.f32 = {0.7f, -0.2f};
  const double c00 = w[0] * w[0] + 0.25, c11 = w[1] * w[1] + 0.25, c01 = double(w[0]) * w[1];
  const double det = c00 * c11 - c01 * c01;
  const double r0 = 0.7f - b[0], r1 = -0.2f - b[1];
  const double quad = (c11 * r0 * r0 - 2 * c01 * r0 * r1 + c00 * r1 * r1) / det;
  EXPECT_NEAR(exact_log_likelihood(m, p, d), -0.5 * (2 * std::log(2 * M_PI) + std::log(det) + quad), 1e-6);
}

Dataset first(const Dataset& d, std::int64_t n) {
  Dataset out = d;
  out.count = n;
  out.f32.resize(static_cast<std::size_t>(n) * d.dim);
  return out;
}

TEST(LinearGaussian, TheElboStaysBelowTheExactLogLikelihood) {
  for (int epochs : {0, 3}) {  // at initialization and partly trained
    TrainedPpca r(epochs);
    const Dataset some = first(*r.data, 400);
    const LikelihoodSums s = r.backend->estimate_log_likelihood(some, 100);
    const double elbo = -(s.recon + s.kl) / double(s.count);
    const double exact = exact_log_likelihood(r.model, r.backend->parameters(), some) / double(some.count);
    EXPECT_LE(elbo, exact + 1e-3) << "epochs " << epochs;
    EXPECT_LE(s.iwae / double(s.count), exact + 0.02) << "epochs " << epochs;
    EXPECT_GT(s.iwae / double(s.count), elbo) << "the IWAE bound is tighter than the ELBO";
  }
}

TEST(LinearGaussian, ImportanceSamplingConvergesToTheExactValue) {
  TrainedPpca r(2);
  const Dataset some = first(*r.data, 200);  // the first 200 points keep K = 5000 quick
  const double exact = exact_log_likelihood(r.model, r.backend->parameters(), some) / 200.0;
  double last_error = INFINITY;
  for (int k : {1, 10, 100, 5000}) {
    const LikelihoodSums s = r.backend->estimate_log_likelihood(some, k);
    const double error = std::fabs(s.iwae / double(s.count) - exact);
    EXPECT_LT(error, last_error + 0.005) << "K = " << k;
    if (k == 5000) {
      EXPECT_LT(error, 0.05) << "IS estimate " << s.iwae / s.count << " vs exact " << exact;
    }
    last_error = error;
    // The naive estimate from the prior is worse than the IS estimate.
    if (k == 100) {
      EXPECT_LT(s.prior / double(s.count), s.iwae / double(s.count));
    }
  }
}

TEST(LinearGaussian, TrainedModelReachesTheMaximumLikelihoodPpcaSolution) {
  TrainedPpca r(150);
  const double ml = r.ml.log_likelihood / double(r.data->count);
  const double trained = r.exact();
  // The linear VAE's optimum is the ML solution (its ELBO is tight there); trained with Adam
  // for 3,000 steps it must come within 0.01 nats per data point, and never above it.
  EXPECT_LE(trained, ml + 1e-6);
  EXPECT_NEAR(trained, ml, 0.01) << "trained " << trained << " ML " << ml;
  // The data were drawn with sigma 0.4: the ML estimate is close.
  EXPECT_NEAR(std::sqrt(r.ml.sigma2), 0.4, 0.03);
}

TEST(Iwae, BoundsAreOrderedInExpectation) {
  // ELBO <= IWAE_k <= IWAE_2k, on a fixed model (one epoch of training: q is still far from
  // the posterior, so the gaps are clear), averaged over seeds: each difference must exceed
  // 3 standard errors.
  auto data = std::make_shared<Dataset>();
  data->source = "patterns";
  data->count = 300;
  data->dim = 20;
  data->u8.resize(300 * 20);
  std::mt19937_64 g(1);
  for (auto& v : data->u8) v = (g() % 3) ? 200 : 30;
  ModelConfig m;
  m.input_dim = 20;
  m.encoder_hidden = {16};
  m.decoder_hidden = {16};
  m.latent = 3;
  TrainConfig t;
  t.batch = 30;
  auto base = make_backend(Device::cpu, m, t);
  base->set_parameters(init_parameters(base->layout(), m, 1));
  base->set_train_data(data);
  train_epochs(*base, *data, t, 1);
  const auto params = base->parameters();
  std::vector<double> d1, d2;  // IWAE_k - ELBO, IWAE_2k - IWAE_k, per seed
  for (std::uint64_t seed = 1; seed <= 16; ++seed) {
    t.seed = seed;
    auto b = make_backend(Device::cpu, m, t);
    b->set_parameters(params);
    const LikelihoodSums k2 = b->estimate_log_likelihood(*data, 2), k4 = b->estimate_log_likelihood(*data, 4);
    d1.push_back((k2.iwae + k2.recon + k2.kl) / double(k2.count));
    d2.push_back((k4.iwae - k2.iwae) / double(k2.count));
  }
  auto mean_se = [](const std::vector<double>& v) {
    double mean = 0, s2 = 0;
    for (double x : v) mean += x;
    mean /= double(v.size());
    for (double x : v) s2 += (x - mean) * (x - mean);
    return std::pair{mean, std::sqrt(s2 / double(v.size() - 1) / double(v.size()))};
  };
  const auto [m1, se1] = mean_se(d1);
  const auto [m2, se2] = mean_se(d2);
  EXPECT_GT(m1, 3 * se1) << "IWAE_2 - ELBO = " << m1 << " +- " << se1;
  EXPECT_GT(m2, 3 * se2) << "IWAE_4 - IWAE_2 = " << m2 << " +- " << se2;
}

TEST(Estimators, ScoreFunctionAndReparameterizationAgreeInTheMean) {
  // The same batch, many noise draws: per gradient element, the two estimators' means must
  // agree within their standard errors; the score function's variance is far larger.
  auto data = std::make_shared<Dataset>();
  data->source = "tiny";
  data->count = 4;
  data->dim = 5;
  data->f32 = {0.1f, 0.9f, 0.5f, 0.3f, 0.7f, 0.8f, 0.2f, 0.6f, 0.4f, 0.1f,
               0.3f, 0.3f, 0.9f, 0.7f, 0.2f, 0.6f, 0.5f, 0.1f, 0.8f, 0.9f};
  ModelConfig m;
  m.input_dim = 5;
  m.encoder_hidden = {4};
  m.decoder_hidden = {4};
  m.latent = 2;
  m.activation = Activation::tanh;
  TrainConfig t;
  t.batch = 4;
  t.precision = Precision::fp64;
  auto backend = make_backend(Device::cpu, m, t);
  backend->set_parameters(init_parameters(backend->layout(), m, 7));
  backend->set_train_data(data);
  const std::uint32_t idx[4] = {0, 1, 2, 3};
  Batch batch;
  batch.indices = idx;
  batch.size = 4;
  const ParamLayout& layout = backend->layout();
  const std::size_t P = layout.encoder_end();  // phi: the estimators differ only here
  struct Moments {
    std::vector<double> mean, m2;
    int n = 0;
    void add(const std::vector<float>& g, std::size_t count) {
      if (mean.empty()) mean.assign(count, 0), m2.assign(count, 0);
      ++n;
      for (std::size_t i = 0; i < count; ++i) {
        const double d = g[i] - mean[i];
        mean[i] += d / n;
        m2[i] += d * (g[i] - mean[i]);
      }
    }
    double var(std::size_t i) const { return m2[i] / (n - 1); }
  };
  Moments reparam, score;
  for (int r = 0; r < 4000; ++r) {
    backend->compute_gradient(batch, r, Estimator::reparam);
    reparam.add(backend->gradients(), P);
  }
  for (int r = 0; r < 40000; ++r) {
    backend->compute_gradient(batch, 100000 + r, Estimator::score);
    score.add(backend->gradients(), P);
  }
  double worst_z = 0, var_r = 0, var_s = 0;
  int compared = 0;
  for (const auto& tv : layout.tensors()) {
    if (tv.offset >= P) continue;
    for (std::size_t i = tv.offset; i < tv.offset + tv.size(); ++i) {
      const double se = std::sqrt(reparam.var(i) / reparam.n + score.var(i) / score.n);
      if (se == 0) continue;
      worst_z = std::max(worst_z, std::fabs(score.mean[i] - reparam.mean[i]) / se);
      var_r += reparam.var(i);
      var_s += score.var(i);
      ++compared;
    }
  }
  EXPECT_GT(compared, 20);
  EXPECT_LT(worst_z, 5.0) << "a gradient element's means differ by more than 5 standard errors";
  EXPECT_GT(var_s, 10 * var_r) << "score-function variance " << var_s << ", reparameterization " << var_r;
}

TEST(Schedules, AlternatingStepsUpdateOnlyTheirGroup) {
  auto data = ppca_data(64, 5);
  ModelConfig m = linear_model(0.5);
  m.decoder_hidden = {8};
  TrainConfig t;
  t.batch = 16;
  t.schedule = Schedule::alternating;
  t.e_steps = 2;
  t.m_steps = 1;
  for (Optimizer opt : {Optimizer::adam, Optimizer::adamw, Optimizer::sgd, Optimizer::rmsprop}) {
    t.optimizer.kind = opt;
    auto backend = make_backend(Device::cpu, m, t);
    backend->set_parameters(init_parameters(backend->layout(), m, 1));
    backend->set_train_data(data);
    const std::size_t split = backend->layout().encoder_end();
    BatchStream stream(data->count, t.batch, 1);
    Batch b;
    for (int step = 0; step < 6; ++step) {
      stream.next_rolling(b);
      const auto before = backend->parameters();
      backend->train_step(b);
      const auto after = backend->parameters();
      const bool e_step = step % 3 < 2;
      const bool enc_moved = !std::equal(before.begin(), before.begin() + split, after.begin());
      const bool dec_moved = !std::equal(before.begin() + split, before.end(), after.begin() + split);
      EXPECT_EQ(enc_moved, e_step) << to_string(opt) << " step " << step;
      EXPECT_EQ(dec_moved, !e_step) << to_string(opt) << " step " << step;
    }
    const OptimizerState s = backend->optimizer_state();
    EXPECT_EQ(s.step, 4) << to_string(opt);          // E-steps 0, 1, 3, 4
    EXPECT_EQ(s.step_decoder, 2) << to_string(opt);  // M-steps 2, 5
  }
}

TEST(Schedules, EveryOptimizerAndScheduleTrains) {
  auto data = ppca_data(400, 6);
  ModelConfig m = linear_model(0.5);
  for (Optimizer opt : {Optimizer::adam, Optimizer::adamw, Optimizer::sgd, Optimizer::rmsprop})
    for (LrSchedule sched : {LrSchedule::constant, LrSchedule::cosine, LrSchedule::step}) {
      TrainConfig t;
      t.batch = 40;
      t.epochs = 5;
      t.eval_batch = 400;
      t.optimizer.kind = opt;
      t.optimizer.lr = opt == Optimizer::sgd ? 1e-2 : 5e-3;
      t.optimizer.schedule = sched;
      t.optimizer.lr_step_epochs = 2;
      t.kl_warmup_steps = 20;
      auto backend = make_backend(Device::cpu, m, t);
      backend->set_parameters(init_parameters(backend->layout(), m, 1));
      backend->set_train_data(data);
      const double before = backend->evaluate(*data).mean_loss();
      train_epochs(*backend, *data, t, t.epochs);
      const double after = backend->evaluate(*data).mean_loss();
      EXPECT_LT(after, before - 0.5) << to_string(opt) << " " << to_string(sched);
    }
}

// ---- the pictures' means (Backend::encode_means / decode_means) ----------------------------

// Without hidden layers, mu = W_head x + b_head (its first Z outputs) and the decoder's mean
// is sigmoid(W_out z + b_out) (Bernoulli) or W_out z + b_out (Gaussian): computed here in
// double. Ranges of items and codes span several of the backend's chunks, the last partial.
TEST(PictureMeans, MatchALinearModelComputedByHand) {
  for (Likelihood lik : {Likelihood::bernoulli, Likelihood::gaussian})
    for (Precision prec : {Precision::fp32, Precision::fp64}) {
      const std::string what = std::string(to_string(lik)) + " " + to_string(prec);
      ModelConfig m;
      m.input_dim = 13;
      m.encoder_hidden = {};
      m.decoder_hidden = {};
      m.latent = 3;
      m.likelihood = lik;
      TrainConfig t;
      t.batch = 16;
      t.eval_batch = 20;  // chunks of 20 items and of 20 codes
      t.precision = prec;
      auto b = make_backend(Device::cpu, m, t);
      const ParamLayout& layout = b->layout();
      std::vector<float> p = test::normal_values<float>(layout.total(), 11);
      for (float& v : p) v *= 0.5f;
      b->set_parameters(p);
      const auto data = test::synthetic(90, 13, 5);
      const std::int64_t begin = 7, n = 61;
      const std::vector<float> mu = b->encode_means(*data, begin, n);
      ASSERT_EQ(mu.size(), static_cast<std::size_t>(n) * 3) << what;
      std::vector<double> want_mu(mu.size());
      std::vector<float> x(13);
      const LinearView& hd = layout.head();
      for (std::int64_t i = 0; i < n; ++i) {
        data->row(begin + i, x.data());
        for (int j = 0; j < 3; ++j) {
          double v = p[hd.bias + j];
          for (int d = 0; d < 13; ++d) v += double(p[hd.weight + static_cast<std::size_t>(j) * 13 + d]) * x[d];
          want_mu[static_cast<std::size_t>(i) * 3 + j] = v;
        }
      }
      EXPECT_LE(test::rel_norm_error(mu, want_mu), 1e-6) << what;

      const int rows = 47;
      const std::vector<float> z = test::normal_values<float>(static_cast<std::size_t>(rows) * 3, 12);
      const std::vector<float> mean = b->decode_means(z);
      ASSERT_EQ(mean.size(), static_cast<std::size_t>(rows) * 13) << what;
      std::vector<double> want(mean.size());
      const LinearView& out = layout.output();
      for (int r = 0; r < rows; ++r)
        for (int d = 0; d < 13; ++d) {
          double o = p[out.bias + d];
          for (int j = 0; j < 3; ++j) o += double(p[out.weight + static_cast<std::size_t>(d) * 3 + j]) * z[r * 3 + j];
          want[static_cast<std::size_t>(r) * 13 + d] = lik == Likelihood::bernoulli ? 1 / (1 + std::exp(-o)) : o;
        }
      EXPECT_LE(test::rel_norm_error(mean, want), 1e-6) << what;
      for (float v : mean) ASSERT_TRUE(std::isfinite(v)) << what;
    }
}

TEST(PictureMeans, RejectItemsOutsideTheDataAndPartialCodes) {
  ModelConfig m;
  m.input_dim = 13;
  m.encoder_hidden = {8};
  m.decoder_hidden = {8};
  m.latent = 3;
  auto b = make_backend(Device::cpu, m, TrainConfig{});
  const auto data = test::synthetic(10, 13, 5);
  EXPECT_NO_THROW(b->encode_means(*data, 10, 0));
  test::expect_error([&] { b->encode_means(*data, 5, 6); }, "items [5, 11) are outside the 10 items");
  test::expect_error([&] { b->encode_means(*data, -1, 2); }, "outside the 10 items");
  const auto wide = test::synthetic(10, 14, 5);
  test::expect_error([&] { b->encode_means(*wide, 0, 2); }, "14 features per item but the model expects 13");
  test::expect_error([&] { b->decode_means(std::vector<float>(static_cast<std::size_t>(m.latent) + 1, 0.5f)); },
                     "not whole codes");
  std::vector<float> codes(2 * static_cast<std::size_t>(m.latent), 0.5f);
  codes[4] = INFINITY;
  test::expect_error([&] { b->decode_means(codes); }, "code 1 holds inf at dimension 1; codes must be finite");
}

}  // namespace
}  // namespace vae
