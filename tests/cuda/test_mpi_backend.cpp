// Data-parallel training on the CUDA backend, run by ctest under `mpirun -np 2`: every rank
// trains its shard of each batch with the communicator and also, alone, the same steps on the
// whole batch (the one-process run it must equal), to the tolerances: the parameters
// after one step 1e-5 relative in norm, the losses of 30 steps 1e-3; the same launch twice
// bit for bit. Each test runs with the gradients summed through MPI on host buffers and with
// the automatic choice, which is NCCL where each rank has a GPU of its own.
//
// ctest runs it twice on the CPU emulator (emulator build): with one emulated device (the two
// ranks share it: the automatic choice is the host path, NCCL asked for is refused) and with
// two (VAE_EMU_DEVICES=2: NCCL, the emulator's over MPI, inside the captured step). It says
// which it expects in VAE_TEST_EXPECT_SUM (nccl or host); without it, the expectation
// follows the machine's GPUs. Every test skips where no GPU is usable.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "mpi/mpi_test_util.h"
#include "test_util.h"
#include "vae/vae.h"

namespace vae {
namespace {

using gpu::GradientSum;
using test::comm;
using test::ranked_steps;

// Whether the automatic choice on these ranks must be NCCL.
bool expect_nccl() {
  if (const char* e = std::getenv("VAE_TEST_EXPECT_SUM")) {
    if (std::string(e) == "nccl") return true;
    if (std::string(e) == "host") return false;
    ADD_FAILURE() << "VAE_TEST_EXPECT_SUM must be nccl or host, got '" << e << "'";
  }
  int devices = 0;
  EXPECT_EQ(cudaGetDeviceCount(&devices), cudaSuccess);
  return gpu::nccl_loadable() && devices >= local_processes();
}

class CudaMpi : public test::GpuTest, public ::testing::WithParamInterface<GradientSum> {
 protected:
  void SetUp() override {
    test::GpuTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_NE(comm(), nullptr) << "run under mpirun (ctest does: mpirun -np 2)";
    ASSERT_GE(comm()->size(), 2) << "the tests need at least 2 processes";
    use_cuda_device_of_local_rank(local_rank());  // as Session does: one GPU per local rank
  }
  // A CUDA backend with the ranks (each step then a shard) or alone, with this test's sum.
  std::unique_ptr<Backend> backend(const ModelConfig& m, const TrainConfig& t, const std::shared_ptr<Dataset>& data,
                                   bool distributed) {
    gpu::CudaBackendOptions o;
    o.gradient_sum = GetParam();
    auto b = test::ranked(gpu::make_cuda_backend(m, t, o), m, t, data, distributed);
    if (distributed) {
      const bool nccl = GetParam() == GradientSum::automatic && expect_nccl();
      EXPECT_EQ(b->gradient_sum().rfind(nccl ? "NCCL 2." : "MPI_Allreduce through host memory", 0), 0u)
          << b->gradient_sum();
    }
    return b;
  }
};

TEST_P(CudaMpi, OneStepAndThirtyStepsEqualOneProcess) {
  for (const Binarize bin : {Binarize::none, Binarize::dynamic}) {  // eps and the uniforms by global place
    // Batches of 23 (shards of 12 and 11) and a last one of 22 (11 and 11): rank 1's shards
    // have 11 items in both, with shares 11/23 and 11/22 (two step graphs).
    const auto data = test::synthetic(91, 61, 3);
    const ModelConfig m = test::model61();
    TrainConfig t = test::train_cfg(23);
    t.binarize = bin;
    auto alone = backend(m, t, data, false), shard = backend(m, t, data, true);
    std::vector<float> pa, ps;
    std::vector<std::vector<float>> ga, gs;
    const auto a = ranked_steps(*alone, data->count, t, 30, false, &pa, &ga);
    const auto s = ranked_steps(*shard, data->count, t, 30, true, &ps, &gs);
    const std::string what = bin == Binarize::dynamic ? "dynamic binarization" : "no binarization";
    for (const auto& tv : alone->layout().tensors())
      EXPECT_LT(test::rel_norm_error(test::tensor_of(ps, tv), test::tensor_of(pa, tv)), 1e-5)
          << tv.name << " after one step, " << what;
    // The summed gradient itself (Adam's step hides a wrong scale of the whole gradient):
    // 1e-5 at every step (measured: below 5e-7 over 30 steps on the emulator).
    ASSERT_EQ(ga.size(), gs.size());
    for (std::size_t k = 0; k < ga.size(); ++k)
      for (const auto& tv : alone->layout().tensors())
        EXPECT_LT(test::rel_norm_error(test::tensor_of(gs[k], tv), test::tensor_of(ga[k], tv)), 1e-5)
            << tv.name << " gradient of step " << k << ", " << what;
    ASSERT_EQ(a.size(), s.size());
    for (std::size_t k = 0; k < a.size(); ++k) {
      ASSERT_TRUE(std::isfinite(s[k].loss)) << what << " step " << k;
      EXPECT_EQ(s[k].count, a[k].count) << what << " step " << k;
      EXPECT_NEAR(s[k].loss, a[k].loss, 1e-3 * std::fabs(a[k].loss)) << what << " step " << k;
    }
  }
}

TEST_P(CudaMpi, ABatchOfFewerItemsThanRanksAndTheEvaluation) {
  const auto data = test::synthetic(41, 61, 5);
  const ModelConfig m = test::model61();
  const TrainConfig t = test::train_cfg(1);  // one item per step: the other ranks' shards are empty
  auto alone = backend(m, t, data, false), shard = backend(m, t, data, true);
  const auto a = ranked_steps(*alone, data->count, t, 5, false), s = ranked_steps(*shard, data->count, t, 5, true);
  for (std::size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(s[k].loss, a[k].loss, 1e-5 * std::fabs(a[k].loss)) << k;
  // The evaluation shares its batches (37 items each) among the ranks and adds their sums.
  const LossSums ea = alone->evaluate(*data), es = shard->evaluate(*data);
  EXPECT_EQ(es.count, ea.count);
  ASSERT_TRUE(std::isfinite(es.loss));
  EXPECT_NEAR(es.loss, ea.loss, 1e-4 * std::fabs(ea.loss));
}

TEST_P(CudaMpi, TheSameLaunchTwiceIsBitForBit) {
  const auto data = test::synthetic(80, 61, 8);
  const ModelConfig m = test::model61();
  const TrainConfig t = test::train_cfg(16);
  std::vector<double> losses[2];
  std::vector<float> params[2];
  for (int r = 0; r < 2; ++r) {
    auto b = backend(m, t, data, true);
    for (const LossSums& s : ranked_steps(*b, data->count, t, 12, true)) losses[r].push_back(s.loss);
    params[r] = b->parameters();
  }
  EXPECT_TRUE(test::bit_equal(losses[0], losses[1]));
  EXPECT_TRUE(test::bit_equal(params[0], params[1]));
}

INSTANTIATE_TEST_SUITE_P(Sums, CudaMpi, ::testing::Values(GradientSum::host, GradientSum::automatic),
                         [](const ::testing::TestParamInfo<GradientSum>& i) {
                           return i.param == GradientSum::host ? "host" : "automatic";
                         });

// NCCL asked for: where the ranks share a GPU, every rank throws the same clear error (no
// rank waits for another); where each has its own, the ranks train through it.
TEST(CudaMpiNccl, AskedForItServesOrEveryRankSaysWhyNot) {
  std::string why;
  if (!cuda_device_usable(&why)) GTEST_SKIP() << "no usable GPU: " << why;
  ASSERT_NE(comm(), nullptr) << "run under mpirun (ctest does: mpirun -np 2)";
  use_cuda_device_of_local_rank(local_rank());
  const auto data = test::synthetic(40, 61, 9);
  const ModelConfig m = test::model61();
  const TrainConfig t = test::train_cfg(8);
  gpu::CudaBackendOptions o;
  o.gradient_sum = GradientSum::nccl;
  auto b = gpu::make_cuda_backend(m, t, o);
  if (!expect_nccl()) {
    try {
      b->set_communicator(comm());
      ADD_FAILURE() << "NCCL was asked for where the ranks share a GPU, and set_communicator did not throw";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("NCCL was asked for"), std::string::npos) << msg;
      // Why: the ranks share a GPU or, where NCCL does not load, what the loader said.
      EXPECT_NE(msg.find(gpu::nccl_loadable(&why) ? "share a GPU" : why), std::string::npos) << msg;
    }
    return;
  }
  b = test::ranked(std::move(b), m, t, data, true);
  EXPECT_EQ(b->gradient_sum().rfind("NCCL 2.", 0), 0u) << b->gradient_sum();
  for (const LossSums& s : ranked_steps(*b, data->count, t, 6, true)) EXPECT_TRUE(std::isfinite(s.loss));
}

}  // namespace
}  // namespace vae
