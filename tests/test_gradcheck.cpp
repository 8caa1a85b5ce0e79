// Finite-difference gradient checks of the CPU backward pass, in double precision, for
// every parameter tensor, every activation, every likelihood (Gaussian fixed and learned),
// L = 1 and L > 1, beta = 1 and beta != 1, models with and without hidden layers, and
// conditional models (classes and covariates joining the encoder's and decoder's inputs).
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "cpu_model.h"
#include "test_util.h"
#include "vae/layout.h"

namespace vae {
namespace {

struct GradCase {
  Activation act;
  Likelihood lik;
  bool learn_sigma;
  int samples;
  double beta;
  std::vector<int> enc, dec;
  bool iwae = false;  // the IWAE loss (samples = K) instead of the ELBO
  bool log1p = false;  // --log1p-input: the encoder sees log(1 + x)
  ConditionKind condition = ConditionKind::none;  // a conditional model, with C = 3
  bool library = false;  // --library-size: log of each item's total count offsets its outputs
  bool zi_item = false;  // --zero-inflation item: the decoder gives the ZINB's logits
};

std::string case_name(const GradCase& c) {
  std::string s = std::string(c.iwae ? "iwae_" : "") + to_string(c.act) + "_" + to_string(c.lik) +
                  (c.learn_sigma ? "_learned" : "") + "_L" + std::to_string(c.samples) + "_beta" +
                  (c.beta == 1.0 ? "1" : "0p5");
  s += "_enc";
  for (int h : c.enc) s += std::to_string(h);
  s += "_dec";
  for (int h : c.dec) s += std::to_string(h);
  s += c.log1p ? "_log1p" : "";
  if (c.condition != ConditionKind::none) s += std::string("_cond_") + to_string(c.condition);
  s += c.library ? "_library" : "";
  s += c.zi_item ? "_zi_item" : "";
  for (char& ch : s)
    if (ch == '-') ch = '_';  // negative-binomial: a test name takes no '-'
  return s;
}

void PrintTo(const GradCase& c, std::ostream* os) { *os << case_name(c); }

class GradCheck : public ::testing::TestWithParam<GradCase> {};

TEST_P(GradCheck, EveryParameterTensorMatchesCentralDifferences) {
  const GradCase& c = GetParam();
  ModelConfig cfg;
  cfg.input_dim = 7;
  cfg.encoder_hidden = c.enc;
  cfg.decoder_hidden = c.dec;
  cfg.latent = 3;
  cfg.activation = c.act;
  cfg.likelihood = c.lik;
  cfg.learn_sigma = c.learn_sigma;
  cfg.sigma = 0.7;
  cfg.samples = c.samples;
  cfg.beta = c.beta;
  cfg.log1p_input = c.log1p;
  cfg.condition = c.condition;
  cfg.library_size = c.library;
  if (c.zi_item) cfg.zero_inflation = ZeroInflation::item;
  cfg.condition_dim = c.condition == ConditionKind::none ? 0 : 3;
  const int n = 5;
  const int W = data_width(cfg);

  CpuModel<double> model(cfg, n);
  const ParamLayout& layout = model.layout();
  const auto init = init_parameters(layout, cfg, 11);
  std::copy(init.begin(), init.end(), model.params().begin());
  if (layout.has_logvar()) {  // vary the learned log-variance (log theta) so every dimension differs
    const auto lv = test::uniform_values<double>(cfg.input_dim, -0.5, 0.5, 5);
    for (int d = 0; d < cfg.input_dim; ++d) model.params()[layout.logvar() + d] = lv[d];
  }
  if (layout.has_zi()) {  // and the zero-inflation logits
    const auto w = test::uniform_values<double>(cfg.input_dim, -2.0, 1.0, 6);
    for (int d = 0; d < cfg.input_dim; ++d) model.params()[layout.zi() + d] = w[d];
  }
  auto x = test::uniform_values<double>(static_cast<std::size_t>(n) * W, 0.05, 0.95, 1);
  if (counts_likelihood(c.lik))  // counts 0..5
    for (double& v : x) v = std::floor(v * 6.0);
  if (cfg.condition_dim > 0) {  // each row's last C values: a one-hot class, or covariates in [-2, 2]
    const auto cov = test::normal_values<double>(static_cast<std::size_t>(n) * cfg.condition_dim, 7);
    for (int b = 0; b < n; ++b)
      for (int j = 0; j < cfg.condition_dim; ++j)
        x[static_cast<std::size_t>(b) * W + cfg.input_dim + j] =
            c.condition == ConditionKind::classes ? double(j == (b * 2) % cfg.condition_dim) : cov[b * cfg.condition_dim + j];
  }
  const auto eps = test::normal_values<double>(static_cast<std::size_t>(n) * cfg.samples * cfg.latent, 2);

  const Pass pass = c.iwae ? Pass::iwae : Pass::elbo_reparam;
  model.run(x.data(), eps.data(), n, cfg.samples, cfg.beta, pass);
  const std::vector<double> analytic = model.grads();
  auto loss = [&]() {
    return model.run(x.data(), eps.data(), n, cfg.samples, cfg.beta, c.iwae ? Pass::iwae : Pass::forward).loss / n;
  };

  const double h = 1e-6;
  for (const auto& t : layout.tensors()) {
    std::vector<double> numeric(t.size()), got(t.size());
    for (std::size_t i = 0; i < t.size(); ++i) {
      double& p = model.params()[t.offset + i];
      const double saved = p;
      p = saved + h;
      const double up = loss();
      p = saved - h;
      const double down = loss();
      p = saved;
      numeric[i] = (up - down) / (2 * h);
      got[i] = analytic[t.offset + i];
    }
    double norm = 0;
    for (double v : numeric) norm += v * v;
    EXPECT_GT(norm, 0.0) << t.name << ": the numeric gradient is all zero, the check would be empty";
    EXPECT_TRUE(test::all_close(got, numeric, 1e-7, 1e-5, t.name)) << case_name(c);
  }
}

std::vector<GradCase> all_cases() {
  std::vector<GradCase> cases;
  for (Activation a : {Activation::relu, Activation::tanh, Activation::leaky_relu, Activation::softplus})
    for (auto [lik, learned] : {std::pair{Likelihood::bernoulli, false}, std::pair{Likelihood::gaussian, false},
                                std::pair{Likelihood::gaussian, true}, std::pair{Likelihood::poisson, false},
                                std::pair{Likelihood::negative_binomial, false}, std::pair{Likelihood::zinb, false}})
      for (int L : {1, 3})
        for (double beta : {1.0, 0.5}) cases.push_back({a, lik, learned, L, beta, {6, 5}, {4}});
  // The IWAE loss with K = 1 and K = 4 samples, every activation and likelihood.
  for (Activation a : {Activation::relu, Activation::tanh, Activation::leaky_relu, Activation::softplus})
    for (auto [lik, learned] : {std::pair{Likelihood::bernoulli, false}, std::pair{Likelihood::gaussian, false},
                                std::pair{Likelihood::gaussian, true}, std::pair{Likelihood::poisson, false},
                                std::pair{Likelihood::negative_binomial, false}, std::pair{Likelihood::zinb, false}})
      for (int K : {1, 4}) cases.push_back({a, lik, learned, K, 1.0, {6, 5}, {4}, true});
  cases.push_back({Activation::tanh, Likelihood::gaussian, true, 3, 1.0, {}, {}, true});
  // No hidden layers at all (linear encoder and decoder), and only a decoder hidden layer.
  cases.push_back({Activation::tanh, Likelihood::gaussian, true, 2, 0.5, {}, {}});
  cases.push_back({Activation::softplus, Likelihood::bernoulli, false, 2, 1.0, {}, {5}});
  // Counts with the encoder on log(1 + x): with hidden layers, and with the head first.
  cases.push_back({Activation::tanh, Likelihood::poisson, false, 2, 1.0, {6}, {4}, false, true});
  cases.push_back({Activation::relu, Likelihood::poisson, false, 3, 1.0, {}, {4}, true, true});
  cases.push_back({Activation::softplus, Likelihood::negative_binomial, false, 2, 0.5, {5}, {4}, false, true});
  cases.push_back({Activation::tanh, Likelihood::zinb, false, 2, 1.0, {}, {4}, true, true});
  // Conditional models: with hidden layers, linear, only a decoder layer; ELBO and IWAE.
  cases.push_back({Activation::tanh, Likelihood::bernoulli, false, 2, 1.0, {6, 5}, {4}, false, false,
                   ConditionKind::classes});
  cases.push_back({Activation::softplus, Likelihood::gaussian, true, 2, 0.5, {}, {}, false, false,
                   ConditionKind::covariates});
  cases.push_back({Activation::tanh, Likelihood::gaussian, false, 3, 1.0, {5}, {}, true, false,
                   ConditionKind::covariates});
  cases.push_back({Activation::leaky_relu, Likelihood::poisson, false, 2, 1.0, {}, {4}, true, true,
                   ConditionKind::classes});
  cases.push_back({Activation::relu, Likelihood::negative_binomial, false, 1, 1.0, {6}, {5}, false, true,
                   ConditionKind::covariates});
  // --library-size: Poisson, NB with log(1 + x), the ZINB under IWAE, a conditional NB.
  cases.push_back({Activation::tanh, Likelihood::poisson, false, 2, 1.0, {6}, {4}, false, false,
                   ConditionKind::none, true});
  cases.push_back({Activation::softplus, Likelihood::negative_binomial, false, 1, 0.5, {5}, {4}, false, true,
                   ConditionKind::none, true});
  cases.push_back({Activation::relu, Likelihood::zinb, false, 3, 1.0, {}, {4}, true, true, ConditionKind::none, true});
  cases.push_back({Activation::tanh, Likelihood::negative_binomial, false, 2, 1.0, {5}, {}, false, true,
                   ConditionKind::classes, true});
  // --zero-inflation item: the ZINB's logits from the decoder (ELBO with hidden layers, IWAE linear).
  cases.push_back({Activation::tanh, Likelihood::zinb, false, 2, 1.0, {6}, {4}, false, true, ConditionKind::none,
                   false, true});
  cases.push_back({Activation::softplus, Likelihood::zinb, false, 3, 0.5, {}, {}, true, false, ConditionKind::covariates,
                   true, true});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllConfigurations, GradCheck, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<GradCase>& p) { return case_name(p.param); });

// The float model computes the same gradient as the double model, to float accuracy.
TEST(GradCheck, FloatModelAgreesWithDoubleModel) {
  ModelConfig cfg;
  cfg.input_dim = 61;
  cfg.encoder_hidden = {37};
  cfg.decoder_hidden = {29};
  cfg.latent = 13;
  cfg.samples = 2;
  const int n = 9;
  CpuModel<double> md(cfg, n);
  CpuModel<float> mf(cfg, n);
  const auto init = init_parameters(md.layout(), cfg, 3);
  std::copy(init.begin(), init.end(), md.params().begin());
  std::copy(init.begin(), init.end(), mf.params().begin());
  const auto x = test::uniform_values<float>(static_cast<std::size_t>(n) * cfg.input_dim, 0, 1, 4);
  const auto eps = test::normal_values<float>(static_cast<std::size_t>(n) * cfg.samples * cfg.latent, 5);
  const std::vector<double> xd(x.begin(), x.end()), epsd(eps.begin(), eps.end());
  const auto sd = md.forward(xd.data(), epsd.data(), n, true);
  const auto sf = mf.forward(x.data(), eps.data(), n, true);
  EXPECT_NEAR(sf.loss, sd.loss, 1e-5 * std::fabs(sd.loss));
  EXPECT_LT(test::rel_norm_error(mf.grads(), md.grads()), 1e-5);
}

}  // namespace
}  // namespace vae
