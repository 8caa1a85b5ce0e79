// Helpers for the GPU suites: the skip-without-GPU fixture, and the synthetic data, small
// models and training runs the backend tests share. (The kernel cases' device arrays,
// stream and tolerances are in bench/kernel_cases/harness.h.)
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda_backend.cuh"
#include "internal.h"
#include "test_util.h"
#include "vae/vae.h"

namespace vae::test {

// Every GPU test derives from this: it skips, saying why, where no GPU is usable.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda_device_usable(&why)) GTEST_SKIP() << "no usable GPU: " << why;
  }
};

inline bool any_nan(const std::vector<float>& v) {
  for (float x : v)
    if (std::isnan(x)) return true;
  return false;
}
// The elements of one named tensor of a flat buffer.
inline std::vector<float> tensor_of(const std::vector<float>& flat, const TensorView& t) {
  return std::vector<float>(flat.begin() + static_cast<std::ptrdiff_t>(t.offset),
                            flat.begin() + static_cast<std::ptrdiff_t>(t.offset + t.size()));
}

inline bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}
inline bool bit_equal(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

// A synthetic dataset: noisy copies of a few binary prototypes, as uint8 (or float).
inline ModelConfig small_model(int dim, Activation act = Activation::relu, Likelihood lik = Likelihood::bernoulli,
                               int samples = 1) {
  ModelConfig m;
  m.input_dim = dim;
  m.encoder_hidden = {24};
  m.decoder_hidden = {24};
  m.latent = 5;
  m.activation = act;
  m.likelihood = lik;
  m.samples = samples;
  return m;
}

// ---- backends on the synthetic data -------------------------------------------------------

inline std::unique_ptr<Backend> make(Device d, const ModelConfig& m, const TrainConfig& t,
                                     const gpu::CudaBackendOptions* opt = nullptr) {
  if (d == Device::cuda && opt) return gpu::make_cuda_backend(m, t, *opt);
  return make_backend(d, m, t);
}

// Both backends from the same parameters on the same data; returns {cpu, gpu}.
inline std::pair<std::unique_ptr<Backend>, std::unique_ptr<Backend>> pair_of(const ModelConfig& m, const TrainConfig& t,
                                                                             const std::shared_ptr<Dataset>& data,
                                                                             std::vector<float>* init = nullptr) {
  auto cpu = make(Device::cpu, m, t);
  auto gpu = make(Device::cuda, m, t);
  const auto p = init_parameters(cpu->layout(), m, t.seed);
  for (auto* b : {cpu.get(), gpu.get()}) {
    b->set_parameters(p);
    b->set_train_data(data);
  }
  if (init) *init = p;
  return {std::move(cpu), std::move(gpu)};
}

// The backend tests' model: D 61, hidden 24, Z 13.
inline ModelConfig model61(Activation act = Activation::relu, Likelihood lik = Likelihood::bernoulli, int L = 1,
                           bool learned = false) {
  ModelConfig m = test::small_model(61, act, lik, L);
  m.latent = 13;
  m.learn_sigma = learned;
  if (lik == Likelihood::gaussian) m.sigma = 0.3;
  return m;
}

inline TrainConfig train_cfg(int batch, std::uint64_t seed = 7) {
  TrainConfig t;
  t.batch = batch;
  t.eval_batch = 37;
  t.seed = seed;
  return t;
}

struct RunResult {
  std::vector<double> losses;  // per step, nats per item
  std::vector<float> params;
  OptimizerState optimizer;
  LossSums eval;
  gpu::CudaBackendStats stats;
};

// `steps` training steps over the seeded batch stream (epochs roll over), the loss of each
// step read back alone, then an evaluation over the training data. With `comm`, data
// parallel: each step is this rank's shard of the batch.
inline RunResult run(Device d, const ModelConfig& m, const TrainConfig& t, const std::shared_ptr<Dataset>& data,
                     int steps, const gpu::CudaBackendOptions* opt = nullptr, int eval_after = -1,
                     Communicator* comm = nullptr) {
  auto backend = make(d, m, t, opt);
  if (comm) backend->set_communicator(comm);
  backend->set_parameters(init_parameters(backend->layout(), m, t.seed));
  backend->set_train_data(data);
  BatchStream stream(data->count, t.batch, t.seed);
  RunResult r;
  Batch b;
  for (int k = 0; k < steps; ++k) {
    stream.next_rolling(b);
    backend->train_step(comm ? shard_of(b, comm->rank(), comm->size()) : b);
    const LossSums s = backend->take_train_sums();
    EXPECT_EQ(s.count, b.size);
    r.losses.push_back(s.mean_loss());
    if (k == eval_after) backend->evaluate(*data);
  }
  r.params = backend->parameters();
  r.optimizer = backend->optimizer_state();
  r.eval = backend->evaluate(*data);
  if (d == Device::cuda) r.stats = gpu::cuda_backend_stats(*backend);
  return r;
}

// A communicator of one rank, without MPI: data-parallel code paths in a single process.
class OneRank final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void sum(double*, std::size_t) override {}
  void sum(float*, std::size_t) override {}
  void broadcast(std::string&) override {}
  std::string name() const override { return "one rank (test)"; }
};

inline void expect_finite(const std::vector<double>& v, const std::string& what) {
  for (std::size_t i = 0; i < v.size(); ++i) ASSERT_TRUE(std::isfinite(v[i])) << what << " step " << i;
}

}  // namespace vae::test
