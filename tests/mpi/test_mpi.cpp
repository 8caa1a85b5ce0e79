// Data-parallel training on the CPU backend, run by ctest under `mpirun -np 2`: every rank
// trains its shard of each batch with the communicator, and also, alone, the same steps on
// the whole batch (the one-process run it must equal). Tolerances as the issue sets them: the
// parameters after one step 1e-5 relative in norm, the losses of 200 steps 1e-3; the same
// launch twice is bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <vector>

#include "mpi/mpi_test_util.h"
#include "test_util.h"
#include "vae/vae.h"

namespace vae {
namespace {

using test::comm;

class Mpi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(comm(), nullptr) << "run under mpirun (ctest does: mpirun -np 2)";
    ASSERT_GE(comm()->size(), 2) << "the tests need at least 2 processes";
  }
};

ModelConfig model(Likelihood lik = Likelihood::bernoulli) {
  ModelConfig m;
  m.input_dim = 29;
  m.encoder_hidden = {24};
  m.decoder_hidden = {24};
  m.activation = Activation::tanh;
  m.likelihood = lik;
  m.samples = 2;
  m.latent = 4;
  if (lik == Likelihood::gaussian) m.learn_sigma = true;
  return m;
}

TrainConfig train(int batch) {
  TrainConfig t = test::cpu_train(batch, 13);
  t.threads = 1;
  t.seed = 5;
  return t;
}

std::unique_ptr<Backend> backend(const ModelConfig& m, const TrainConfig& t, const std::shared_ptr<Dataset>& data,
                                 bool distributed) {
  return test::ranked_backend(Device::cpu, m, t, data, distributed);
}
using test::ranked_steps;

TEST_F(Mpi, ShardsCoverTheBatchInOrder) {
  std::vector<std::uint32_t> idx(7);
  Batch b{idx.data(), 7, 0, 3};
  int next = 0;
  for (int r = 0; r < 3; ++r) {
    const Batch s = shard_of(b, r, 3);
    EXPECT_EQ(s.offset, next);
    EXPECT_EQ(s.size, r == 0 ? 3 : 2);
    EXPECT_EQ(s.global_size, 7);
    EXPECT_EQ(s.indices, idx.data() + s.offset);
    EXPECT_EQ(s.step, 3);
    next += s.size;
  }
  EXPECT_EQ(next, 7);
  EXPECT_EQ(shard_of(Batch{idx.data(), 1}, 1, 2).size, 0) << "fewer items than ranks: an empty shard";
}

TEST_F(Mpi, OneStepEqualsOneProcess) {
  for (Likelihood lik : {Likelihood::bernoulli, Likelihood::gaussian}) {
    const auto data = test::synthetic(90, 29, 3, lik == Likelihood::gaussian);
    const ModelConfig m = model(lik);
    const TrainConfig t = train(37);  // odd: shards of 19 and 18
    auto alone = backend(m, t, data, false), shard = backend(m, t, data, true);
    std::vector<std::vector<float>> ga, gs;  // each step's summed gradient (Adam's step hides its scale)
    const LossSums a = ranked_steps(*alone, data->count, t, 2, false, nullptr, &ga).back();  // step 1: a noise offset other than 0
    const LossSums s = ranked_steps(*shard, data->count, t, 2, true, nullptr, &gs).back();
    ASSERT_EQ(ga.size(), 2u);
    ASSERT_EQ(gs.size(), 2u);
    for (std::size_t k = 0; k < 2; ++k)
      for (const auto& tv : alone->layout().tensors()) {
        const auto at = [&](const std::vector<float>& g) {
          return std::vector<float>(g.begin() + tv.offset, g.begin() + tv.offset + tv.size());
        };
        EXPECT_LE(test::rel_norm_error(at(gs[k]), at(ga[k])), 1e-5) << tv.name << " gradient, step " << k;
      }
    EXPECT_EQ(s.count, a.count);
    EXPECT_NEAR(s.loss, a.loss, 1e-5 * std::fabs(a.loss)) << to_string(lik);
    const auto pa = alone->parameters(), ps = shard->parameters();
    for (const auto& tv : alone->layout().tensors()) {
      std::vector<float> x(pa.begin() + tv.offset, pa.begin() + tv.offset + tv.size()),
          y(ps.begin() + tv.offset, ps.begin() + tv.offset + tv.size());
      EXPECT_LE(test::rel_norm_error(y, x), 1e-5) << tv.name << ", " << to_string(lik);
    }
    // Every rank holds the same parameters: rank 0's sum equals size times its own.
    std::vector<double> mine(ps.begin(), ps.end()), sum = mine;
    comm()->sum(sum.data(), sum.size());
    for (std::size_t i = 0; i < mine.size(); i += 97) ASSERT_EQ(sum[i], mine[i] * comm()->size()) << i;
  }
}

TEST_F(Mpi, TwoHundredStepsTrackOneProcessAndRepeatBitForBit) {
  const auto data = test::synthetic(150, 29, 4);
  const ModelConfig m = model();
  const TrainConfig t = train(32);  // four full batches and one of 22 per epoch
  auto alone = backend(m, t, data, false);
  const auto a = ranked_steps(*alone, data->count, t, 200, false);
  std::vector<double> first;
  for (int run = 0; run < 2; ++run) {
    auto shard = backend(m, t, data, true);
    const auto s = ranked_steps(*shard, data->count, t, 200, true);
    std::vector<double> losses;
    for (std::size_t k = 0; k < s.size(); ++k) {
      ASSERT_TRUE(std::isfinite(s[k].loss)) << "step " << k;
      ASSERT_EQ(s[k].count, a[k].count) << "step " << k;
      EXPECT_NEAR(s[k].loss, a[k].loss, 1e-3 * std::fabs(a[k].loss)) << "step " << k;
      losses.push_back(s[k].loss);
    }
    if (run == 0) first = losses;
    else EXPECT_EQ(std::memcmp(first.data(), losses.data(), losses.size() * sizeof(double)), 0) << "the same launch twice";
    EXPECT_LT(losses.back(), 0.8 * losses.front()) << "training lowered the loss";
  }
}

TEST_F(Mpi, ABatchOfFewerItemsThanRanksAndTheEvaluation) {
  const auto data = test::synthetic(41, 29, 5);
  const ModelConfig m = model();
  const TrainConfig t = train(1);  // one item per step: the other ranks' shards are empty
  auto alone = backend(m, t, data, false), shard = backend(m, t, data, true);
  const auto a = ranked_steps(*alone, data->count, t, 5, false), s = ranked_steps(*shard, data->count, t, 5, true);
  for (std::size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(s[k].loss, a[k].loss, 1e-5 * std::fabs(a[k].loss)) << k;
  // The evaluation shares its batches (13 items each) among the ranks and adds their sums.
  const LossSums ea = alone->evaluate(*data), es = shard->evaluate(*data);
  EXPECT_EQ(es.count, ea.count);
  EXPECT_NEAR(es.loss, ea.loss, 1e-4 * std::fabs(ea.loss));
}

// A mapped file's check of its values (finite, then the Bernoulli likelihood's [0, 1]): each
// rank reads its share of the items, and every rank learns of a bad value in another's share. (Each rank writes its own copy of the same file.)
TEST_F(Mpi, AMappedFilesCheckIsSplitAmongTheRanksAndEveryRankHearsOfABadValue) {
  const int n = comm()->size();
  const std::int64_t count = 10 * n, dim = 3;
  const std::int64_t bad_item = count - 2;  // in the last rank's share only
  test::TempDir dir;
  for (const bool with_nan : {false, true}) {
    std::vector<float> v = test::uniform_values<float>(static_cast<std::size_t>(count * dim), -2, 2, 9);
    if (with_nan) v[static_cast<std::size_t>(bad_item * dim + 1)] = NAN;
    const std::string path = dir.file(with_nan ? "nan.npy" : "ok.npy");
    std::ofstream(path, std::ios::binary) << test::npy_file("<f4", "(" + std::to_string(count) + ", 3)", v.data(),
                                                            v.size() * sizeof(float));
    const Dataset d = read_dataset(path, DataAccess::map);
    ASSERT_TRUE(d.is_mapped());
    if (!with_nan) {
      EXPECT_EQ(first_bad_value_across_ranks(d, ValueRule::finite, comm()), -1);
      EXPECT_TRUE(d.values_checked(ValueRule::finite));
      continue;
    }
    EXPECT_EQ(d.first_bad_value(0, count - 10), -1) << "the bad value lies in the last rank's share";
    EXPECT_EQ(first_bad_value_across_ranks(d, ValueRule::finite, comm()), bad_item * dim + 1);
    EXPECT_FALSE(d.values_checked(ValueRule::finite));
  }
  // The Bernoulli likelihood's [0, 1], the same way: 1.5 is finite but out of range.
  std::vector<float> v = test::uniform_values<float>(static_cast<std::size_t>(count * dim), 0, 1, 10);
  v[static_cast<std::size_t>(bad_item * dim + 2)] = 1.5f;
  const std::string path = dir.file("range.npy");
  std::ofstream(path, std::ios::binary) << test::npy_file("<f4", "(" + std::to_string(count) + ", 3)", v.data(),
                                                          v.size() * sizeof(float));
  const Dataset d = read_dataset(path, DataAccess::map);
  EXPECT_EQ(first_bad_value_across_ranks(d, ValueRule::finite, comm()), -1);
  EXPECT_TRUE(d.values_checked(ValueRule::finite));
  EXPECT_FALSE(d.values_checked(ValueRule::unit_interval));
  EXPECT_EQ(first_bad_value_across_ranks(d, ValueRule::unit_interval, comm()), bad_item * dim + 2);
  EXPECT_FALSE(d.values_checked(ValueRule::unit_interval));
}

}  // namespace
}  // namespace vae
