// The inference toolkit on the CUDA backend end to end against the CPU backend (the
// oracle), on the same configuration, seed and batches: every optimizer kind, the lr
// schedules, KL warm-up and the alternating (variational EM) schedule, the IWAE objective,
// the score-function estimator, estimate_log_likelihood and compute_gradient; and on the
// GPU alone: graphs against direct launches under per-step scalars, resuming bit for bit,
// and determinism.
//
// Tolerances: one step 1e-5 relative (sums, and each tensor's parameters, gradient and
// first state slot in norm); the squared-gradient slot (Adam's and RMSprop's v) 3e-5, as
// its relative error is twice the gradient's; the update (parameters minus their initial
// values) 1e-3, which a wrong learning rate, count or kind misses by far. IWAE gradients
// 1e-4: the importance weights are exp(lw_k - max) of log-weights that are float sums of
// D + Z terms (tens of nats) added in different orders on the two sides, so an absolute
// rounding difference of ~1e-5 in lw_k is ~1e-5 relative in w_k, and in the gradient.
// 200 steps: 1e-3 relative per step loss. Log-likelihood estimates: 1e-4 relative.
// GPU-against-GPU comparisons are bit for bit.
#include <algorithm>
#include <cstring>

#include "gpu_test_util.h"

namespace vae {
namespace {

using test::expect_finite;
using test::GpuTest;
using test::make;
using test::model61;
using test::pair_of;
using test::run;
using test::RunResult;
using test::train_cfg;

constexpr Optimizer kOptimizers[] = {Optimizer::adam, Optimizer::adamw, Optimizer::sgd, Optimizer::rmsprop};

std::vector<float> minus(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> d(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

double norm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return std::sqrt(s);
}

// One state slot of one tensor: to `tol` relative in norm, or, where the CPU's slot is all
// zero (a slot the optimizer does not use), all zero on the GPU too.
::testing::AssertionResult slot_close(const std::vector<float>& got, const std::vector<float>& want, double tol) {
  if (norm(want) == 0) {
    if (norm(got) == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "the CPU's slot is zero, the GPU's has norm " << norm(got);
  }
  const double e = test::rel_norm_error(got, want);
  if (e <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error in norm " << e << " > " << tol;
}

void expect_sums_close(const LossSums& got, const LossSums& want, double tol, const std::string& what) {
  EXPECT_EQ(got.count, want.count) << what;
  EXPECT_NEAR(got.loss, want.loss, tol * std::fabs(want.loss)) << what;
  EXPECT_NEAR(got.recon, want.recon, tol * std::fabs(want.recon)) << what;
  EXPECT_NEAR(got.kl, want.kl, tol * std::fabs(want.kl) + 1e-6) << what;
}

// The first `count` batches of the seeded stream, with owned indices.
struct Batches {
  std::vector<Batch> list;
  std::vector<std::vector<std::uint32_t>> owned;
  Batches(const Dataset& data, int batch, std::uint64_t seed, std::size_t count) {
    BatchStream stream(data.count, batch, seed);
    for (int e = 0; list.size() < count; ++e) {
      stream.start_epoch(e);
      Batch b;
      while (list.size() < count && stream.next(b)) {
        owned.emplace_back(b.indices, b.indices + b.size);
        list.push_back(b);
      }
    }
    for (std::size_t i = 0; i < list.size(); ++i) list[i].indices = owned[i].data();
  }
};

// Two GPU training runs of `steps` batches from the same start, the second calling
// between(backend) after step `at`: losses and parameters are bit for bit the same, i.e.
// what between() does changes nothing the training sees.
template <class F>
void expect_training_unaffected(const ModelConfig& m, const TrainConfig& t, const std::shared_ptr<Dataset>& data,
                                int steps, std::size_t at, F between) {
  const Batches batches(*data, t.batch, t.seed, steps);
  std::vector<double> losses[2];
  std::vector<float> params[2];
  for (int with = 0; with < 2; ++with) {
    auto gpu = make(Device::cuda, m, t);
    gpu->set_parameters(init_parameters(gpu->layout(), m, t.seed));
    gpu->set_train_data(data);
    for (std::size_t i = 0; i < batches.list.size(); ++i) {
      gpu->train_step(batches.list[i]);
      if (with && i == at) between(*gpu);
      losses[with].push_back(gpu->take_train_sums().loss);
    }
    params[with] = gpu->parameters();
  }
  EXPECT_TRUE(test::bit_equal(losses[0], losses[1]));
  EXPECT_TRUE(test::bit_equal(params[0], params[1]));
}

// After the same step on both: sums, then per tensor parameters, their update, gradients
// and both state slots.
void expect_step_matches(Backend& cpu, Backend& gpu, const std::vector<float>& init, double grad_tol,
                         const std::string& what) {
  const LossSums want = cpu.take_train_sums(), got = gpu.take_train_sums();
  expect_sums_close(got, want, 1e-5, what);
  const auto gp = gpu.parameters(), cp = cpu.parameters();
  const auto gg = gpu.gradients(), cg = cpu.gradients();
  const OptimizerState gs = gpu.optimizer_state(), cs = cpu.optimizer_state();
  EXPECT_EQ(gs.step, cs.step) << what;
  EXPECT_EQ(gs.step_decoder, cs.step_decoder) << what;
  const double v_tol = std::max(3e-5, 2 * grad_tol);
  for (const auto& tv : gpu.layout().tensors()) {
    const auto p = test::tensor_of(gp, tv), g = test::tensor_of(gg, tv), p0 = test::tensor_of(init, tv);
    const auto cpt = test::tensor_of(cp, tv);
    EXPECT_FALSE(test::any_nan(p) || test::any_nan(g)) << tv.name << ", " << what;
    EXPECT_LE(test::rel_norm_error(p, cpt), 1e-5) << "parameters " << tv.name << ", " << what;
    if (norm(minus(cpt, p0)) > 0) {
      EXPECT_LE(test::rel_norm_error(minus(p, p0), minus(cpt, p0)), 1e-3) << "update " << tv.name << ", " << what;
    } else {
      EXPECT_TRUE(test::bit_equal(p, p0)) << tv.name << " moved on the GPU, not on the CPU, " << what;
    }
    EXPECT_LE(test::rel_norm_error(g, test::tensor_of(cg, tv)), grad_tol) << "gradient " << tv.name << ", " << what;
    EXPECT_TRUE(slot_close(test::tensor_of(gs.m, tv), test::tensor_of(cs.m, tv), std::max(1e-5, grad_tol)))
        << "slot m " << tv.name << ", " << what;
    EXPECT_TRUE(slot_close(test::tensor_of(gs.v, tv), test::tensor_of(cs.v, tv), v_tol))
        << "slot v " << tv.name << ", " << what;
  }
}

class CudaInference : public GpuTest {};

// ---- optimizers ------------------------------------------------------------------------------

TEST_F(CudaInference, OneStepOfEveryOptimizerMatchesTheCpu) {
  const auto data = test::synthetic(100, 61, 51);
  const ModelConfig m = model61(Activation::tanh, Likelihood::gaussian, 2, true);
  for (Optimizer kind : kOptimizers) {
    TrainConfig t = train_cfg(37);
    t.optimizer.kind = kind;
    t.optimizer.lr = kind == Optimizer::sgd ? 2e-2 : 3e-3;
    t.optimizer.weight_decay = 0.1;
    std::vector<float> init;
    auto [cpu, gpu] = pair_of(m, t, data, &init);
    const Batches batches(*data, t.batch, t.seed, 2);
    cpu->train_step(batches.list[1]);  // step 1: a noise offset other than 0
    gpu->train_step(batches.list[1]);
    const OptimizerState gs = gpu->optimizer_state();
    EXPECT_EQ(gs.step, 1) << to_string(kind);
    EXPECT_EQ(gs.step_decoder, 1) << to_string(kind);
    // The slots each kind uses are non-zero, the others zero (slot_close checks the match).
    const bool uses_m = kind != Optimizer::rmsprop, uses_v = kind != Optimizer::sgd;
    EXPECT_EQ(norm(gs.m) > 0, uses_m) << to_string(kind);
    EXPECT_EQ(norm(gs.v) > 0, uses_v) << to_string(kind);
    expect_step_matches(*cpu, *gpu, init, 1e-5, to_string(kind));
  }
}

// Alternating E- and M-steps with every kind: the step that does not update a group leaves
// its parameters and state bit for bit, and the groups' counts follow the schedule.
TEST_F(CudaInference, AlternatingStepsUpdateOnlyTheirGroupAsOnTheCpu) {
  const auto data = test::synthetic(100, 61, 52);
  const ModelConfig m = model61(Activation::relu, Likelihood::bernoulli, 1);
  for (Optimizer kind : kOptimizers) {
    TrainConfig t = train_cfg(37);
    t.optimizer.kind = kind;
    t.schedule = Schedule::alternating;
    t.e_steps = 2;
    t.m_steps = 1;
    std::vector<float> init;
    auto [cpu, gpu] = pair_of(m, t, data, &init);
    const Batches batches(*data, t.batch, t.seed, 6);
    const std::size_t split = gpu->layout().encoder_end();
    std::int64_t e_count = 0, m_count = 0;
    for (const Batch& b : batches.list) {
      const auto before = gpu->parameters();
      const OptimizerState sb = gpu->optimizer_state();
      cpu->train_step(b);
      gpu->train_step(b);
      const bool e_step = b.step % (t.e_steps + t.m_steps) < t.e_steps;
      (e_step ? e_count : m_count) += 1;
      const auto after = gpu->parameters();
      const OptimizerState sa = gpu->optimizer_state();
      const std::string what = std::string(to_string(kind)) + " step " + std::to_string(b.step);
      auto range = [&](const std::vector<float>& v, bool encoder) {
        return encoder ? std::vector<float>(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(split))
                       : std::vector<float>(v.begin() + static_cast<std::ptrdiff_t>(split), v.end());
      };
      const bool fixed_encoder = !e_step;  // the group this step must leave alone
      EXPECT_TRUE(test::bit_equal(range(after, fixed_encoder), range(before, fixed_encoder))) << what;
      EXPECT_TRUE(test::bit_equal(range(sa.m, fixed_encoder), range(sb.m, fixed_encoder))) << what;
      EXPECT_TRUE(test::bit_equal(range(sa.v, fixed_encoder), range(sb.v, fixed_encoder))) << what;
      EXPECT_FALSE(test::bit_equal(range(after, !fixed_encoder), range(before, !fixed_encoder))) << what;
      EXPECT_EQ(sa.step, e_count) << what;
      EXPECT_EQ(sa.step_decoder, m_count) << what;
    }
    expect_step_matches(*cpu, *gpu, init, 1e-5, std::string(to_string(kind)) + ", alternating, after 6 steps");
  }
}

// ---- per-step scalars over 200 steps ---------------------------------------------------------

// 200 steps on both backends; the per step losses track to 1e-3. `reference` (the same
// run without the schedule, on the CPU) shows the schedule changes the run by more than
// the tolerance, so the comparison could catch a GPU that ignored it.
void expect_tracks(const ModelConfig& m, const TrainConfig& t, const TrainConfig& reference,
                   const std::shared_ptr<Dataset>& data, const std::string& what) {
  const RunResult cpu = run(Device::cpu, m, t, data, 200);
  const RunResult gpu = run(Device::cuda, m, t, data, 200);
  const RunResult plain = run(Device::cpu, m, reference, data, 200);
  expect_finite(gpu.losses, what);
  EXPECT_TRUE(test::all_close(gpu.losses, cpu.losses, 0, 1e-3, "step losses, " + what));
  EXPECT_NEAR(gpu.eval.loss, cpu.eval.loss, 1e-3 * std::fabs(cpu.eval.loss)) << what;
  EXPECT_EQ(gpu.optimizer.step, cpu.optimizer.step) << what;
  EXPECT_EQ(gpu.optimizer.step_decoder, cpu.optimizer.step_decoder) << what;
  EXPECT_FALSE(test::all_close(plain.losses, cpu.losses, 0, 3e-3)) << "the schedule must change the run, " << what;
  EXPECT_EQ(gpu.stats.graphs, 2) << "one graph per batch size serves every step, " << what;
}

TEST_F(CudaInference, LearningRateSchedulesTrackTheCpuFor200Steps) {
  const auto data = test::synthetic(150, 61, 53);  // batch 32: 5 steps per epoch
  const ModelConfig m = model61(Activation::relu, Likelihood::bernoulli, 1);
  TrainConfig base = train_cfg(32);
  base.epochs = 40;  // 200 steps: the cosine reaches lr_min at the last one
  base.optimizer.lr = 3e-3;
  for (Optimizer kind : {Optimizer::adam, Optimizer::rmsprop}) {
    base.optimizer.kind = kind;
    TrainConfig cosine = base;
    cosine.optimizer.schedule = LrSchedule::cosine;
    cosine.optimizer.lr_min = 1e-5;
    expect_tracks(m, cosine, base, data, std::string("cosine, ") + to_string(kind));
    TrainConfig step = base;
    step.optimizer.schedule = LrSchedule::step;
    step.optimizer.lr_step_epochs = 8;  // every 40 steps
    step.optimizer.lr_gamma = 0.3;
    expect_tracks(m, step, base, data, std::string("step, ") + to_string(kind));
  }
}

TEST_F(CudaInference, KlWarmUpTracksTheCpuFor200Steps) {
  const auto data = test::synthetic(150, 61, 54);
  const ModelConfig m = model61(Activation::tanh, Likelihood::bernoulli, 2);
  TrainConfig base = train_cfg(32);
  TrainConfig warm = base;
  warm.kl_warmup_steps = 120;
  expect_tracks(m, warm, base, data, "KL warm-up");
}

TEST_F(CudaInference, AlternatingScheduleTracksTheCpuFor200Steps) {
  const auto data = test::synthetic(150, 61, 55);
  const ModelConfig m = model61(Activation::leaky_relu, Likelihood::bernoulli, 1);
  TrainConfig base = train_cfg(32);
  base.optimizer.kind = Optimizer::adamw;
  TrainConfig alt = base;
  alt.schedule = Schedule::alternating;
  alt.e_steps = 2;
  alt.m_steps = 3;
  expect_tracks(m, alt, base, data, "alternating 2+3, adamw");
  const RunResult gpu = run(Device::cuda, m, alt, data, 200);
  std::int64_t e = 0;
  for (std::int64_t s = 0; s < 200; ++s) e += s % 5 < 2;
  EXPECT_EQ(gpu.optimizer.step, e);
  EXPECT_EQ(gpu.optimizer.step_decoder, 200 - e);
}

// Graph replays read lr, beta and the groups from the record: the same bits as direct launches.
TEST_F(CudaInference, GraphReplaysEqualDirectLaunchesUnderPerStepScalars) {
  const auto data = test::synthetic(150, 61, 56);
  const ModelConfig m = model61(Activation::softplus, Likelihood::gaussian, 2, true);
  TrainConfig t = train_cfg(32);
  t.epochs = 4;
  t.optimizer.kind = Optimizer::adamw;
  t.optimizer.schedule = LrSchedule::cosine;
  t.kl_warmup_steps = 9;
  t.schedule = Schedule::alternating;
  t.e_steps = 1;
  t.m_steps = 2;
  gpu::CudaBackendOptions direct;
  direct.use_graphs = false;
  const RunResult graphed = run(Device::cuda, m, t, data, 17);
  const RunResult plain = run(Device::cuda, m, t, data, 17, &direct);
  EXPECT_EQ(graphed.stats.graphs, 2);
  expect_finite(graphed.losses, "graphs");
  EXPECT_TRUE(test::bit_equal(graphed.losses, plain.losses));
  EXPECT_TRUE(test::bit_equal(graphed.params, plain.params));
  EXPECT_TRUE(test::bit_equal(graphed.optimizer.m, plain.optimizer.m));
}

// ---- IWAE ------------------------------------------------------------------------------------

TrainConfig iwae_cfg(int batch, int k) {
  TrainConfig t = train_cfg(batch);
  t.objective = Objective::iwae;
  t.iw_k = k;
  return t;
}

TEST_F(CudaInference, IwaeOneStepMatchesTheCpu) {
  const auto data = test::synthetic(100, 61, 57);
  struct Case {
    Activation act;
    Likelihood lik;
    bool learned;
    int k;
  };
  for (const Case& c : {Case{Activation::relu, Likelihood::bernoulli, false, 3},
                        Case{Activation::tanh, Likelihood::gaussian, true, 3},
                        Case{Activation::softplus, Likelihood::bernoulli, false, 1}}) {
    const ModelConfig m = model61(c.act, c.lik, 1, c.learned);
    const TrainConfig t = iwae_cfg(37, c.k);
    const std::string what = std::string("IWAE K=") + std::to_string(c.k) + ", " + to_string(c.lik);
    std::vector<float> init;
    auto [cpu, gpu] = pair_of(m, t, data, &init);
    const Batches batches(*data, t.batch, t.seed, 2);
    cpu->train_step(batches.list[1]);
    gpu->train_step(batches.list[1]);
    expect_step_matches(*cpu, *gpu, init, 1e-4, what);
  }
}

TEST_F(CudaInference, IwaeTracksTheCpuFor200Steps) {
  const auto data = test::synthetic(150, 61, 58);
  const ModelConfig m = model61(Activation::relu, Likelihood::bernoulli, 1);
  const TrainConfig t = iwae_cfg(32, 3);
  const RunResult cpu = run(Device::cpu, m, t, data, 200);
  const RunResult gpu = run(Device::cuda, m, t, data, 200);
  expect_finite(gpu.losses, "IWAE");
  EXPECT_TRUE(test::all_close(gpu.losses, cpu.losses, 0, 1e-3, "IWAE step losses"));
  EXPECT_NEAR(gpu.eval.loss, cpu.eval.loss, 1e-3 * std::fabs(cpu.eval.loss));
  EXPECT_LT(gpu.losses.back(), 0.8 * gpu.losses.front()) << "training lowered the IWAE loss";
}

// ---- the score-function estimator -----------------------------------------------------------

TEST_F(CudaInference, ScoreEstimatorOneStepMatchesTheCpu) {
  const auto data = test::synthetic(100, 61, 59);
  for (int L : {1, 3}) {
    const ModelConfig m = model61(Activation::tanh, Likelihood::bernoulli, L);
    TrainConfig t = train_cfg(37);
    t.estimator = Estimator::score;
    const std::string what = "score, L=" + std::to_string(L);
    std::vector<float> init;
    auto [cpu, gpu] = pair_of(m, t, data, &init);
    const Batches batches(*data, t.batch, t.seed, 2);
    cpu->train_step(batches.list[1]);
    gpu->train_step(batches.list[1]);
    const auto score_grads = gpu->gradients();
    expect_step_matches(*cpu, *gpu, init, 1e-5, what);
    // The same step with the reparameterization gradient: the encoder's gradient differs
    // (so the comparison above tells the estimators apart), the decoder's does not.
    t.estimator = Estimator::reparam;
    auto cpu_r = make(Device::cpu, m, t);
    cpu_r->set_parameters(init);
    cpu_r->set_train_data(data);
    cpu_r->train_step(batches.list[1]);
    const auto reparam_grads = cpu_r->gradients();
    const std::size_t split = gpu->layout().encoder_end();
    const std::vector<float> se(score_grads.begin(), score_grads.begin() + static_cast<std::ptrdiff_t>(split)),
        re(reparam_grads.begin(), reparam_grads.begin() + static_cast<std::ptrdiff_t>(split));
    EXPECT_GT(test::rel_norm_error(se, re), 1e-2) << what;
    const std::vector<float> sd(score_grads.begin() + static_cast<std::ptrdiff_t>(split), score_grads.end()),
        rd(reparam_grads.begin() + static_cast<std::ptrdiff_t>(split), reparam_grads.end());
    EXPECT_LE(test::rel_norm_error(sd, rd), 1e-5) << what;
  }
}

// ---- log-likelihood estimates ----------------------------------------------------------------

// Two configurations for the estimate and picture tests: Bernoulli on uint8 data, and a
// learned-variance Gaussian with tanh on float data.
struct DataCase {
  Activation act;
  Likelihood lik;
  bool learned;
  bool as_float;
};
const DataCase kDataCases[] = {{Activation::relu, Likelihood::bernoulli, false, false},
                               {Activation::tanh, Likelihood::gaussian, true, true}};

TEST_F(CudaInference, EstimateLogLikelihoodMatchesTheCpu) {
  for (const DataCase& c : kDataCases) {
    // 100 items, at most 37 data points per pass (max(batch, eval_batch)): three groups.
    const auto data = test::synthetic(100, 61, 60, c.as_float);
    const ModelConfig m = model61(c.act, c.lik, 1, c.learned);
    const TrainConfig t = train_cfg(16);
    auto [cpu, gpu] = pair_of(m, t, data);
    for (int k : {1, 3, 200}) {  // 200: two chunks of samples (128 + 72)
      const std::string what = std::string(to_string(c.lik)) + (c.as_float ? " float data" : "") +
                               ", k=" + std::to_string(k);
      const LikelihoodSums want = cpu->estimate_log_likelihood(*data, k);
      const LikelihoodSums got = gpu->estimate_log_likelihood(*data, k);
      EXPECT_EQ(got.count, want.count) << what;
      EXPECT_EQ(got.k, k) << what;
      EXPECT_NEAR(got.iwae, want.iwae, 1e-4 * std::fabs(want.iwae)) << what;
      EXPECT_NEAR(got.prior, want.prior, 1e-4 * std::fabs(want.prior)) << what;
      EXPECT_NEAR(got.recon, want.recon, 1e-4 * std::fabs(want.recon)) << what;
      EXPECT_NEAR(got.kl, want.kl, 1e-4 * std::fabs(want.kl)) << what;
      const LikelihoodSums again = gpu->estimate_log_likelihood(*data, k);
      EXPECT_EQ(std::memcmp(&again.iwae, &got.iwae, sizeof(double)), 0) << "the same noise at every call, " << what;
      EXPECT_EQ(std::memcmp(&again.prior, &got.prior, sizeof(double)), 0) << what;
    }
    // Other seeds draw other samples: the estimate moves.
    TrainConfig t2 = t;
    t2.seed = t.seed + 1;
    auto gpu2 = make(Device::cuda, m, t2);
    gpu2->set_parameters(gpu->parameters());
    EXPECT_NE(gpu2->estimate_log_likelihood(*data, 3).iwae, gpu->estimate_log_likelihood(*data, 3).iwae);
  }
}

// An estimate between training steps changes nothing the training sees.
TEST_F(CudaInference, EstimateLeavesTrainingAlone) {
  const auto data = test::synthetic(150, 61, 61);
  TrainConfig t = train_cfg(32);
  t.optimizer.kind = Optimizer::rmsprop;
  expect_training_unaffected(model61(Activation::relu, Likelihood::bernoulli, 2), t, data, 8, 3,
                             [&](Backend& gpu) { gpu.estimate_log_likelihood(*data, 130); });
}

// ---- the pictures' means ---------------------------------------------------------------------

// encode_means over 3 chunks of eval_batch (37) items, the last partial, from item 5; and
// decode_means over 3 chunks of the model's sample rows (max(batch, eval_batch) x L = 37
// here), the last partial; 1e-5 relative in norm, as the forward pass.
TEST_F(CudaInference, PictureMeansMatchTheCpu) {
  for (const DataCase& c : kDataCases) {
    const std::string what = std::string(to_string(c.lik)) + (c.as_float ? " float data" : "");
    const auto data = test::synthetic(100, 61, 64, c.as_float);
    const ModelConfig m = model61(c.act, c.lik, 1, c.learned);
    auto [cpu, gpu] = pair_of(m, train_cfg(16), data);
    const std::vector<float> want_mu = cpu->encode_means(*data, 5, 93);
    const std::vector<float> got_mu = gpu->encode_means(*data, 5, 93);
    ASSERT_EQ(got_mu.size(), want_mu.size()) << what;
    for (float v : got_mu) ASSERT_TRUE(std::isfinite(v)) << what;
    EXPECT_LE(test::rel_norm_error(got_mu, want_mu), 1e-5) << what;

    const std::vector<float> z = test::normal_values<float>(static_cast<std::size_t>(90) * m.latent, 65);
    const std::vector<float> want = cpu->decode_means(z);
    const std::vector<float> got = gpu->decode_means(z);
    ASSERT_EQ(got.size(), want.size()) << what;
    for (float v : got) ASSERT_TRUE(std::isfinite(v)) << what;
    EXPECT_LE(test::rel_norm_error(got, want), 1e-5) << what;
  }
}

// The pictures between training steps change nothing the training sees.
TEST_F(CudaInference, PictureMeansLeaveTrainingAlone) {
  const auto data = test::synthetic(150, 61, 66);
  expect_training_unaffected(model61(Activation::relu, Likelihood::bernoulli, 2), train_cfg(32), data, 6, 2,
                             [&](Backend& gpu) { gpu.decode_means(gpu.encode_means(*data, 0, 40)); });
}

// ---- compute_gradient ------------------------------------------------------------------------

TEST_F(CudaInference, ComputeGradientMatchesTheCpu) {
  const auto data = test::synthetic(100, 61, 62);
  struct Case {
    Objective objective;
    Estimator estimator;
  };
  for (const Case& c : {Case{Objective::elbo, Estimator::reparam}, Case{Objective::elbo, Estimator::score},
                        Case{Objective::iwae, Estimator::reparam}}) {
    const ModelConfig m = model61(Activation::tanh, Likelihood::gaussian, 2, true);
    TrainConfig t = train_cfg(37);
    t.objective = c.objective;
    t.iw_k = 3;
    t.kl_warmup_steps = 10;  // beta at step 5 is 0.5: compute_gradient takes the step's scalars
    const std::string what = std::string(to_string(c.objective)) + ", " + to_string(c.estimator);
    auto [cpu, gpu] = pair_of(m, t, data);
    const Batches batches(*data, t.batch, t.seed, 1);
    const LossSums want = cpu->compute_gradient(batches.list[0], 5, c.estimator);
    const LossSums got = gpu->compute_gradient(batches.list[0], 5, c.estimator);
    expect_sums_close(got, want, 1e-5, what);
    const auto gg = gpu->gradients(), cg = cpu->gradients();
    for (const auto& tv : gpu->layout().tensors())
      EXPECT_LE(test::rel_norm_error(test::tensor_of(gg, tv), test::tensor_of(cg, tv)),
                c.objective == Objective::iwae ? 1e-4 : 1e-5)
          << tv.name << ", " << what;
    // Another noise step, another gradient.
    gpu->compute_gradient(batches.list[0], 6, c.estimator);
    EXPECT_FALSE(test::bit_equal(gpu->gradients(), gg)) << what;
  }
}

// compute_gradient between training steps leaves the parameters, the optimizer state, the
// running sums and the health alone: the run continues bit for bit as without it.
TEST_F(CudaInference, ComputeGradientLeavesTrainingAlone) {
  const auto data = test::synthetic(150, 61, 63);
  const ModelConfig m = model61(Activation::relu, Likelihood::bernoulli, 1);
  for (bool streamed : {false, true}) {
    TrainConfig t = train_cfg(32);
    t.optimizer.kind = Optimizer::sgd;
    t.schedule = Schedule::alternating;
    t.stream_data = streamed;
    const Batches batches(*data, t.batch, t.seed, 6);
    auto a = make(Device::cuda, m, t), b = make(Device::cuda, m, t);
    for (auto* g : {a.get(), b.get()}) {
      g->set_parameters(init_parameters(g->layout(), m, t.seed));
      g->set_train_data(data);
      g->train_step(batches.list[0]);
      g->train_step(batches.list[1]);
    }
    const std::string what = streamed ? "streamed" : "resident";
    a->compute_gradient(batches.list[4], 77, Estimator::score);
    a->compute_gradient(batches.list[5], 78, Estimator::reparam);
    EXPECT_TRUE(test::bit_equal(a->parameters(), b->parameters())) << what;
    const OptimizerState sa = a->optimizer_state(), sb = b->optimizer_state();
    EXPECT_TRUE(test::bit_equal(sa.m, sb.m)) << what;
    EXPECT_TRUE(test::bit_equal(sa.v, sb.v)) << what;
    EXPECT_EQ(sa.step, sb.step) << what;
    EXPECT_EQ(sa.step_decoder, sb.step_decoder) << what;
    EXPECT_EQ(a->health().bad_steps, 0) << what;
    for (int i = 2; i < 4; ++i) {
      a->train_step(batches.list[static_cast<std::size_t>(i)]);
      b->train_step(batches.list[static_cast<std::size_t>(i)]);
    }
    const LossSums la = a->take_train_sums(), lb = b->take_train_sums();
    EXPECT_EQ(la.count, 4 * 32) << "four training steps, nothing from compute_gradient, " << what;
    EXPECT_EQ(std::memcmp(&la.loss, &lb.loss, sizeof(double)), 0) << what;
    EXPECT_TRUE(test::bit_equal(a->parameters(), b->parameters())) << what;
  }
}

// ---- resume and determinism ------------------------------------------------------------------

TEST_F(CudaInference, ResumingAlternatingNonAdamRunsIsBitIdentical) {
  const auto data = test::synthetic(150, 61, 64);
  const ModelConfig m = model61(Activation::tanh, Likelihood::bernoulli, 1);
  for (Optimizer kind : {Optimizer::rmsprop, Optimizer::sgd}) {
    TrainConfig t = train_cfg(32);
    t.optimizer.kind = kind;
    t.optimizer.schedule = LrSchedule::cosine;
    t.epochs = 4;
    t.schedule = Schedule::alternating;
    t.e_steps = 2;
    t.m_steps = 1;
    const Batches batches(*data, t.batch, t.seed, 20);
    auto whole = make(Device::cuda, m, t);
    whole->set_parameters(init_parameters(whole->layout(), m, t.seed));
    whole->set_train_data(data);
    std::vector<double> a, b;
    std::vector<float> ckpt_params;
    OptimizerState ckpt_opt;
    for (std::size_t i = 0; i < batches.list.size(); ++i) {
      if (i == 10) {
        ckpt_params = whole->parameters();
        ckpt_opt = whole->optimizer_state();
      }
      whole->train_step(batches.list[i]);
      a.push_back(whole->take_train_sums().loss);
    }
    std::int64_t e = 0;
    for (std::int64_t s = 0; s < 10; ++s) e += s % 3 < 2;
    EXPECT_EQ(ckpt_opt.step, e) << to_string(kind);
    EXPECT_EQ(ckpt_opt.step_decoder, 10 - e) << to_string(kind);
    auto resumed = make(Device::cuda, m, t);
    resumed->set_parameters(ckpt_params);
    resumed->set_optimizer_state(ckpt_opt);
    resumed->set_train_data(data);
    for (std::size_t i = 10; i < batches.list.size(); ++i) {
      resumed->train_step(batches.list[i]);
      b.push_back(resumed->take_train_sums().loss);
    }
    EXPECT_TRUE(test::bit_equal(std::vector<double>(a.begin() + 10, a.end()), b)) << to_string(kind);
    EXPECT_TRUE(test::bit_equal(resumed->parameters(), whole->parameters())) << to_string(kind);
    const OptimizerState sr = resumed->optimizer_state(), sw = whole->optimizer_state();
    EXPECT_TRUE(test::bit_equal(sr.m, sw.m)) << to_string(kind);
    EXPECT_TRUE(test::bit_equal(sr.v, sw.v)) << to_string(kind);
    EXPECT_EQ(sr.step, sw.step) << to_string(kind);
    EXPECT_EQ(sr.step_decoder, sw.step_decoder) << to_string(kind);
  }
}

TEST_F(CudaInference, SameSeedGivesBitIdenticalRunsOnEveryNewPath) {
  const auto data = test::synthetic(150, 61, 65);
  struct Case {
    std::string name;
    ModelConfig model;
    TrainConfig train;
  };
  std::vector<Case> cases;
  {
    TrainConfig t = iwae_cfg(32, 3);
    t.optimizer.kind = Optimizer::adamw;
    t.optimizer.schedule = LrSchedule::cosine;
    t.epochs = 6;
    t.schedule = Schedule::alternating;
    cases.push_back({"iwae, adamw, cosine, alternating", model61(Activation::relu, Likelihood::bernoulli, 1), t});
  }
  {
    TrainConfig t = train_cfg(32);
    t.estimator = Estimator::score;
    t.optimizer.kind = Optimizer::sgd;
    t.kl_warmup_steps = 15;
    t.binarize = Binarize::dynamic;
    cases.push_back({"score, sgd, warm-up, binarized", model61(Activation::tanh, Likelihood::bernoulli, 2), t});
  }
  for (Case& c : cases) {
    const RunResult a = run(Device::cuda, c.model, c.train, data, 30);
    const RunResult b = run(Device::cuda, c.model, c.train, data, 30);
    expect_finite(a.losses, c.name);
    EXPECT_TRUE(test::bit_equal(a.losses, b.losses)) << c.name;
    EXPECT_TRUE(test::bit_equal(a.params, b.params)) << c.name;
    EXPECT_TRUE(test::bit_equal(a.optimizer.m, b.optimizer.m)) << c.name;
    c.train.seed += 1;
    const RunResult other = run(Device::cuda, c.model, c.train, data, 30);
    EXPECT_NE(a.losses, other.losses) << "a different seed must give a different run, " << c.name;
  }
}

// ---- the cuBLASLt epilogue option ------------------------------------------------------------

// CudaBackendOptions::lt_bias_relu: the same training, ReLU layers through cuBLASLt's
// bias + ReLU epilogue. Another GEMM algorithm rounds differently: losses track the
// default path to 1e-4 over 20 steps; with the option, graphs equal direct launches and
// the same seed gives the same bits.
TEST_F(CudaInference, LtEpilogueOptionTrainsLikeTheDefaultPath) {
  // Widths that are multiples of 4 (D 64, hidden 24, Z 12): leading dimensions cuBLASLt's
  // kernels take (it may refuse odd ones; the backend then falls back per shape).
  const auto data = test::synthetic(150, 64, 66);
  ModelConfig m = test::small_model(64, Activation::relu, Likelihood::bernoulli, 2);
  m.latent = 12;
  const TrainConfig t = train_cfg(32);
  gpu::CudaBackendOptions lt;
  lt.lt_bias_relu = true;
  gpu::CudaBackendOptions lt_direct = lt;
  lt_direct.use_graphs = false;
  const RunResult plain = run(Device::cuda, m, t, data, 20);
  const RunResult fused = run(Device::cuda, m, t, data, 20, &lt);
  const RunResult again = run(Device::cuda, m, t, data, 20, &lt);
  const RunResult direct = run(Device::cuda, m, t, data, 20, &lt_direct);
  expect_finite(fused.losses, "cuBLASLt epilogue");
  // The option is in use: of the ReLU layers' 8 shapes (encoder 64->24 and decoder
  // 12->24 at batches of 32 and 22 and evaluation batches of 37 and 2, L = 2 rows per item
  // in the decoder), at least the 4 training shapes run through cuBLASLt.
  EXPECT_GE(fused.stats.lt_plans, 4);
  EXPECT_LE(fused.stats.lt_plans, 8);
  EXPECT_EQ(plain.stats.lt_plans, 0);
  EXPECT_TRUE(test::all_close(fused.losses, plain.losses, 0, 1e-4, "cuBLASLt epilogue vs GEMM + bias_act"));
  EXPECT_NEAR(fused.eval.loss, plain.eval.loss, 1e-4 * std::fabs(plain.eval.loss));
  EXPECT_TRUE(test::bit_equal(fused.losses, again.losses));
  EXPECT_TRUE(test::bit_equal(fused.params, again.params));
  EXPECT_TRUE(test::bit_equal(fused.losses, direct.losses));
  EXPECT_TRUE(test::bit_equal(fused.params, direct.params));
}

TEST_F(CudaInference, LtEpilogueOptionRunsWithOddShapesAndUnalignedWeights) {
  // D 61, hidden 24, Z 13: decoder.0.weight starts 64-byte but not 256-byte aligned, and the
  // leading dimensions are odd. cuBLASLt is told the real alignments; where it has no
  // algorithm the backend falls back to GEMM + bias_act. Either way the run must match.
  const auto data = test::synthetic(150, 61, 67);
  const ModelConfig m = model61(Activation::relu, Likelihood::bernoulli, 2);
  const TrainConfig t = train_cfg(32);
  gpu::CudaBackendOptions lt;
  lt.lt_bias_relu = true;
  const RunResult plain = run(Device::cuda, m, t, data, 20);
  const RunResult fused = run(Device::cuda, m, t, data, 20, &lt);
  expect_finite(fused.losses, "cuBLASLt epilogue, odd shapes");
  EXPECT_TRUE(test::all_close(fused.losses, plain.losses, 0, 1e-4, "cuBLASLt epilogue vs GEMM + bias_act, odd shapes"));
}

}  // namespace
}  // namespace vae
