// Randomness layout, the batch stream, determinism, and short training runs end to end.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "cpu_model.h"
#include "rng.h"
#include "test_util.h"
#include "vae/vae.h"

namespace vae {
namespace {

using test::synthetic;

ModelConfig small_model(int dim) {
  ModelConfig m;
  m.input_dim = dim;
  m.encoder_hidden = {24};
  m.decoder_hidden = {24};
  m.latent = 4;
  return m;
}

TEST(Rng, ABlockOfStepsEqualsTheStepsDrawnOneByOne) {
  const std::size_t stride = 2 * 37 * 13;  // batch 37, L 2, Z 13
  const int steps = 6;
  HostPhilox block_rng(123), step_rng(123);
  std::vector<float> block(stride * steps), one(stride);
  block_rng.normal(block.data(), block.size(), 5 * stride);
  for (int t = 0; t < steps; ++t) {
    step_rng.normal(one.data(), stride, (5 + t) * stride);
    ASSERT_EQ(0, std::memcmp(one.data(), block.data() + t * stride, stride * sizeof(float))) << "step " << t;
  }
  // and the numbers look like N(0,1)
  double s = 0, s2 = 0;
  for (float v : block) {
    s += v;
    s2 += double(v) * v;
  }
  EXPECT_NEAR(s / block.size(), 0.0, 0.05);
  EXPECT_NEAR(s2 / block.size(), 1.0, 0.05);
}

TEST(Rng, StepNoiseServesEveryStepFromBlocks) {
  const std::size_t stride = round_up_4(2 * 9 * 5);  // steps start on a Philox counter
  StepNoise noise(77, StepNoise::Kind::normal, stride, 4 * stride);  // 4 steps per block
  StepNoise uniform(78, StepNoise::Kind::uniform, stride, 3 * stride);
  HostPhilox direct(77), direct_u(78);
  std::vector<float> want(stride);
  for (std::int64_t t : {0, 1, 5, 3, 4, 12, 2, 13, 40, 0}) {  // forward, back, across blocks
    direct.normal(want.data(), stride, static_cast<std::uint64_t>(t) * stride);
    ASSERT_EQ(0, std::memcmp(noise.step(t), want.data(), stride * sizeof(float))) << "normal step " << t;
    direct_u.uniform(want.data(), stride, static_cast<std::uint64_t>(t) * stride);
    ASSERT_EQ(0, std::memcmp(uniform.step(t), want.data(), stride * sizeof(float))) << "uniform step " << t;
  }
}

TEST(Rng, StepStridesStartOnAPhiloxCounter) {
  ModelConfig m;
  m.latent = 13;  // odd sizes everywhere
  m.samples = 3;
  m.input_dim = 61;
  for (int batch : {1, 37, 128}) {
    const RngPlan p = RngPlan::make(1, m, batch, 3);
    EXPECT_EQ(p.eps_stride % 4, 0u);
    EXPECT_GE(p.eps_stride, static_cast<std::size_t>(batch) * 3 * 13);
    EXPECT_EQ(p.bin_stride % 4, 0u);
    EXPECT_GE(p.bin_stride, static_cast<std::size_t>(batch) * 61);
    EXPECT_EQ(RngPlan::eval_stride(m, batch) % 4, 0u);
    EXPECT_EQ(RngPlan::iw_stride(m, batch) % 4, 0u);
  }
}

TEST(Rng, StreamsAreDistinctAndSeeded) {
  std::set<std::uint64_t> seeds;
  for (auto s : {RngStream::eps, RngStream::bin, RngStream::eval, RngStream::init, RngStream::shuffle}) {
    seeds.insert(derive_seed(1, s));
    seeds.insert(derive_seed(2, s));
  }
  EXPECT_EQ(seeds.size(), 10u);
  EXPECT_EQ(derive_seed(1, RngStream::eps), derive_seed(1, RngStream::eps));
}

TEST(BatchStream, ShufflesEachEpochAndKeepsThePartialBatch) {
  BatchStream s(103, 10, 42);
  EXPECT_EQ(s.batches_per_epoch(), 11);
  std::vector<std::vector<std::uint32_t>> epochs;
  for (int e = 0; e < 3; ++e) {
    s.start_epoch(e);
    std::vector<std::uint32_t> seen;
    Batch b;
    int k = 0;
    while (s.next(b)) {
      EXPECT_EQ(b.size, k == 10 ? 3 : 10);
      EXPECT_EQ(b.step, e * 11 + k);
      EXPECT_EQ(b.epoch, e);
      seen.insert(seen.end(), b.indices, b.indices + b.size);
      ++k;
    }
    EXPECT_EQ(k, 11);
    std::vector<std::uint32_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    for (std::uint32_t i = 0; i < 103; ++i) ASSERT_EQ(sorted[i], i);  // a permutation
    epochs.push_back(seen);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  BatchStream again(103, 10, 42);
  again.start_epoch(1);
  EXPECT_EQ(again.order(), epochs[1]);  // depends only on (seed, epoch)
  BatchStream other(103, 10, 43);
  other.start_epoch(1);
  EXPECT_NE(other.order(), epochs[1]);
}

// The CPU backend's step t uses eps at offset t * eps_stride of the eps stream: recompute
// the step's loss by hand from CpuModel and the documented layout; it must agree bit for bit.
TEST(CpuBackend, StepNoiseFollowsTheDocumentedLayout) {
  const auto data = synthetic(50, 20, 1);
  ModelConfig m = small_model(20);
  m.samples = 2;
  TrainConfig t;
  t.batch = 8;
  t.eval_batch = 8;
  t.seed = 17;
  auto backend = make_backend(Device::cpu, m, t);
  const auto init = init_parameters(backend->layout(), m, t.seed);
  backend->set_parameters(init);
  backend->set_train_data(data);
  BatchStream stream(data->count, t.batch, t.seed);
  Batch b;
  stream.next(b);
  stream.next(b);  // step 1
  backend->train_step(b);
  const LossSums got = backend->take_train_sums();

  const RngPlan plan = RngPlan::make(t.seed, m, t.batch);
  CpuModel<float> ref(m, t.batch);
  std::copy(init.begin(), init.end(), ref.params().begin());
  std::vector<float> x(static_cast<std::size_t>(b.size) * m.input_dim);
  for (int i = 0; i < b.size; ++i) data->row(b.indices[i], x.data() + static_cast<std::size_t>(i) * m.input_dim);
  std::vector<float> eps(plan.eps_stride);
  HostPhilox(plan.eps_seed).normal(eps.data(), plan.eps_stride, plan.eps_offset(1));
  const LossSums want = ref.forward(x.data(), eps.data(), b.size, true);
  EXPECT_EQ(got.loss, want.loss);
  EXPECT_EQ(got.kl, want.kl);
  EXPECT_EQ(got.count, 8);
  EXPECT_EQ(backend->gradients(), std::vector<float>(ref.grads().begin(), ref.grads().end()));
}

std::vector<double> run_losses(std::uint64_t seed, Binarize bin, int steps) {
  const auto data = synthetic(200, 30, 3);
  ModelConfig m = small_model(30);
  TrainConfig t;
  t.batch = 16;
  t.seed = seed;
  t.binarize = bin;
  auto backend = make_backend(Device::cpu, m, t);
  backend->set_parameters(init_parameters(backend->layout(), m, seed));
  backend->set_train_data(data);
  BatchStream stream(data->count, t.batch, seed);
  std::vector<double> losses;
  Batch b;
  for (int k = 0; k < steps; ++k) {
    stream.next_rolling(b);
    backend->train_step(b);
    losses.push_back(backend->take_train_sums().loss);
  }
  losses.push_back(backend->evaluate(*data).loss);
  return losses;
}

TEST(Determinism, SameSeedGivesBitIdenticalLosses) {
  for (Binarize bin : {Binarize::none, Binarize::dynamic}) {
    const auto a = run_losses(5, bin, 40);
    const auto b = run_losses(5, bin, 40);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      ASSERT_TRUE(std::isfinite(a[i]));
      ASSERT_EQ(std::memcmp(&a[i], &b[i], sizeof(double)), 0) << "step " << i << ": " << a[i] << " vs " << b[i];
    }
    const auto c = run_losses(6, bin, 40);
    EXPECT_NE(a, c) << "a different seed must give a different run";
  }
}

TEST(Training, ShortRunOnSyntheticDataLowersTheLoss) {
  const auto data = synthetic(512, 36, 9);
  ModelConfig m = small_model(36);
  TrainConfig t;
  t.batch = 32;
  t.eval_batch = 128;
  t.optimizer.lr = 3e-3;
  auto backend = make_backend(Device::cpu, m, t);
  backend->set_parameters(init_parameters(backend->layout(), m, t.seed));
  backend->set_train_data(data);
  const double before = backend->evaluate(*data).mean_loss();
  BatchStream stream(data->count, t.batch, t.seed);
  for (int e = 0; e < 15; ++e) {
    stream.start_epoch(e);
    Batch b;
    while (stream.next(b)) backend->train_step(b);
  }
  const double after = backend->evaluate(*data).mean_loss();
  ASSERT_TRUE(std::isfinite(after));
  // 36 pixels near 0.08/0.9 with 5% flips: the start is near 25 nats and the targets'
  // own entropy alone is about 11; a trained model gets well below 3/4 of the start.
  EXPECT_LT(after, 0.75 * before) << "before " << before << " after " << after;
}

TEST(Training, Fp64BackendTracksFp32Backend) {
  const auto data = synthetic(64, 20, 4);
  ModelConfig m = small_model(20);
  TrainConfig t;
  t.batch = 16;
  std::vector<double> loss[2];
  for (int k = 0; k < 2; ++k) {
    t.precision = k ? Precision::fp64 : Precision::fp32;
    auto backend = make_backend(Device::cpu, m, t);
    backend->set_parameters(init_parameters(backend->layout(), m, t.seed));
    backend->set_train_data(data);
    BatchStream stream(data->count, t.batch, t.seed);
    Batch b;
    while (stream.next(b)) {
      backend->train_step(b);
      loss[k].push_back(backend->take_train_sums().loss);
    }
  }
  EXPECT_TRUE(test::all_close(loss[0], loss[1], 0, 1e-4, "fp32 vs fp64 step losses"));
}

void write_npy_u8(const std::string& path, const Dataset& d) {
  std::string header = "{'descr': '|u1', 'fortran_order': False, 'shape': (" + std::to_string(d.count) + ", " +
                       std::to_string(d.dim) + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const char len[2] = {static_cast<char>(header.size() & 0xFF), static_cast<char>(header.size() >> 8)};
  f.write(len, 2);
  f << header;
  f.write(reinterpret_cast<const char*>(d.u8.data()), static_cast<std::streamsize>(d.u8.size()));
}

TEST(Trainer, WritesEveryOutputAndRefusesToOverwrite) {
  test::TempDir dir;
  write_npy_u8(dir.file("train.npy"), *synthetic(300, 16, 1));
  write_npy_u8(dir.file("test.npy"), *synthetic(70, 16, 2));
  ModelConfig m = small_model(16);
  TrainConfig t;
  t.train_path = dir.file("train.npy");
  t.test_path = dir.file("test.npy");
  t.epochs = 3;
  t.batch = 32;
  t.device = Device::cpu;
  t.out = dir.file("run");
  std::ostringstream log;
  const TrainResult r = train(m, t, log);
  ASSERT_EQ(r.epochs.size(), 3u);
  EXPECT_NE(log.str().find("device: cpu"), std::string::npos);
  EXPECT_NE(log.str().find("epoch 3/3"), std::string::npos);

  std::ifstream csv(t.out + "/metrics.csv");
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "epoch,train_loss,test_loss,test_recon,test_kl,seconds,samples_per_sec");
  int rows = 0;
  while (std::getline(csv, line)) {
    ++rows;
    EXPECT_EQ(std::count(line.begin(), line.end(), ','), 6) << line;
    EXPECT_EQ(line.substr(0, line.find(',')), std::to_string(rows));
  }
  EXPECT_EQ(rows, 3);
  for (const auto& e : r.epochs) {
    EXPECT_TRUE(std::isfinite(e.test_loss));
    EXPECT_NEAR(e.test_loss, e.test_recon + e.test_kl, 1e-6 * e.test_loss);
    EXPECT_GT(e.test_kl, 0.0);
  }

  std::ifstream cfg(t.out + "/config.json");
  const auto j = nlohmann::json::parse(cfg);
  EXPECT_EQ(j["model"]["input_dim"], 16);
  EXPECT_EQ(j["train"]["epochs"], 3);
  EXPECT_EQ(j["train"]["train"], t.train_path);

  const SavedModel saved = load_model(t.out + "/model.safetensors");
  EXPECT_EQ(saved.model.encoder_hidden, m.encoder_hidden);
  EXPECT_EQ(saved.params.size(), ParamLayout(saved.model).total());
  // The saved model evaluates to the last epoch's test loss (same seed, same eval noise).
  auto backend = make_backend(Device::cpu, saved.model, saved.train);
  backend->set_parameters(saved.params);
  const Dataset test_set = read_dataset(t.test_path);
  EXPECT_DOUBLE_EQ(backend->evaluate(test_set).mean_loss(), r.epochs.back().test_loss);
  for (const char* png : {"/samples.png", "/reconstructions.png"}) {
    std::ifstream f(t.out + png, std::ios::binary);
    char sig[8] = {};
    f.read(sig, 8);
    EXPECT_EQ(std::string(sig + 1, 3), "PNG") << png;
  }

  // A second run into the same OUT is refused and leaves the first run's files alone.
  const auto before = std::filesystem::last_write_time(t.out + "/model.safetensors");
  try {
    train(m, t, log);
    ADD_FAILURE() << "training into a non-empty OUT was not refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already holds files"), std::string::npos) << e.what();
  }
  EXPECT_EQ(std::filesystem::last_write_time(t.out + "/model.safetensors"), before);
}

TEST(Trainer, RejectsMismatchedTrainAndTestData) {
  test::TempDir dir;
  write_npy_u8(dir.file("train.npy"), *synthetic(30, 16, 1));
  write_npy_u8(dir.file("test.npy"), *synthetic(30, 12, 2));
  TrainConfig t;
  t.train_path = dir.file("train.npy");
  t.test_path = dir.file("test.npy");
  t.device = Device::cpu;
  t.out = dir.file("run");
  std::ostringstream log;
  try {
    train(small_model(16), t, log);
    ADD_FAILURE() << "mismatched dims accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("12 features"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(t.out + "/metrics.csv"));
}

TEST(Device, CpuSgemmRateIsMeasured) {
  const double gflops = measure_sgemm_gflops(Device::cpu, 96, 80, 72);
  EXPECT_TRUE(std::isfinite(gflops) && gflops > 0) << gflops;
  EXPECT_THROW(measure_sgemm_gflops(Device::cpu, 8, -1, 8), Error);
  std::string why;
  if (!cuda_usable(&why)) {
    EXPECT_THROW(measure_sgemm_gflops(Device::cuda, 8, 8, 8), Error);
  }
}

TEST(Device, CudaWithoutAGpuIsAClearError) {
  std::string why;
  if (cuda_usable(&why)) GTEST_SKIP() << "a GPU is usable here; this test is for machines without one";
  EXPECT_FALSE(why.empty());
  std::string note;
  EXPECT_EQ(resolve_device(Device::automatic, &note), Device::cpu);
  EXPECT_NE(note.find("cpu"), std::string::npos);
  try {
    make_backend(Device::cuda, small_model(10), TrainConfig{});
    ADD_FAILURE() << "make_backend(cuda) succeeded without a GPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vae

namespace vae {
namespace {

struct SmallRun {
  test::TempDir dir;
  ModelConfig model = small_model(16);
  TrainConfig cfg;
  SmallRun() {
    write_npy_u8(dir.file("train.npy"), *synthetic(300, 16, 1));
    write_npy_u8(dir.file("test.npy"), *synthetic(70, 16, 2));
    cfg.train_path = dir.file("train.npy");
    cfg.test_path = dir.file("test.npy");
    cfg.batch = 32;  // 10 batches per epoch, the last one partial
    cfg.device = Device::cpu;
    cfg.binarize = Binarize::dynamic;
  }
  TrainResult run(const std::string& name, int epochs) {
    TrainConfig c = cfg;
    c.epochs = epochs;
    c.out = dir.file(name);
    std::ostringstream log;
    return train(model, c, log);
  }
  std::string file(const std::string& run, const std::string& name) {
    std::ifstream f(dir.file(run) + "/" + name, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), {});
  }
};

void expect_same_epochs(const std::vector<EpochMetrics>& a, const std::vector<EpochMetrics>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].epoch, b[i].epoch);
    EXPECT_EQ(a[i].train_loss, b[i].train_loss) << "epoch " << a[i].epoch;  // bit for bit
    EXPECT_EQ(a[i].test_loss, b[i].test_loss) << "epoch " << a[i].epoch;
    EXPECT_EQ(a[i].test_kl, b[i].test_kl) << "epoch " << a[i].epoch;
  }
}

TEST(Resume, MidEpochInterruptThenResumeIsBitIdentical) {
  SmallRun r;
  const TrainResult whole = r.run("whole", 3);
  request_stop();  // stops after the very first step
  const TrainResult cut = r.run("cut", 3);
  ASSERT_TRUE(cut.interrupted);
  EXPECT_TRUE(cut.epochs.empty());
  const Checkpoint ck = load_checkpoint(r.dir.file("cut") + "/model.safetensors");
  EXPECT_EQ(ck.position.epoch, 0);
  EXPECT_EQ(ck.position.batch, 1);
  EXPECT_EQ(ck.position.step, 1);
  EXPECT_EQ(ck.position.partial.count, 32);
  EXPECT_EQ(ck.optimizer.step, 1);

  std::ostringstream log;
  const TrainResult rest = resume(r.dir.file("cut"), ResumeOptions{}, log);
  EXPECT_FALSE(rest.interrupted);
  expect_same_epochs(rest.epochs, whole.epochs);
  EXPECT_EQ(test::metrics_loss_rows(r.file("cut", "metrics.csv")), test::metrics_loss_rows(r.file("whole", "metrics.csv")));
  const Checkpoint a = load_checkpoint(r.dir.file("whole") + "/model.safetensors");
  const Checkpoint b = load_checkpoint(r.dir.file("cut") + "/model.safetensors");
  EXPECT_EQ(a.params, b.params);
  EXPECT_EQ(a.optimizer.m, b.optimizer.m);
  EXPECT_EQ(a.optimizer.v, b.optimizer.v);
  EXPECT_EQ(a.optimizer.step, b.optimizer.step);
}

TEST(Resume, EveryTrainingOptionResumesBitIdentically) {
  // Alternating schedule, a learning-rate schedule, KL warm-up, IWAE or the score estimator,
  // and each optimizer: all of their state is in the checkpoint.
  for (int variant = 0; variant < 4; ++variant) {
    SmallRun r;
    r.cfg.schedule = Schedule::alternating;
    r.cfg.e_steps = 3;
    r.cfg.m_steps = 2;
    r.cfg.kl_warmup_steps = 15;
    r.cfg.optimizer.kind = static_cast<Optimizer>(variant);
    r.cfg.optimizer.schedule = variant % 2 ? LrSchedule::cosine : LrSchedule::step;
    r.cfg.optimizer.lr_step_epochs = 1;
    if (variant == 1) r.cfg.objective = Objective::iwae;
    if (variant == 2) r.cfg.estimator = Estimator::score;
    const TrainResult whole = r.run("whole", 3);
    request_stop();
    ASSERT_TRUE(r.run("cut", 3).interrupted);
    std::ostringstream log;
    const TrainResult rest = resume(r.dir.file("cut"), ResumeOptions{}, log);
    expect_same_epochs(rest.epochs, whole.epochs);
    const Checkpoint a = load_checkpoint(r.dir.file("whole") + "/model.safetensors");
    const Checkpoint b = load_checkpoint(r.dir.file("cut") + "/model.safetensors");
    EXPECT_EQ(a.params, b.params) << "variant " << variant;
    EXPECT_EQ(a.optimizer.step, b.optimizer.step);
    EXPECT_EQ(a.optimizer.step_decoder, b.optimizer.step_decoder);
    EXPECT_LT(a.optimizer.step_decoder, a.optimizer.step) << "alternating: fewer M-steps than E-steps";
  }
}

TEST(Resume, ExtendingAFinishedRunMatchesALongerRun) {
  SmallRun r;
  const TrainResult four = r.run("four", 4);
  r.run("two", 2);
  std::ostringstream log;
  try {
    resume(r.dir.file("two"), ResumeOptions{}, log);
    ADD_FAILURE() << "resuming a finished run without more epochs was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--epochs"), std::string::npos) << e.what();
  }
  ResumeOptions more;
  more.epochs = 4;
  const TrainResult rest = resume(r.dir.file("two"), more, log);
  ASSERT_EQ(rest.epochs.size(), 2u);
  EXPECT_NE(r.file("two", "config.json").find("\"epochs\": 4"), std::string::npos) << "config.json follows the resume";
  expect_same_epochs(rest.epochs, {four.epochs[2], four.epochs[3]});
  EXPECT_EQ(test::metrics_loss_rows(r.file("two", "metrics.csv")), test::metrics_loss_rows(r.file("four", "metrics.csv")));
}

TEST(Resume, ALostEpochIsRecomputedFromTheLastCheckpoint) {
  SmallRun r;
  r.cfg.checkpoint_every = 2;
  const TrainResult whole = r.run("whole", 3);
  r.run("crash", 3);
  // A crash after epoch 3's metrics row but before its checkpoint: metrics.csv has three
  // rows and the checkpoint is the one written after epoch 2 (the same state as a 2-epoch
  // run's final checkpoint). Resuming drops the third row and recomputes it.
  r.run("two", 2);
  std::filesystem::copy_file(r.dir.file("two") + "/model.safetensors", r.dir.file("crash") + "/model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  std::ostringstream log;
  ResumeOptions three;
  three.epochs = 3;
  const TrainResult rest = resume(r.dir.file("crash"), three, log);
  expect_same_epochs(rest.epochs, {whole.epochs[2]});
  EXPECT_EQ(test::metrics_loss_rows(r.file("crash", "metrics.csv")), test::metrics_loss_rows(r.file("whole", "metrics.csv")));
}

TEST(Resume, BadCheckpointsAreClearErrors) {
  SmallRun r;
  std::ostringstream log;
  try {
    resume(r.dir.file("nothing-here"), ResumeOptions{}, log);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no checkpoint"), std::string::npos) << e.what();
  }
  r.run("run", 1);
  // a parameters-only file is not a checkpoint
  const Checkpoint ck = load_checkpoint(r.dir.file("run") + "/model.safetensors");
  save_model(r.dir.file("run") + "/model.safetensors", ParamLayout(ck.model), ck.params, config_to_json(ck.model, ck.train));
  try {
    ResumeOptions more;
    more.epochs = 2;
    resume(r.dir.file("run"), more, log);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is of format 'vae-model-1', but this reads vae-checkpoint-1"), std::string::npos)
        << e.what();
  }
}

// Integer fields take JSON integers in range only: no silent truncation of 128.5, no wrap of
// -1 into an unsigned seed, no undefined conversion of 1e300; the error names the field.
TEST(Config, IntegerFieldsRejectFractionsAndOutOfRangeValues) {
  auto parse = [](const std::string& text) {
    ModelConfig m;
    TrainConfig t;
    config_from_json(text, m, t);
    return std::make_pair(m, t);
  };
  const auto good = parse(R"({"model": {"hidden": [300, 100], "latent": 7}, "train": {"batch": 64, "seed": 18446744073709551615, "kl_warmup": 5000000000}})");
  EXPECT_EQ(good.first.encoder_hidden, (std::vector<int>{300, 100}));
  EXPECT_EQ(good.first.latent, 7);
  EXPECT_EQ(good.second.batch, 64);
  EXPECT_EQ(good.second.seed, std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(good.second.kl_warmup_steps, 5000000000);
  const std::pair<std::string, std::string> bad[] = {
      {R"({"train": {"batch": 128.5}})", "configuration field train.batch must be an integer in [-2147483648, 2147483647], got 128.5"},
      {R"({"train": {"epochs": 1e300}})", "train.epochs must be an integer"},
      {R"({"train": {"batch": 3000000000}})", "train.batch must be an integer"},
      {R"({"train": {"seed": -1}})", "train.seed must be an integer in [0, 18446744073709551615], got -1"},
      {R"({"model": {"hidden": [400, 2.5]}})", "model.hidden[1] must be an integer"},
      {R"({"model": {"decoder_hidden": 400}})", "model.decoder_hidden must be a list of integers, got a JSON number"},
      {R"({"model": {"latent": "many"}})", "model.latent must be an integer"},
  };
  for (const auto& [text, phrase] : bad) test::expect_error([&] { parse(text); }, phrase);
  // In range for an int but not for a layer: the same bound as --hidden's, at validation.
  const auto wide = parse(R"({"model": {"hidden": [2000000000]}})");
  test::expect_error([&] { wide.first.validate(); },
                     "encoder_hidden (--hidden): widths must be in [1, 1000000], got 2000000000");
  // validate() names the field a library caller set and the option a CLI user gave.
  ModelConfig m;
  m.latent = 0;
  test::expect_error([&] { m.validate(); }, "latent (--latent) must be in [1, 65536], got 0");
  TrainConfig t;
  t.optimizer.lr = -1;
  test::expect_error([&] { t.validate(); }, "optimizer.lr (--lr) must be a finite number > 0, got -1");
  t = TrainConfig{};
  t.optimizer.lr_min = 1;
  test::expect_error([&] { t.validate(); }, "optimizer.lr_min (--lr-min) must be in [0, lr], got 1");
}

// A model too large for the host's memory is a vae::Error with its sizes, not a bare
// std::bad_alloc ("out of host memory" with nothing to go on).
TEST(Config, AModelTooLargeForMemoryNamesItsSize) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer aborts on a multi-terabyte allocation instead of throwing std::bad_alloc";
#else
  ModelConfig m;
  m.encoder_hidden = m.decoder_hidden = {kMaxLayerWidth, kMaxLayerWidth};  // 2e12 parameters: 32 TB of state
  const std::size_t params = ParamLayout(m).total();
  ASSERT_GT(params, std::size_t(2000000000000));
  TrainConfig t;
  t.device = Device::cpu;
  test::expect_error([&] { make_backend(Device::cpu, m, t); },
                     "out of host memory setting up the CPU backend: the model has " + std::to_string(params) + " parameters");
#endif
}

TEST(Config, FeedingConfigJsonBackReproducesTheRun) {
  SmallRun r;
  r.model.activation = Activation::tanh;
  r.model.samples = 2;
  r.model.beta = 0.7;
  r.cfg.seed = 9;
  const TrainResult a = r.run("a", 2);
  ModelConfig m;
  TrainConfig c;
  config_from_json(r.file("a", "config.json"), m, c);
  c.out = r.dir.file("b");
  std::ostringstream log;
  const TrainResult b = train(m, c, log);
  expect_same_epochs(b.epochs, a.epochs);
}

}  // namespace
}  // namespace vae

namespace vae {
namespace {

TEST(NanGuard, ANonFiniteStepChangesNothingAndNamesTheTensor) {
  const auto data = synthetic(64, 20, 4);
  ModelConfig m = small_model(20);
  for (NanPolicy policy : {NanPolicy::stop, NanPolicy::skip}) {
    TrainConfig t;
    t.batch = 16;
    t.on_nan = policy;
    auto backend = make_backend(Device::cpu, m, t);
    const ParamLayout& layout = backend->layout();
    auto good = init_parameters(layout, m, 1);
    auto poisoned = good;
    poisoned[layout.at("decoder.0.weight").offset + 3] = std::numeric_limits<float>::infinity();
    backend->set_train_data(data);
    BatchStream stream(data->count, t.batch, 1);
    Batch b;
    stream.next(b);
    backend->set_parameters(good);
    backend->train_step(b);  // a good step
    const auto after_good = backend->parameters();
    const auto opt_good = backend->optimizer_state();
    EXPECT_EQ(backend->health().bad_steps, 0);

    auto bad = after_good;
    bad[layout.at("decoder.0.weight").offset + 3] = std::numeric_limits<float>::infinity();
    backend->set_parameters(bad);
    stream.next(b);
    backend->train_step(b);
    StepHealth h = backend->health();
    EXPECT_EQ(h.bad_steps, 1);
    EXPECT_EQ(h.first_bad_step, 1);
    EXPECT_FALSE(h.first_bad_tensor.empty());
    EXPECT_EQ(h.halted, policy == NanPolicy::stop);
    EXPECT_EQ(backend->parameters(), bad) << "a non-finite step must not update";
    EXPECT_EQ(backend->optimizer_state().step, opt_good.step);
    EXPECT_EQ(backend->optimizer_state().m, opt_good.m);
    const LossSums sums = backend->take_train_sums();
    EXPECT_EQ(sums.count, 16) << "the bad step adds nothing to the loss sums";
    EXPECT_TRUE(std::isfinite(sums.loss));

    backend->set_parameters(after_good);  // healthy again
    stream.next(b);
    backend->train_step(b);
    if (policy == NanPolicy::stop) {
      EXPECT_EQ(backend->parameters(), after_good) << "a halted backend does nothing";
    } else {
      EXPECT_NE(backend->parameters(), after_good) << "skip carries on with the next step";
      EXPECT_EQ(backend->optimizer_state().step, opt_good.step + 1);
    }
  }
}

TEST(NanGuard, AGradientOverflowIsNamed) {
  // A huge log-variance in the head's bias makes exp(s) overflow: KL and its gradient are
  // infinite. The loss is the first thing found non-finite.
  const auto data = synthetic(32, 20, 5);
  ModelConfig m = small_model(20);
  TrainConfig t;
  t.batch = 16;
  auto backend = make_backend(Device::cpu, m, t);
  auto p = init_parameters(backend->layout(), m, 1);
  p[backend->layout().at("encoder.head.bias").offset + m.latent] = 200.0f;  // s_0 = 200: exp overflows
  backend->set_parameters(p);
  backend->set_train_data(data);
  BatchStream stream(data->count, t.batch, 1);
  Batch b;
  stream.next(b);
  backend->train_step(b);
  EXPECT_EQ(backend->health().first_bad_tensor, "loss");
}

TEST(NanGuard, TrainerStopsNamingTheStepAndKeepsTheLastCheckpoint) {
  SmallRun r;
  r.cfg.optimizer.lr = 1e4;  // diverges within the first epoch
  try {
    r.run("nan", 3);
    ADD_FAILURE() << "a diverging run did not stop";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("training stopped: a non-finite"), std::string::npos) << msg;
    EXPECT_NE(msg.find("at step"), std::string::npos) << msg;
  }
  std::ifstream csv(r.dir.file("nan") + "/metrics.csv");
  std::string header, row;
  std::getline(csv, header);
  EXPECT_FALSE(std::getline(csv, row)) << "no epoch row for the diverged epoch";
}

}  // namespace
}  // namespace vae

namespace vae {
namespace {

TEST(BatchStream, NextRollingStartsTheNextEpoch) {
  BatchStream rolling(25, 10, 3), plain(25, 10, 3);
  Batch a, b;
  for (int epoch = 0; epoch < 3; ++epoch) {
    plain.start_epoch(epoch);
    while (plain.next(b)) {
      rolling.next_rolling(a);
      ASSERT_EQ(a.epoch, epoch);
      ASSERT_EQ(a.step, b.step);
      ASSERT_EQ(a.size, b.size);
      ASSERT_TRUE(std::equal(a.indices, a.indices + a.size, b.indices));
    }
  }
}

}  // namespace
}  // namespace vae
