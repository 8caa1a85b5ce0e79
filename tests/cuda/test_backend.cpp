// The CUDA backend end to end against the CPU backend (the oracle): one step, 200 steps,
// fresh noise at every graph replay, noise-block boundaries, streamed vs resident data,
// graph vs direct launches, determinism, dynamic binarization, evaluation, resuming from
// a checkpoint, and the errors a caller can provoke.
//
// Tolerances: one step 1e-5 relative (loss, and each parameter / gradient tensor in norm);
// 200 steps 1e-3 relative per step loss (FP32 rounding differences grow through Adam).
// GPU-against-GPU comparisons (streamed vs resident, graphs vs direct, same seed twice,
// resume) are bit for bit.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>

#include "gpu_test_util.h"
#include "rng.h"

namespace vae {
namespace {

using test::expect_error;
using test::expect_finite;
using test::GpuTest;
using test::make;
using test::model61;
using test::run;
using test::RunResult;
using test::train_cfg;

// ---- one step --------------------------------------------------------------------------------

class CudaBackend : public GpuTest {};

TEST_F(CudaBackend, OneStepMatchesTheCpu) {
  struct Case {
    Activation act;
    Likelihood lik;
    int L;
    bool learned;
    bool hidden;
    bool log1p = false;
    bool library = false;  // --library-size
    bool zi_item = false;  // --zero-inflation item
  };
  const std::vector<Case> cases = {{Activation::relu, Likelihood::bernoulli, 1, false, true},
                                   {Activation::tanh, Likelihood::gaussian, 2, true, true},
                                   {Activation::softplus, Likelihood::gaussian, 3, false, true},
                                   {Activation::leaky_relu, Likelihood::bernoulli, 2, false, false},
                                   {Activation::tanh, Likelihood::poisson, 2, false, true},  // uint8: counts 20..235
                                   {Activation::relu, Likelihood::poisson, 1, false, true, true},
                                   {Activation::softplus, Likelihood::poisson, 2, false, false, true},
                                   {Activation::tanh, Likelihood::negative_binomial, 2, false, true, true},
                                   {Activation::relu, Likelihood::zinb, 3, false, true, true},
                                   {Activation::tanh, Likelihood::poisson, 2, false, true, true, true},
                                   {Activation::softplus, Likelihood::zinb, 2, false, false, true, true},
                                   {Activation::tanh, Likelihood::zinb, 2, false, true, true, false, true}};
  const auto data = test::synthetic(100, 61, 31);
  for (const auto& c : cases) {
    ModelConfig m = model61(c.act, c.lik, c.L, c.learned);
    if (!c.hidden) m.encoder_hidden = m.decoder_hidden = {};
    m.log1p_input = c.log1p;
    m.library_size = c.library;
    if (c.zi_item) m.zero_inflation = ZeroInflation::item;
    const TrainConfig t = train_cfg(37);
    const std::string what = std::string(to_string(c.act)) + "/" + to_string(c.lik) + (c.learned ? " learned" : "") +
                             " L=" + std::to_string(c.L) + (c.hidden ? "" : " no hidden layers") +
                             (c.log1p ? " log1p" : "") + (c.library ? " library" : "") + (c.zi_item ? " zi per item" : "");
    std::vector<float> init;
    auto [cpu, gpu] = test::pair_of(m, t, data, &init);
    BatchStream stream(data->count, t.batch, t.seed);
    Batch batch;
    ASSERT_TRUE(stream.next(batch));
    ASSERT_TRUE(stream.next(batch));  // step 1: a noise offset other than 0
    cpu->train_step(batch);
    gpu->train_step(batch);
    const LossSums want = cpu->take_train_sums(), got = gpu->take_train_sums();
    EXPECT_EQ(got.count, want.count) << what;
    EXPECT_NEAR(got.loss, want.loss, 1e-5 * std::fabs(want.loss)) << what;
    EXPECT_NEAR(got.recon, want.recon, 1e-5 * std::fabs(want.recon)) << what;
    EXPECT_NEAR(got.kl, want.kl, 1e-5 * std::fabs(want.kl) + 1e-6) << what;

    const auto gp = gpu->parameters(), cp = cpu->parameters();
    const auto gg = gpu->gradients(), cg = cpu->gradients();
    const OptimizerState gs = gpu->optimizer_state(), cs = cpu->optimizer_state();
    EXPECT_EQ(gs.step, 1) << what;
    EXPECT_EQ(gs.step, cs.step) << what;
    for (const auto& tv : gpu->layout().tensors()) {
      const auto p = test::tensor_of(gp, tv), g = test::tensor_of(gg, tv);
      EXPECT_FALSE(test::any_nan(p) || test::any_nan(g)) << tv.name << ", " << what;
      EXPECT_NE(p, test::tensor_of(init, tv)) << tv.name << " did not move, " << what;
      EXPECT_LE(test::rel_norm_error(p, test::tensor_of(cp, tv)), 1e-5) << "parameters " << tv.name << ", " << what;
      EXPECT_LE(test::rel_norm_error(g, test::tensor_of(cg, tv)), 1e-5) << "gradient " << tv.name << ", " << what;
      EXPECT_LE(test::rel_norm_error(test::tensor_of(gs.m, tv), test::tensor_of(cs.m, tv)), 1e-5)
          << "Adam m " << tv.name << ", " << what;
      EXPECT_LE(test::rel_norm_error(test::tensor_of(gs.v, tv), test::tensor_of(cs.v, tv)), 3e-5)
          << "Adam v " << tv.name << ", " << what;
    }
    // The decoder's means at the same parameters (the first D outputs of each row).
    gpu->set_parameters(cp);
    const std::vector<float> z = test::normal_values<float>(5 * static_cast<std::size_t>(m.latent), 9);
    EXPECT_LE(test::rel_norm_error(gpu->decode_means(z), cpu->decode_means(z)), 1e-5) << "decoder means, " << what;
  }
}

// A conditional model (classes one-hot, or covariates, appended to the encoder's and the
// decoder's inputs): one step, 30 steps, the evaluation, the log-likelihood estimate, encode
// and decode_means, against the CPU.
TEST_F(CudaBackend, ConditionalModelMatchesTheCpu) {
  struct Case {
    ConditionKind kind;
    Likelihood lik;
    bool hidden, log1p, as_float;
  };
  const std::vector<Case> cases = {{ConditionKind::classes, Likelihood::bernoulli, true, false, false},  // uint8 view
                                   {ConditionKind::classes, Likelihood::bernoulli, false, false, true},
                                   {ConditionKind::covariates, Likelihood::gaussian, true, false, true},
                                   {ConditionKind::covariates, Likelihood::poisson, false, true, false},
                                   {ConditionKind::classes, Likelihood::negative_binomial, true, true, false}};
  // (the last case also with --library-size, below)
  for (const auto& c : cases) {
    auto data = test::synthetic(90, 61, 41, c.as_float);
    const std::int64_t N = data->count;
    if (c.kind == ConditionKind::classes) {
      std::vector<std::int64_t> labels(static_cast<std::size_t>(N));
      for (std::int64_t i = 0; i < N; ++i) labels[static_cast<std::size_t>(i)] = (i * 7) % 5;
      attach_condition(*data, condition_from_labels(labels, 0, "labels"));
    } else {
      std::vector<float> cov = test::uniform_values<float>(static_cast<std::size_t>(N) * 3, -2.0, 2.0, 42);
      attach_condition(*data, condition_from_covariates(cov, N, 3, "covariates"));
    }
    ModelConfig m = model61(Activation::tanh, c.lik, 2);
    if (!c.hidden) m.encoder_hidden = m.decoder_hidden = {};
    m.log1p_input = c.log1p;
    m.library_size = c.lik == Likelihood::negative_binomial;
    m.condition = c.kind;
    m.condition_dim = data->condition.dim;
    const TrainConfig t = train_cfg(29);
    const std::string what = std::string(to_string(c.kind)) + "/" + to_string(c.lik) + (c.hidden ? "" : " linear") +
                             (c.log1p ? " log1p" : "") + (c.as_float ? " float data" : " uint8 data");
    auto [cpu, gpu] = test::pair_of(m, t, data);
    BatchStream stream(N, t.batch, t.seed);
    Batch batch;
    for (int k = 0; k < 30; ++k) {
      stream.next_rolling(batch);
      cpu->train_step(batch);
      gpu->train_step(batch);
      const LossSums want = cpu->take_train_sums(), got = gpu->take_train_sums();
      ASSERT_TRUE(std::isfinite(got.loss)) << what << ", step " << k;
      EXPECT_NEAR(got.loss, want.loss, (k == 0 ? 1e-5 : 1e-3) * std::fabs(want.loss)) << what << ", step " << k;
      if (k > 0) continue;
      for (const auto& tv : gpu->layout().tensors()) {
        const double e = test::rel_norm_error(test::tensor_of(gpu->gradients(), tv), test::tensor_of(cpu->gradients(), tv));
        EXPECT_LE(e, 1e-5) << "gradient " << tv.name << ", " << what;
      }
    }
    const LossSums ew = cpu->evaluate(*data), eg = gpu->evaluate(*data);
    EXPECT_NEAR(eg.loss, ew.loss, 1e-3 * std::fabs(ew.loss)) << what;
    const LikelihoodSums lw = cpu->estimate_log_likelihood(*data, 3), lg = gpu->estimate_log_likelihood(*data, 3);
    EXPECT_NEAR(lg.iwae, lw.iwae, 1e-3 * std::fabs(lw.iwae)) << what;
    EXPECT_NEAR(lg.prior, lw.prior, 1e-3 * std::fabs(lw.prior)) << what;
    gpu->set_parameters(cpu->parameters());  // the same model: encode and decode to float accuracy
    const auto hw = cpu->encode(*data, 5, 20), hg = gpu->encode(*data, 5, 20);
    EXPECT_LE(test::rel_norm_error(hg, hw), 1e-5) << "encode, " << what;
    const Condition cond = data->condition.rows(5, 20);
    const auto mw = cpu->decode_means(cpu->encode_means(*data, 5, 20), cond);
    const auto mg = gpu->decode_means(gpu->encode_means(*data, 5, 20), cond);
    EXPECT_LE(test::rel_norm_error(mg, mw), 1e-5) << "decode_means, " << what;
    // The condition matters: the same codes under other conditions decode otherwise.
    const auto other = gpu->decode_means(gpu->encode_means(*data, 5, 20), data->condition.rows(41, 20));  // other classes: labels repeat every 5 items
    EXPECT_GT(test::rel_norm_error(other, mg), 1e-3) << what;
  }
}

// ---- many steps ------------------------------------------------------------------------------

TEST_F(CudaBackend, TwoHundredStepsTrackTheCpu) {
  const auto data = test::synthetic(150, 61, 32);  // batch 32: four full batches and one of 22
  for (int L : {1, 2}) {
    const ModelConfig m = model61(L == 1 ? Activation::relu : Activation::tanh, Likelihood::bernoulli, L);
    const TrainConfig t = train_cfg(32);
    const RunResult cpu = run(Device::cpu, m, t, data, 200);
    const RunResult gpu = run(Device::cuda, m, t, data, 200);
    expect_finite(gpu.losses, "GPU");
    EXPECT_TRUE(test::all_close(gpu.losses, cpu.losses, 0, 1e-3, "step losses, L=" + std::to_string(L)));
    EXPECT_NEAR(gpu.eval.loss, cpu.eval.loss, 1e-3 * std::fabs(cpu.eval.loss));
    EXPECT_LT(gpu.losses.back(), 0.8 * gpu.losses.front()) << "training lowered the loss";
    EXPECT_EQ(gpu.stats.graphs, 2) << "one graph for batches of 32, one for the last batch of 22";
  }
}

// ---- fresh noise at every replay (the graph trap) --------------------------------------------

TEST_F(CudaBackend, EveryStepDrawsFreshNoise) {
  const auto data = test::synthetic(100, 61, 33);
  const ModelConfig m = model61(Activation::relu, Likelihood::bernoulli, 2);
  const TrainConfig t = train_cfg(37);
  auto cpu = make(Device::cpu, m, t);
  auto gpu = make(Device::cuda, m, t);
  const auto init = init_parameters(cpu->layout(), m, t.seed);
  std::vector<std::uint32_t> idx(37);
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::uint32_t>(2 * i);  // 0..72 of 100 items
  for (auto* b : {cpu.get(), gpu.get()}) b->set_train_data(data);
  // The same items and the same parameters at steps 5, 6 and 5 again (after a first step
  // that captures the graph): only the noise differs between steps 5 and 6.
  std::vector<double> g, c;
  for (std::int64_t step : {0, 5, 6, 5, 9}) {
    const Batch batch{idx.data(), static_cast<int>(idx.size()), 0, step};
    for (auto* b : {cpu.get(), gpu.get()}) {
      b->set_parameters(init);
      b->train_step(batch);
    }
    g.push_back(gpu->take_train_sums().loss);
    c.push_back(cpu->take_train_sums().loss);
  }
  EXPECT_EQ(gpu::cuda_backend_stats(*gpu).graphs, 1) << "steps after the first replay the captured graph";
  EXPECT_NE(g[1], g[2]) << "steps 5 and 6 replayed the same noise";
  EXPECT_NE(g[2], g[4]) << "steps 6 and 9 replayed the same noise";
  EXPECT_EQ(std::memcmp(&g[1], &g[3], sizeof(double)), 0) << "step 5 twice gave " << g[1] << " and " << g[3];
  EXPECT_TRUE(test::all_close(g, c, 0, 1e-5, "GPU vs CPU loss at steps 0, 5, 6, 5, 9"));
}

// Steps whose noise crosses block boundaries (3 steps per block), jumps far ahead and back.
TEST_F(CudaBackend, NoiseBlockBoundariesGiveTheSameNoise) {
  const auto data = test::synthetic(100, 61, 34);
  const ModelConfig m = model61(Activation::relu, Likelihood::bernoulli, 2);
  TrainConfig t = train_cfg(37);
  t.binarize = Binarize::dynamic;
  const RngPlan plan = RngPlan::make(t.seed, m, t.batch);
  gpu::CudaBackendOptions small;
  small.noise_block_values = 3 * plan.eps_stride;
  auto cpu = make(Device::cpu, m, t);
  auto gpu_small = make(Device::cuda, m, t, &small);
  auto gpu_big = make(Device::cuda, m, t);
  const auto init = init_parameters(cpu->layout(), m, t.seed);
  std::vector<std::uint32_t> idx(37);
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::uint32_t>(99 - 2 * i);
  std::vector<Backend*> all = {cpu.get(), gpu_small.get(), gpu_big.get()};
  for (auto* b : all) b->set_train_data(data);
  std::vector<double> loss[3];
  for (std::int64_t step : {0, 1, 2, 3, 4, 7, 6, 1000003, 2, 5}) {
    const Batch batch{idx.data(), static_cast<int>(idx.size()), 0, step};
    for (std::size_t k = 0; k < all.size(); ++k) {
      all[k]->set_parameters(init);
      all[k]->train_step(batch);
      loss[k].push_back(all[k]->take_train_sums().loss);
    }
  }
  const auto stats = gpu::cuda_backend_stats(*gpu_small);
  EXPECT_EQ(stats.eps_steps_per_block, 3);
  EXPECT_GE(stats.eps_refills, 7) << "the step sequence must leave the 3-step blocks repeatedly";
  EXPECT_TRUE(test::bit_equal(loss[1], loss[2])) << "3-step noise blocks and large blocks gave different numbers";
  EXPECT_TRUE(test::all_close(loss[1], loss[0], 0, 1e-5, "GPU (3-step blocks) vs CPU"));
}

// ---- data paths, graphs, determinism -------------------------------------------------------

TEST_F(CudaBackend, StreamedAndResidentDataAreBitIdentical) {
  for (bool as_float : {false, true}) {
    const auto data = test::synthetic(150, 61, 35, as_float);
    const ModelConfig m = model61(Activation::leaky_relu, Likelihood::bernoulli, 2);
    TrainConfig t = train_cfg(32);
    t.binarize = Binarize::dynamic;
    const RunResult resident = run(Device::cuda, m, t, data, 23);  // four epochs and a bit: every stream slot reused
    t.stream_data = true;
    const RunResult streamed = run(Device::cuda, m, t, data, 23);
    EXPECT_FALSE(resident.stats.streamed);
    EXPECT_TRUE(streamed.stats.streamed);
    expect_finite(resident.losses, "resident");
    EXPECT_TRUE(test::bit_equal(streamed.losses, resident.losses)) << (as_float ? "float" : "uint8") << " data: losses";
    EXPECT_TRUE(test::bit_equal(streamed.params, resident.params)) << (as_float ? "float" : "uint8") << " data: params";
    EXPECT_EQ(streamed.eval.loss, resident.eval.loss);
  }
}

// A memory-mapped file (--mmap), resident and streamed (the stream gathers its rows from the
// map): the same run, bit for bit, as the file read into memory.
TEST_F(CudaBackend, MappedDataTrainAsReadData) {
  test::TempDir dir;
  for (bool as_float : {false, true}) {
    const auto data = test::synthetic(150, 61, 38, as_float);
    const std::string path = dir.file(as_float ? "x.npy" : "x.idx");
    {
      std::ofstream f(path, std::ios::binary);
      if (as_float) {
        f << test::npy_file("<f4", "(150, 61)", data->f32.data(), data->f32.size() * sizeof(float));
      } else {
        const unsigned char head[16] = {0, 0, 8, 2, 0, 0, 0, 150, 0, 0, 0, 61};
        f.write(reinterpret_cast<const char*>(head), 12);
        f.write(reinterpret_cast<const char*>(data->u8.data()), static_cast<std::streamsize>(data->u8.size()));
      }
    }
    auto mapped = std::make_shared<Dataset>(read_dataset(path, DataAccess::map));
    ASSERT_TRUE(mapped->is_mapped());
    const ModelConfig m = model61(Activation::relu, Likelihood::bernoulli, 1);
    TrainConfig t = train_cfg(32);
    const RunResult read = run(Device::cuda, m, t, data, 12);
    for (bool stream : {false, true}) {
      t.stream_data = stream;
      const RunResult got = run(Device::cuda, m, t, mapped, 12);
      EXPECT_EQ(got.stats.streamed, stream);
      EXPECT_TRUE(test::bit_equal(got.losses, read.losses)) << (as_float ? "float" : "uint8") << (stream ? " streamed" : "");
      EXPECT_TRUE(test::bit_equal(got.params, read.params)) << (as_float ? "float" : "uint8") << (stream ? " streamed" : "");
    }
  }
}

TEST_F(CudaBackend, GraphReplaysEqualDirectLaunches) {
  const auto data = test::synthetic(150, 61, 36);
  const ModelConfig m = model61(Activation::softplus, Likelihood::gaussian, 2, true);
  const TrainConfig t = train_cfg(32);
  gpu::CudaBackendOptions direct;
  direct.use_graphs = false;
  const RunResult graphed = run(Device::cuda, m, t, data, 17);
  const RunResult plain = run(Device::cuda, m, t, data, 17, &direct);
  EXPECT_EQ(graphed.stats.graphs, 2);
  EXPECT_EQ(plain.stats.graphs, 0);
  expect_finite(graphed.losses, "graphs");
  EXPECT_TRUE(test::bit_equal(graphed.losses, plain.losses));
  EXPECT_TRUE(test::bit_equal(graphed.params, plain.params));
}

// Data parallel with one rank, through NCCL in the step graph and through the host fallback:
// the same steps, graphs and evaluation as the plain run, bit for bit (a share of 1 and a sum
// over one rank change nothing). Batches of 23 and a last one of 5: two step shapes.
void expect_one_rank_equals_the_plain_run(gpu::GradientSum sum, const char* what, int graphs) {
  const auto data = test::synthetic(97, 61, 38);
  const ModelConfig m = model61(Activation::relu, Likelihood::bernoulli, 2);
  TrainConfig t = train_cfg(23, 5);
  t.binarize = Binarize::dynamic;
  gpu::CudaBackendOptions o;
  o.gradient_sum = sum;
  test::OneRank one;
  const RunResult plain = run(Device::cuda, m, t, data, 12);
  const RunResult ranked = run(Device::cuda, m, t, data, 12, &o, -1, &one);
  expect_finite(plain.losses, "plain");
  EXPECT_EQ(ranked.stats.graphs, graphs) << what;
  EXPECT_TRUE(test::bit_equal(ranked.losses, plain.losses)) << what;
  EXPECT_TRUE(test::bit_equal(ranked.params, plain.params)) << what;
  EXPECT_EQ(std::memcmp(&ranked.eval.loss, &plain.eval.loss, sizeof(double)), 0) << what;
}

TEST_F(CudaBackend, OneRankThroughNcclEqualsThePlainRun) {
  std::string why;
  if (!gpu::nccl_loadable(&why)) GTEST_SKIP() << why;
  test::OneRank one;
  auto b = make(Device::cuda, model61(), train_cfg(8), nullptr);
  gpu::CudaBackendOptions o;
  o.gradient_sum = gpu::GradientSum::nccl;
  auto forced = make(Device::cuda, model61(), train_cfg(8), &o);
  forced->set_communicator(&one);
  EXPECT_EQ(forced->gradient_sum().rfind("NCCL 2.", 0), 0u) << forced->gradient_sum();
  b->set_communicator(&one);  // automatic: one rank has its GPU
  EXPECT_EQ(b->gradient_sum(), forced->gradient_sum());
  expect_one_rank_equals_the_plain_run(gpu::GradientSum::nccl, "NCCL", 2);
}

TEST_F(CudaBackend, OneRankThroughTheHostSumEqualsThePlainRun) {
  test::OneRank one;
  gpu::CudaBackendOptions o;
  o.gradient_sum = gpu::GradientSum::host;
  auto b = make(Device::cuda, model61(), train_cfg(8), &o);
  EXPECT_EQ(b->gradient_sum(), "");
  b->set_communicator(&one);
  EXPECT_EQ(b->gradient_sum(), "MPI_Allreduce through host memory");
  expect_one_rank_equals_the_plain_run(gpu::GradientSum::host, "host", 0);  // no graph: the sum runs on the host
}

TEST_F(CudaBackend, SameSeedGivesBitIdenticalRuns) {
  const auto data = test::synthetic(150, 61, 37);
  for (Binarize bin : {Binarize::none, Binarize::dynamic}) {
    const ModelConfig m = model61(Activation::relu, Likelihood::bernoulli, 3);
    TrainConfig t = train_cfg(32, 5);
    t.binarize = bin;
    const RunResult a = run(Device::cuda, m, t, data, 30);
    const RunResult b = run(Device::cuda, m, t, data, 30);
    expect_finite(a.losses, "run a");
    EXPECT_TRUE(test::bit_equal(a.losses, b.losses)) << to_string(bin);
    EXPECT_TRUE(test::bit_equal(a.params, b.params)) << to_string(bin);
    EXPECT_EQ(std::memcmp(&a.eval.loss, &b.eval.loss, sizeof(double)), 0);
    t.seed = 6;
    const RunResult c = run(Device::cuda, m, t, data, 30);
    EXPECT_NE(a.losses, c.losses) << "a different seed must give a different run";
  }
}

TEST_F(CudaBackend, ResumingFromACheckpointIsBitIdentical) {
  const auto data = test::synthetic(150, 61, 38);
  const ModelConfig m = model61(Activation::tanh, Likelihood::bernoulli, 1);
  const TrainConfig t = train_cfg(32);
  auto whole = make(Device::cuda, m, t);
  whole->set_parameters(init_parameters(whole->layout(), m, t.seed));
  whole->set_train_data(data);
  std::vector<Batch> batches;
  std::vector<std::vector<std::uint32_t>> owned;
  BatchStream stream(data->count, t.batch, t.seed);
  for (int e = 0; batches.size() < 20; ++e) {
    stream.start_epoch(e);
    Batch b;
    while (stream.next(b) && batches.size() < 20) {
      owned.emplace_back(b.indices, b.indices + b.size);
      batches.push_back(b);
    }
  }
  for (std::size_t i = 0; i < batches.size(); ++i) batches[i].indices = owned[i].data();
  std::vector<double> a, b;
  std::vector<float> ckpt_params;
  OptimizerState ckpt_opt;
  for (std::size_t i = 0; i < batches.size(); ++i) {
    if (i == 10) {
      ckpt_params = whole->parameters();
      ckpt_opt = whole->optimizer_state();
    }
    whole->train_step(batches[i]);
    a.push_back(whole->take_train_sums().loss);
  }
  EXPECT_EQ(ckpt_opt.step, 10);
  auto resumed = make(Device::cuda, m, t);
  resumed->set_parameters(ckpt_params);
  resumed->set_optimizer_state(ckpt_opt);
  resumed->set_train_data(data);
  for (std::size_t i = 10; i < batches.size(); ++i) {
    resumed->train_step(batches[i]);
    b.push_back(resumed->take_train_sums().loss);
  }
  EXPECT_TRUE(test::bit_equal(std::vector<double>(a.begin() + 10, a.end()), b));
  EXPECT_TRUE(test::bit_equal(resumed->parameters(), whole->parameters()));
  EXPECT_EQ(resumed->optimizer_state().step, 20);
}

TEST_F(CudaBackend, RestoredSumsContinueTheAccumulation) {
  const auto data = test::synthetic(100, 61, 43);
  const ModelConfig m = model61();
  const TrainConfig t = train_cfg(32);
  std::vector<std::uint32_t> idx(32);
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::uint32_t>(i);
  const Batch batch{idx.data(), 32, 0, 3};
  LossSums got[2];
  LossSums restored;
  restored.loss = 1234.5;
  restored.recon = 1000.25;
  restored.kl = 234.25;
  restored.count = 77;
  for (int k = 0; k < 2; ++k) {
    auto gpu = make(Device::cuda, m, t);
    gpu->set_parameters(init_parameters(gpu->layout(), m, t.seed));
    gpu->set_train_data(data);
    if (k == 1) gpu->restore_train_sums(restored);
    gpu->train_step(batch);
    got[k] = gpu->take_train_sums();
  }
  EXPECT_EQ(got[1].count, restored.count + 32);
  EXPECT_EQ(got[1].loss, restored.loss + got[0].loss);
  EXPECT_EQ(got[1].recon, restored.recon + got[0].recon);
  EXPECT_EQ(got[1].kl, restored.kl + got[0].kl);
}

// The CPU backend's NaN test, on both backends: a step with an infinite weight is dropped,
// counted and named; stop halts, skip carries on; both backends report the same health.
TEST_F(CudaBackend, ANonFiniteStepIsDroppedAsOnTheCpu) {
  const auto data = test::synthetic(64, 61, 44);
  const ModelConfig m = model61();
  for (NanPolicy policy : {NanPolicy::stop, NanPolicy::skip}) {
    TrainConfig t = train_cfg(16);
    t.on_nan = policy;
    StepHealth health[2];
    for (Device d : {Device::cpu, Device::cuda}) {
      auto backend = make(d, m, t);
      const ParamLayout& layout = backend->layout();
      backend->set_train_data(data);
      backend->set_parameters(init_parameters(layout, m, 1));
      BatchStream stream(data->count, t.batch, 1);
      Batch b;
      stream.next(b);
      backend->train_step(b);  // a good step
      const auto after_good = backend->parameters();
      const auto opt_good = backend->optimizer_state();
      auto bad = after_good;
      bad[layout.at("decoder.0.weight").offset + 3] = std::numeric_limits<float>::infinity();
      backend->set_parameters(bad);
      stream.next(b);
      backend->train_step(b);
      const StepHealth h = backend->health();
      const std::string what = std::string(to_string(d)) + ", " + to_string(policy);
      EXPECT_EQ(h.bad_steps, 1) << what;
      EXPECT_EQ(h.first_bad_step, 1) << what;
      EXPECT_EQ(h.halted, policy == NanPolicy::stop) << what;
      EXPECT_TRUE(test::bit_equal(backend->parameters(), bad)) << "a non-finite step must not update, " << what;
      EXPECT_EQ(backend->optimizer_state().step, opt_good.step) << what;
      EXPECT_TRUE(test::bit_equal(backend->optimizer_state().m, opt_good.m)) << what;
      const LossSums sums = backend->take_train_sums();
      EXPECT_EQ(sums.count, 16) << "the bad step adds nothing to the loss sums, " << what;
      EXPECT_TRUE(std::isfinite(sums.loss)) << what;
      backend->set_parameters(after_good);  // healthy again
      stream.next(b);
      backend->train_step(b);
      if (policy == NanPolicy::stop) {
        EXPECT_TRUE(test::bit_equal(backend->parameters(), after_good)) << "a halted backend does nothing, " << what;
        EXPECT_EQ(backend->take_train_sums().count, 0) << what;
      } else {
        EXPECT_FALSE(test::bit_equal(backend->parameters(), after_good)) << "skip carries on, " << what;
        EXPECT_EQ(backend->optimizer_state().step, opt_good.step + 1) << what;
      }
      health[d == Device::cuda] = backend->health();
    }
    EXPECT_EQ(health[1].bad_steps, health[0].bad_steps);
    EXPECT_EQ(health[1].first_bad_step, health[0].first_bad_step);
    EXPECT_EQ(health[1].first_bad_tensor, health[0].first_bad_tensor);
    EXPECT_EQ(health[1].halted, health[0].halted);
  }
}

// ---- binarization and evaluation -------------------------------------------------------------

TEST_F(CudaBackend, DynamicBinarizationTracksTheCpu) {
  const auto data = test::synthetic(150, 61, 39);
  const ModelConfig m = model61(Activation::relu, Likelihood::bernoulli, 1);
  TrainConfig t = train_cfg(32);
  t.binarize = Binarize::dynamic;
  const RunResult cpu = run(Device::cpu, m, t, data, 30);
  const RunResult gpu = run(Device::cuda, m, t, data, 30);
  EXPECT_NEAR(gpu.losses[0], cpu.losses[0], 1e-5 * std::fabs(cpu.losses[0])) << "first step";
  EXPECT_TRUE(test::all_close(gpu.losses, cpu.losses, 0, 1e-3, "step losses with dynamic binarization"));
  // The binarized targets differ from the gray ones, so the first step's loss differs from a
  // run without binarization (by about 7e-4 relative on this data, on the CPU), far more
  // than the 1e-5 the GPU and the CPU may differ by.
  t.binarize = Binarize::none;
  const RunResult gray = run(Device::cuda, m, t, data, 1);
  EXPECT_GT(std::fabs(gray.losses[0] - gpu.losses[0]), 1e-4 * std::fabs(gpu.losses[0]));
}

TEST_F(CudaBackend, EvaluateMatchesTheCpu) {
  for (bool as_float : {false, true}) {
    const auto data = test::synthetic(150, 61, 40, as_float);  // eval batch 37: four of 37 and one of 2
    const ModelConfig m = model61(Activation::tanh, Likelihood::gaussian, 3, true);
    const TrainConfig t = train_cfg(32);
    auto cpu = make(Device::cpu, m, t);
    auto gpu = make(Device::cuda, m, t);
    const auto init = init_parameters(cpu->layout(), m, t.seed);
    cpu->set_parameters(init);
    gpu->set_parameters(init);
    const LossSums want = cpu->evaluate(*data), got = gpu->evaluate(*data), again = gpu->evaluate(*data);
    EXPECT_EQ(got.count, 150);
    EXPECT_NEAR(got.loss, want.loss, 1e-5 * std::fabs(want.loss));
    EXPECT_NEAR(got.recon, want.recon, 1e-5 * std::fabs(want.recon));
    EXPECT_NEAR(got.kl, want.kl, 1e-5 * std::fabs(want.kl) + 1e-6);
    EXPECT_EQ(std::memcmp(&got.loss, &again.loss, sizeof(double)), 0) << "evaluation noise must repeat";
    EXPECT_EQ(gpu::cuda_backend_stats(*gpu).eval_refills, 1) << "five evaluation batches fit one noise block";
  }
}

TEST_F(CudaBackend, StandardizedDataIsScaledAtTheEdgesAsOnTheCpu) {
  ModelConfig m = model61(Activation::tanh, Likelihood::gaussian, 2, true);
  const ModelConfig unscaled = m;  // the same layout; a standardized model refuses unscaled training data
  m.standardize = true;
  const TrainConfig t = train_cfg(16);
  auto scaled = make(Device::cuda, m, t);
  auto plain = make(Device::cuda, unscaled, t);
  const auto init = init_parameters(scaled->layout(), m, t.seed);
  scaled->set_parameters(init);
  plain->set_parameters(init);
  test::expect_scaling_at_the_edges(*scaled, *plain, test::real_valued(53, 61, 11));
}

TEST_F(CudaBackend, EvaluateLeavesTrainingAlone) {
  const auto data = test::synthetic(150, 61, 41);
  const ModelConfig m = model61(Activation::relu, Likelihood::bernoulli, 2);
  const TrainConfig t = train_cfg(32);
  const RunResult plain = run(Device::cuda, m, t, data, 12);
  const RunResult with_eval = run(Device::cuda, m, t, data, 12, nullptr, 5);
  EXPECT_TRUE(test::bit_equal(plain.losses, with_eval.losses));
  EXPECT_TRUE(test::bit_equal(plain.params, with_eval.params));
}

// ---- errors ----------------------------------------------------------------------------------


TEST_F(CudaBackend, RejectsBadInputWithClearErrors) {
  const auto data = test::synthetic(50, 61, 42);
  const ModelConfig m = model61();
  TrainConfig t = train_cfg(16);
  t.precision = Precision::fp64;
  expect_error([&] { make(Device::cuda, m, t); }, "fp32");
  t.precision = Precision::fp32;
  {  // more sample rows than the fused passes' grid can tile: said at construction, before allocating
    ModelConfig many = m;
    many.samples = 600;
    expect_error([&] { make(Device::cuda, many, train_cfg(4096)); }, "the GPU grid allows at most 65535");
  }
  auto gpu = make(Device::cuda, m, t);
  std::vector<std::uint32_t> idx(17, 0);
  expect_error([&] { gpu->train_step(Batch{idx.data(), 16, 0, 0}); }, "set_train_data");
  gpu->set_train_data(data);
  expect_error([&] { gpu->train_step(Batch{idx.data(), 17, 0, 0}); }, "batch of 17");
  idx[3] = 50;
  expect_error([&] { gpu->train_step(Batch{idx.data(), 16, 0, 0}); }, "out of range");
  expect_error([&] { gpu->set_parameters(std::vector<float>(3)); }, "set_parameters");
  expect_error([&] { gpu->set_train_data(test::synthetic(10, 60, 1)); }, "60 features");
  expect_error([&] { gpu->evaluate(*test::synthetic(10, 60, 1)); }, "60 features");
  {  // a dataset a program fills itself: checked as the CPU backend checks it
    auto pixels = std::make_shared<Dataset>(*test::synthetic(10, 61, 2, /*as_float=*/true));
    pixels->f32[61 + 7] = 200.0f;  // 0..255 where the Bernoulli likelihood needs [0, 1]
    expect_error([&] { gpu->set_train_data(pixels); }, "value 200 at item 1, feature 7 is outside [0, 1]");
    auto empty = std::make_shared<Dataset>(*test::synthetic(10, 61, 2, true));
    empty->count = 0;
    empty->f32.clear();
    expect_error([&] { gpu->set_train_data(empty); }, "holds no items");
    auto short_set = std::make_shared<Dataset>(*test::synthetic(10, 61, 2, true));
    short_set->f32.resize(100);
    expect_error([&] { gpu->set_train_data(short_set); }, "f32 holds 100 values");
  }
  // After the errors the backend still trains.
  idx[3] = 4;
  gpu->set_parameters(init_parameters(gpu->layout(), m, 1));
  gpu->train_step(Batch{idx.data(), 16, 0, 0});
  EXPECT_TRUE(std::isfinite(gpu->take_train_sums().loss));
}

// The same bad batch gives the same message on both backends (host/backend_shared.h).
TEST_F(CudaBackend, BadBatchesGiveTheCpuBackendsMessages) {
  const auto data = test::synthetic(50, 61, 43);
  const ModelConfig m = model61();
  const TrainConfig t = train_cfg(16);
  auto cpu = make(Device::cpu, m, t);
  auto gpu = make(Device::cuda, m, t);
  for (auto* b : {cpu.get(), gpu.get()}) b->set_parameters(init_parameters(b->layout(), m, 1));
  const std::vector<std::string> got = test::bad_batch_errors(*gpu, data, t.batch);
  EXPECT_EQ(got, test::bad_batch_messages(50, 16));
  EXPECT_EQ(got, test::bad_batch_errors(*cpu, data, t.batch));
}

TEST_F(CudaBackend, NameSaysDeviceAndArchitecture) {
  auto gpu = make(Device::cuda, model61(), train_cfg(16));
  const std::string name = gpu->name();
  EXPECT_EQ(name.rfind("cuda (", 0), 0u) << name;
  EXPECT_NE(name.find(", sm_"), std::string::npos) << name;
  std::string why;
  EXPECT_TRUE(cuda_usable(&why));
  EXPECT_EQ(resolve_device(Device::automatic, nullptr), Device::cuda);
}

// The benchmark's yardstick: a finite, positive rate on random operands (an exact rate is a
// benchmark's business, not a test's), and a clear error for impossible sizes.
TEST_F(CudaBackend, SgemmRateIsMeasured) {
  const double gflops = measure_sgemm_gflops(Device::cuda, 96, 80, 72);
  EXPECT_TRUE(std::isfinite(gflops) && gflops > 0) << gflops;
  expect_error([] { measure_sgemm_gflops(Device::cuda, 0, 8, 8); }, "sizes must be positive");
}

}  // namespace
}  // namespace vae
