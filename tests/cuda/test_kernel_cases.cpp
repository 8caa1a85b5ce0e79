// Every GPU kernel against its CPU twin, by operation, through the kernel cases' harness
// (bench/kernel_cases/harness.h): one test per operation, KernelMatchesItsCpuTwin.<op>
// after its kernel entry point, running the operation's cases at odd sizes (batch 37,
// widths 61 and 13, L = 1, 2, 3, every activation, both likelihoods with fixed and learned
// sigma). Each case states its inputs, its launch, its twin and its tolerances;
// bench/gpu_kernels.cu times and checks the same cases at the reference model's sizes.
// kernels/README.md maps each kernel to its twin, its test and its benchmark case. Every
// output is poisoned with NaN before a launch, so a passing case shows every element was
// written; NaN never passes a comparison.
#include <array>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gpu_test_util.h"
#include "kernel_cases/data.h"
#include "kernel_cases/importance.h"
#include "kernel_cases/latent.h"
#include "kernel_cases/layers.h"
#include "kernel_cases/likelihood.h"
#include "kernel_cases/model.h"
#include "kernel_cases/optimizer.h"

namespace vae {
namespace {

using namespace cases;

constexpr Activation kActivations[] = {Activation::relu, Activation::tanh, Activation::leaky_relu,
                                       Activation::softplus};
constexpr Optimizer kOptimizers[] = {Optimizer::adam, Optimizer::adamw, Optimizer::sgd, Optimizer::rmsprop};

template <class C, class... Args>
void add(CaseList& list, Args&&... args) {
  list.push_back(std::make_unique<C>(std::forward<Args>(args)...));
}

std::vector<std::uint32_t> random_indices(int n, std::uint32_t count, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<std::uint32_t> idx(static_cast<std::size_t>(n));
  for (auto& i : idx) i = static_cast<std::uint32_t>(g() % count);
  return idx;
}

void gather_cases(CaseList& l) {
  for (bool as_float : {false, true})
    add<GatherCase>(l, test::synthetic(100, 61, 3, as_float), random_indices(37, 100, 11));
  const auto data = test::synthetic(100, 61, 4);
  for (std::int64_t step : {0, 2, 7}) add<GatherCase>(l, data, random_indices(37, 100, 12), step);
}

// (37, 61): two column tiles, two row chunks; (37, 13); (1000, 45): 32 row chunks.
void act_backward_cases(CaseList& l) {
  for (Activation a : kActivations)
    for (auto [rows, cols] : {std::pair{37, 61}, std::pair{37, 13}, std::pair{1000, 45}})
      add<ActBackwardCase>(l, a, rows, cols);
}

void likelihood_cases(CaseList& l) {
  using Mode = gpu::LikelihoodMode;
  struct Shape {
    Likelihood lik;
    bool learned;
    int n, L, D;
  };
  for (const Shape& s : {Shape{Likelihood::bernoulli, false, 37, 2, 61}, Shape{Likelihood::bernoulli, false, 37, 3, 13},
                         Shape{Likelihood::gaussian, false, 37, 2, 61}, Shape{Likelihood::gaussian, true, 37, 3, 61},
                         Shape{Likelihood::gaussian, true, 37, 2, 13}, Shape{Likelihood::bernoulli, false, 500, 2, 100},
                         Shape{Likelihood::gaussian, true, 500, 1, 100}, Shape{Likelihood::poisson, false, 37, 2, 61},
                         Shape{Likelihood::poisson, false, 500, 1, 100}, Shape{Likelihood::negative_binomial, false, 37, 2, 61},
                         Shape{Likelihood::negative_binomial, false, 37, 3, 13}, Shape{Likelihood::zinb, false, 37, 2, 61},
                         Shape{Likelihood::zinb, false, 500, 1, 100}})
    for (Mode m : {Mode::backward, Mode::forward}) add<LikelihoodCase>(l, s.lik, s.learned, s.n, s.L, s.D, m);
  for (Mode m : {Mode::backward, Mode::forward, Mode::weighted})  // the ZINB's logits from the decoder
    add<LikelihoodCase>(l, Likelihood::zinb, false, 37, 2, 61, m, true);
  for (const Shape& s : {Shape{Likelihood::bernoulli, false, 37, 3, 61}, Shape{Likelihood::gaussian, false, 37, 3, 61},
                         Shape{Likelihood::gaussian, true, 37, 3, 13}, Shape{Likelihood::gaussian, true, 37, 1, 61},
                         Shape{Likelihood::poisson, false, 37, 3, 13}, Shape{Likelihood::negative_binomial, false, 37, 2, 61},
                         Shape{Likelihood::zinb, false, 37, 3, 13}})
    add<LikelihoodCase>(l, s.lik, s.learned, s.n, s.L, s.D, Mode::weighted);
}

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

void optimizer_cases(CaseList& l) {
  for (Optimizer kind : kOptimizers) {
    for (auto update : {std::array<int, 2>{1, 1}, std::array<int, 2>{1, 0}, std::array<int, 2>{0, 1}}) {
      OptimizerShape s;
      s.cfg = optimizer_config(kind);
      s.lr = 3e-3;
      s.update = update;
      s.n = 4 * 1031;
      s.encoder_end = 4 * 517;
      s.counts = {3, 11};
      add<OptimizerCase>(l, s);
    }
  }
}

void model_cases(CaseList& l) {
  struct Shape {
    Activation act;
    Likelihood lik;
    bool learned;
    int L;
    std::vector<int> enc, dec;
  };
  const auto data = test::synthetic(37, 61, 21);
  std::vector<float> x(static_cast<std::size_t>(37) * 61);
  for (int i = 0; i < 37; ++i) data->row(i, x.data() + static_cast<std::size_t>(i) * 61);
  for (const Shape& s : {Shape{Activation::relu, Likelihood::bernoulli, false, 1, {24}, {24}},
                         Shape{Activation::tanh, Likelihood::gaussian, false, 2, {17, 9}, {11}},
                         Shape{Activation::leaky_relu, Likelihood::gaussian, true, 3, {19}, {23, 7}},
                         Shape{Activation::softplus, Likelihood::bernoulli, false, 2, {}, {}},
                         Shape{Activation::relu, Likelihood::gaussian, true, 2, {}, {19}},
                         Shape{Activation::softplus, Likelihood::bernoulli, false, 3, {29}, {}}}) {
    ModelConfig cfg;
    cfg.input_dim = 61;
    cfg.latent = 13;
    cfg.encoder_hidden = s.enc;
    cfg.decoder_hidden = s.dec;
    cfg.activation = s.act;
    cfg.likelihood = s.lik;
    cfg.learn_sigma = s.learned;
    cfg.sigma = 0.3;
    cfg.samples = s.L;
    cfg.beta = 0.8;
    add<DeviceModelScenario>(l, cfg, x);
  }
}

using Operation = std::pair<std::string, std::function<void(CaseList&)>>;

// The registry: each operation, named after its kernel entry point, and its cases.
const std::vector<Operation>& operations() {
  using G = LatentGrad;
  static const std::vector<Operation> ops = {
      {"gather_rows", gather_cases},
      {"linear",
       [](CaseList& l) {
         for (auto [rows, in, out] : {std::array{37, 61, 13}, std::array{37, 13, 61}, std::array{1, 7, 3}})
           add<LinearCase>(l, rows, in, out);
         add<LinearCase>(l, 37, 23, 19, 13);  // a conditional decoder's first layer: the gradient of z only
       }},
      {"bias_act_forward",
       [](CaseList& l) {
         for (Activation a : kActivations) add<BiasActCase>(l, a, 37, 61);
       }},
      {"act_backward_bias_grad", act_backward_cases},
      {"lt_bias_relu",
       [](CaseList& l) {
         for (auto [rows, in, out] :
              {std::array{37, 61, 13}, std::array{37, 13, 61}, std::array{128, 784, 400}, std::array{1, 7, 3}})
           add<LtBiasReluCase>(l, rows, in, out);
       }},
      {"latent_forward",
       [](CaseList& l) {
         for (int L : {1, 2, 3}) add<LatentForwardCase>(l, 37, L, 13, true);
       }},
      {"latent_backward",
       [](CaseList& l) {
         for (int L : {1, 2, 3}) add<LatentBackwardCase>(l, G::reparam, 37, L, 13);
       }},
      {"latent_backward_score",
       [](CaseList& l) {
         for (int L : {1, 3}) add<LatentBackwardCase>(l, G::score, 37, L, 13);
       }},
      {"latent_backward_iwae",
       [](CaseList& l) {
         for (int K : {1, 3}) add<LatentBackwardCase>(l, G::iwae, 37, K, 13);
       }},
      {"likelihood_forward_backward", likelihood_cases},
      {"importance_weights",
       [](CaseList& l) {
         for (auto [n, K] : {std::array{37, 3}, std::array{37, 1}, std::array{5, 200}})
           add<ImportanceWeightsCase>(l, n, K);
       }},
      {"loss_accumulate",
       [](CaseList& l) {
         add<LossSumsScenario>(l);
         add<IwaeLossSumsScenario>(l);
       }},
      {"iw_estimate", [](CaseList& l) { add<EstimateScenario>(l); }},
      {"step_guard",
       [](CaseList& l) {
         for (bool stop : {false, true}) add<StepGuardScenario>(l, stop);
       }},
      {"optimizer_step", optimizer_cases},
      {"optimizer_scalars_on_device",
       [](CaseList& l) {
         for (Optimizer kind : kOptimizers) add<OptimizerScalarsCase>(l, optimizer_config(kind));
       }},
      {"noise_block",
       [](CaseList& l) {
         add<NoiseBlockScenario>(l, StepNoise::Kind::normal);
         add<NoiseBlockScenario>(l, StepNoise::Kind::uniform);
         add<NoiseStepsScenario>(l);
       }},
      {"cuda_model", model_cases},
  };
  return ops;
}

// Runs an operation's cases; each failing case is one failure naming the case.
class KernelMatchesItsCpuTwin : public test::GpuTest {
 public:
  explicit KernelMatchesItsCpuTwin(const Operation& op) : op_(op) {}
  void TestBody() override {
    CaseList cases;
    op_.second(cases);
    ASSERT_FALSE(cases.empty());
    Context ctx;
    for (const auto& c : cases) {
      Check check;
      c->check(ctx, check);
      EXPECT_TRUE(check.passed()) << c->name() << ":" << check.report();
      for (const auto& [key, value] : check.notes()) RecordProperty(key, value);
    }
  }

 private:
  const Operation& op_;
};

// One test per operation, KernelMatchesItsCpuTwin.<op>, registered before main() runs.
const bool kRegistered = [] {
  for (const Operation& op : operations())
    ::testing::RegisterTest("KernelMatchesItsCpuTwin", op.first.c_str(), nullptr, nullptr, __FILE__, __LINE__,
                            [&op]() -> test::GpuTest* { return new KernelMatchesItsCpuTwin(op); });
  return true;
}();

}  // namespace
}  // namespace vae
