// Data-parallel training on the CUDA backend (MPI through host buffers), run by ctest under
// `mpirun -np 2`: every rank trains its shard of each batch with the communicator and also,
// alone, the same steps on the whole batch (the one-process run it must equal), to the issue's
// tolerances: the parameters after one step 1e-5 relative in norm, the losses of 30 steps
// 1e-3; the same launch twice bit for bit. On the CPU emulator in the emulator build; every
// test skips where no GPU is usable.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "gpu_test_util.h"
#include "mpi/mpi_test_util.h"
#include "test_util.h"
#include "vae/vae.h"

namespace vae {
namespace {

using test::comm;
using test::ranked_steps;

class CudaMpi : public test::GpuTest {
 protected:
  void SetUp() override {
    test::GpuTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_NE(comm(), nullptr) << "run under mpirun (ctest does: mpirun -np 2)";
    ASSERT_GE(comm()->size(), 2) << "the tests need at least 2 processes";
  }
};

std::unique_ptr<Backend> cuda_backend(const ModelConfig& m, const TrainConfig& t, const std::shared_ptr<Dataset>& data,
                                      bool distributed) {
  return test::ranked_backend(Device::cuda, m, t, data, distributed);
}

TEST_F(CudaMpi, OneStepAndThirtyStepsEqualOneProcess) {
  for (const Binarize bin : {Binarize::none, Binarize::dynamic}) {  // eps and the uniforms by global place
    const auto data = test::synthetic(97, 61, 3);
    const ModelConfig m = test::model61();
    TrainConfig t = test::train_cfg(23);  // shards of 12 and 11 items
    t.binarize = bin;
    auto alone = cuda_backend(m, t, data, false), shard = cuda_backend(m, t, data, true);
    std::vector<float> pa, ps;
    const auto a = ranked_steps(*alone, data->count, t, 30, false, &pa);
    const auto s = ranked_steps(*shard, data->count, t, 30, true, &ps);
    const std::string what = bin == Binarize::dynamic ? "dynamic binarization" : "no binarization";
    for (const auto& tv : alone->layout().tensors())
      EXPECT_LT(test::rel_norm_error(test::tensor_of(ps, tv), test::tensor_of(pa, tv)), 1e-5)
          << tv.name << " after one step, " << what;
    ASSERT_EQ(a.size(), s.size());
    for (std::size_t k = 0; k < a.size(); ++k) {
      ASSERT_TRUE(std::isfinite(s[k].loss)) << what << " step " << k;
      EXPECT_EQ(s[k].count, a[k].count) << what << " step " << k;
      EXPECT_NEAR(s[k].loss, a[k].loss, 1e-3 * std::fabs(a[k].loss)) << what << " step " << k;
    }
  }
}

TEST_F(CudaMpi, ABatchOfFewerItemsThanRanksAndTheEvaluation) {
  const auto data = test::synthetic(41, 61, 5);
  const ModelConfig m = test::model61();
  const TrainConfig t = test::train_cfg(1);  // one item per step: the other ranks' shards are empty
  auto alone = cuda_backend(m, t, data, false), shard = cuda_backend(m, t, data, true);
  const auto a = ranked_steps(*alone, data->count, t, 5, false), s = ranked_steps(*shard, data->count, t, 5, true);
  for (std::size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(s[k].loss, a[k].loss, 1e-5 * std::fabs(a[k].loss)) << k;
  // The evaluation shares its batches (37 items each) among the ranks and adds their sums.
  const LossSums ea = alone->evaluate(*data), es = shard->evaluate(*data);
  EXPECT_EQ(es.count, ea.count);
  ASSERT_TRUE(std::isfinite(es.loss));
  EXPECT_NEAR(es.loss, ea.loss, 1e-4 * std::fabs(ea.loss));
}

TEST_F(CudaMpi, TheSameLaunchTwiceIsBitForBit) {
  const auto data = test::synthetic(80, 61, 8);
  const ModelConfig m = test::model61();
  const TrainConfig t = test::train_cfg(16);
  std::vector<double> losses[2];
  std::vector<float> params[2];
  for (int r = 0; r < 2; ++r) {
    auto b = cuda_backend(m, t, data, true);
    for (const LossSums& s : ranked_steps(*b, data->count, t, 12, true)) losses[r].push_back(s.loss);
    params[r] = b->parameters();
  }
  EXPECT_TRUE(test::bit_equal(losses[0], losses[1]));
  EXPECT_TRUE(test::bit_equal(params[0], params[1]));
}

}  // namespace
}  // namespace vae
