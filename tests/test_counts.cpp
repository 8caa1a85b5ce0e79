// Count data under the Poisson likelihood: uint8 data are the counts 0..255, float data
// must hold non-negative integers, a model learns counts, and its pictures are refused in
// one line. (Its gradient: test_gradcheck.cpp; against torch.distributions.Poisson:
// torch_crosscheck.py; its kernel: tests/cuda.)
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <memory>
#include <random>
#include <vector>

#include "elementwise.h"
#include "test_util.h"
#include "vae/vae.h"

namespace vae {
namespace {

ModelConfig poisson_model(int dim) {
  ModelConfig m;
  m.input_dim = dim;
  m.encoder_hidden = {12};
  m.decoder_hidden = {12};
  m.latent = 2;
  m.likelihood = Likelihood::poisson;
  return m;
}

TrainConfig small_train() { return test::cpu_train(16, 10); }

// Counts from a known rate per item: two clusters of items, each feature its own rates.
double true_rate(std::int64_t i, int j) { return (i % 2 ? 0.5 : 6.0) * (1.0 + j % 3); }

std::shared_ptr<Dataset> poisson_counts(std::int64_t n, int dim, std::uint64_t seed, bool as_u8) {
  std::mt19937_64 g(seed);
  auto d = test::dataset_of("counts", n, dim);
  std::vector<float> v(static_cast<std::size_t>(n) * dim);
  for (std::int64_t i = 0; i < n; ++i)
    for (int j = 0; j < dim; ++j) {
      const double rate = true_rate(i, j);
      v[static_cast<std::size_t>(i) * dim + j] =
          static_cast<float>(std::min(255, std::poisson_distribution<int>(rate)(g)));
    }
  if (as_u8) d->u8.assign(v.begin(), v.end());
  else d->f32 = std::move(v);
  return d;
}

TEST(Counts, Uint8DataAreTheCountsThemselves) {
  const ModelConfig m = poisson_model(9);
  const auto bytes = poisson_counts(23, 9, 1, true), floats = poisson_counts(23, 9, 1, false);
  ASSERT_EQ(std::vector<float>(bytes->u8.begin(), bytes->u8.end()), floats->f32);
  auto b = make_backend(Device::cpu, m, small_train());
  b->set_parameters(init_parameters(b->layout(), m, 2));
  const LossSums a = b->evaluate(*bytes), c = b->evaluate(*floats);
  EXPECT_EQ(a.loss, c.loss);
  EXPECT_EQ(b->encode(*bytes, 2, 5), b->encode(*floats, 2, 5));
  const LikelihoodSums la = b->estimate_log_likelihood(*bytes, 3), lc = b->estimate_log_likelihood(*floats, 3);
  EXPECT_EQ(la.iwae, lc.iwae);
  EXPECT_TRUE(std::isfinite(a.loss));
}

TEST(Counts, DataThatAreNotCountsAreRefused) {
  const ModelConfig m = poisson_model(3);
  auto b = make_backend(Device::cpu, m, small_train());
  auto d = test::dataset_of("mine", 2, 3);
  d->f32 = {0, 1, 2, 3, 4.5f, 5};
  test::expect_error([&] { b->set_train_data(d); },
                     "data 'mine': value 4.5 at item 1, feature 1 is not a count (a non-negative integer), which "
                     "--likelihood poisson needs");
  d->f32[4] = -1;
  test::expect_error([&] { b->evaluate(*d); }, "value -1 at item 1, feature 1 is not a count");
}

// Model `m` trained on `train` for `epochs` at lr 0.01; its last test -ELBO (keep: the session).
double test_loss_after(const ModelConfig& m, const std::shared_ptr<Dataset>& train, const Dataset& test, int epochs,
                       std::unique_ptr<Session>* keep = nullptr) {
  TrainConfig t = small_train();
  t.optimizer.lr = 0.01;
  auto s = std::make_unique<Session>(m, t);
  s->set_train_data(train);
  double loss = NAN;
  for (int e = 0; e < epochs; ++e) {
    const auto out = s->train_epoch(&test, nullptr);
    EXPECT_TRUE(out && !out->halted);
    if (!out || out->halted) return NAN;
    loss = out->metrics.test_loss;
  }
  if (keep) *keep = std::move(s);
  return loss;
}

// A model of `lik` trained on `train` for 40 epochs; its last test -ELBO.
double trained_test_loss(Likelihood lik, const std::shared_ptr<Dataset>& train, const Dataset& test, Session** keep = nullptr) {
  static std::unique_ptr<Session> last;
  ModelConfig m = poisson_model(train->dim);
  m.likelihood = lik;
  const double loss = test_loss_after(m, train, test, 40, &last);
  if (keep) *keep = last.get();
  return loss;
}

// -log p(x) per item under the generating model: the two clusters of true_rate, each item's
// features independent Poisson (theta 0) or negative binomial with inverse dispersion theta,
// with structural zeros of probability pi.
double generating_neg_log_likelihood(const Dataset& test, double theta, double pi = 0) {
  double total = 0;
  std::vector<float> x(static_cast<std::size_t>(test.dim));
  for (std::int64_t i = 0; i < test.count; ++i) {
    test.row(i, x.data());
    for (float& v : x) v = std::round(v * 255.0f);  // uint8 rows read as x / 255
    double lp[2] = {0, 0};
    for (int c = 0; c < 2; ++c)
      for (int j = 0; j < test.dim; ++j) {
        const double r = true_rate(c, j), k = x[j];
        const double log_count = theta > 0 ? std::lgamma(k + theta) - std::lgamma(theta) - std::lgamma(k + 1) +
                                                 theta * std::log(theta / (theta + r)) + k * std::log(r / (theta + r))
                                           : k * std::log(r) - r - std::lgamma(k + 1);
        lp[c] += k == 0 ? std::log(pi + (1 - pi) * std::exp(log_count)) : std::log1p(-pi) + log_count;
      }
    const double top = std::max(lp[0], lp[1]);
    total -= top + std::log(0.5 * std::exp(lp[0] - top) + 0.5 * std::exp(lp[1] - top));
  }
  return total / double(test.count);
}

TEST(Counts, APoissonModelLearnsCountsAndItsPicturesAreRefused) {
  test::TempDir dir;
  const auto train = poisson_counts(400, 9, 3, true), test_set = poisson_counts(100, 9, 4, true);
  Session* s = nullptr;
  const double loss = trained_test_loss(Likelihood::poisson, train, *test_set, &s);
  // The learned bound comes within 2 nats of the generating model's own -log p(x).
  const double truth = generating_neg_log_likelihood(*test_set, 0);
  EXPECT_LT(loss, truth + 2.0) << "the generating model's -log p(x): " << truth;
  EXPECT_GT(loss, truth - 1.0) << "a bound below the truth by more than noise";
  // The decoder means are rates: those of the first (high-rate) items are larger
  const std::vector<float> mu = s->backend().encode_means(*test_set, 0, 2);
  const std::vector<float> rates = s->backend().decode_means(mu);
  double hi = 0, lo = 0;
  for (int j = 0; j < 9; ++j) hi += rates[j], lo += rates[9 + j];
  EXPECT_GT(hi, 3 * lo);
  const ModelConfig& m = s->model();
  EXPECT_EQ(why_no_pictures(m), "the poisson decoder's means are counts, not pixel intensities in [0, 1]: no picture drawn");
  test::expect_error([&] { write_samples_png(dir.file("s.png"), s->backend(), m, 4, 3, 3, 1); }, why_no_pictures(m));
}

// Overdispersed counts (inverse dispersion theta: variance mu + mu^2 / theta) from the two
// clusters' means, each set to a structural zero with probability pi.
std::shared_ptr<Dataset> overdispersed(std::int64_t n, std::uint64_t seed, double theta, double pi = 0) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0, 1);
  auto d = test::dataset_of("nb-counts", n, 9);
  for (std::int64_t i = 0; i < n; ++i)
    for (int j = 0; j < 9; ++j) {
      const double lambda = std::gamma_distribution<double>(theta, true_rate(i, j) / theta)(g);
      const int k = std::min(255, std::poisson_distribution<int>(lambda)(g));
      d->u8.push_back(static_cast<std::uint8_t>(u(g) < pi ? 0 : k));
    }
  return d;
}

TEST(Counts, TheNegativeBinomialLearnsOverdispersedCountsAndMatchesPoissonWithoutThem) {
  const double theta = 2.0;
  const auto train = overdispersed(400, 5, theta), test_set = overdispersed(100, 6, theta);
  const double truth = generating_neg_log_likelihood(*test_set, theta);
  const double nb = trained_test_loss(Likelihood::negative_binomial, train, *test_set);
  EXPECT_LT(nb, truth + 2.0) << "the generating model's -log p(x): " << truth;
  EXPECT_GT(nb, truth - 1.0);
  // Poisson counts: no overdispersion for the negative binomial to find; both come out alike.
  const auto ptrain = poisson_counts(400, 9, 3, true), ptest = poisson_counts(100, 9, 4, true);
  const double a = trained_test_loss(Likelihood::negative_binomial, ptrain, *ptest);
  const double b = trained_test_loss(Likelihood::poisson, ptrain, *ptest);
  EXPECT_NEAR(a, b, 0.5) << "negative binomial " << a << ", Poisson " << b;
}

TEST(Counts, TheZinbLearnsStructuralZeros) {
  // Overdispersed counts of which 40% are set to zero: the ZINB comes within 2 nats of the
  // generating model, and closer than the negative binomial (which gives those zeros mass by
  // stretching its dispersion; about 0.15 nats behind at these seeds).
  const double theta = 2.0, pi = 0.4;
  const auto train = overdispersed(400, 7, theta, pi), test_set = overdispersed(100, 8, theta, pi);
  const double truth = generating_neg_log_likelihood(*test_set, theta, pi);
  const double zinb = trained_test_loss(Likelihood::zinb, train, *test_set);
  EXPECT_LT(zinb, truth + 2.0) << "the generating model's -log p(x): " << truth;
  EXPECT_GT(zinb, truth - 1.0);
  const double nb = trained_test_loss(Likelihood::negative_binomial, train, *test_set);
  EXPECT_LT(zinb, nb) << "the ZINB's test -ELBO against the negative binomial's";
}

// The negative binomial's log p and its gradient in t stay right when theta is large (a
// feature without overdispersion drives t up): against the formula in long double, and
// its derivative by central differences there.
TEST(Counts, TheNegativeBinomialStaysAccurateForLargeTheta) {
  auto reference = [](long double x, long double o, long double t) {
    const long double mu = std::exp(o), theta = std::exp(t);
    return std::lgamma(x + theta) - std::lgamma(theta) - std::lgamma(x + 1) + theta * std::log(theta / (theta + mu)) +
           x * std::log(mu / (theta + mu));
  };
  for (float t : {0.5f, 8.0f, 12.0f, 16.0f})
    for (float x : {0.0f, 1.0f, 5.0f, 40.0f}) {
      const float o = 1.5f;
      float lp, go, gt;
      ew::negative_binomial(x, o, t, lp, go, gt);
      const long double want = reference(x, o, t), h = 1e-4L;
      const long double want_dt = -(reference(x, o, t + h) - reference(x, o, t - h)) / (2 * h);
      EXPECT_NEAR(lp, double(want), 1e-5 * std::fabs(double(want)) + 1e-6) << "log p at x " << x << ", t " << t;
      EXPECT_NEAR(gt, double(want_dt), 1e-4 * std::fabs(double(want_dt)) + 1e-6) << "d/dt at x " << x << ", t " << t;
    }
}

// --library-size: items whose counts scale with a library size l_b (log-uniform over 10..1000)
// and one frequency profile. The offset log(total) carries l_b, so a model with it does
// better than one that must learn l_b in its latent code; its decoder means are then rates
// per unit of library, summing to about 1 over the features.
TEST(Counts, TheLibrarySizeOffsetsTheLogMean) {
  const int D = 8;
  auto make = [&](std::int64_t n, std::uint64_t seed) {
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<double> u(std::log(10.0), std::log(1000.0));
    auto d = test::dataset_of("library", n, D);
    for (std::int64_t i = 0; i < n; ++i) {
      const double lib = std::exp(u(g));
      for (int j = 0; j < D; ++j)
        d->f32.push_back(static_cast<float>(std::poisson_distribution<int>(lib * (1.0 + j) / 36.0)(g)));
    }
    return d;
  };
  const auto train = make(400, 5), test_set = make(100, 6);
  auto loss_of = [&](bool library, std::unique_ptr<Session>* keep) {
    ModelConfig m = poisson_model(D);
    m.latent = 1;
    m.log1p_input = true;
    m.library_size = library;
    return test_loss_after(m, train, *test_set, 30, keep);
  };
  std::unique_ptr<Session> with, without;
  const double a = loss_of(true, &with), b = loss_of(false, &without);
  EXPECT_LT(a, b - 1.0) << "test -ELBO with the library size " << a << ", without " << b;
  std::cout << "[ info ] test -ELBO with the library size " << a << ", without " << b << "\n";
  const std::vector<float> rates = with->backend().decode_means(with->backend().encode_means(*test_set, 0, 3));
  for (int i = 0; i < 3; ++i) {
    double sum = 0;
    for (int j = 0; j < D; ++j) sum += rates[static_cast<std::size_t>(i) * D + j];
    EXPECT_NEAR(sum, 1.0, 0.25) << "item " << i << ": the rates per unit of library sum to " << sum;
  }
}

// --zero-inflation item: items of one cluster lose 80% of their counts to structural zeros,
// the other's none. A logit per feature can only learn the average; the decoder's logit per
// item learns each cluster's, and its test -ELBO is lower.
TEST(Counts, PerItemZeroInflationLearnsWhichItemsDropOut) {
  const int D = 9;
  auto make = [&](std::int64_t n, std::uint64_t seed) {
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<double> u(0, 1);
    auto d = test::dataset_of("dropouts", n, D);
    for (std::int64_t i = 0; i < n; ++i)
      for (int j = 0; j < D; ++j) {
        const int k = std::poisson_distribution<int>(4.0 * (1 + j % 3))(g);
        d->f32.push_back(i % 2 == 0 && u(g) < 0.8 ? 0.0f : static_cast<float>(k));
      }
    return d;
  };
  const auto train = make(400, 7), test_set = make(100, 8);
  ModelConfig m = poisson_model(D);
  m.likelihood = Likelihood::zinb;
  m.log1p_input = true;
  const double per_feature = test_loss_after(m, train, *test_set, 30);
  m.zero_inflation = ZeroInflation::item;
  std::unique_ptr<Session> s;
  const double per_item = test_loss_after(m, train, *test_set, 30, &s);
  std::cout << "[ info ] ZINB test -ELBO: zero inflation per feature " << per_feature << ", per item " << per_item << "\n";
  EXPECT_LT(per_item, per_feature - 1.0);
  const ParamLayout& layout = s->backend().layout();
  EXPECT_EQ(layout.at("decoder.out.weight").shape, (std::vector<int>{2 * D, 12}));
  EXPECT_THROW(layout.at("decoder.zi_logit"), Error);
}

}  // namespace
}  // namespace vae
