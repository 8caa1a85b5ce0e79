// How the CUDA backend finds NCCL and chooses its gradient sum (kernels/allreduce.cu), in a
// real CUDA build, on any machine: libnccl.so.2 opened at run time and checked (its entry
// points, its version), a missing one named, and the choice on one rank with and without a
// usable GPU. ctest runs each case in its own process (the library is looked up once per
// process), with VAE_NCCL_LIBRARY set or not.
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "allreduce.cuh"
#include "gpu_test_util.h"
#include "internal.h"

namespace vae {
namespace {

// NCCL asked for on one rank that cannot have it: the error says so, and why (`why`).
void expect_nccl_refused(const std::string& why) {
  test::OneRank one;
  try {
    gpu::open_nccl_sum(one, gpu::GradientSum::nccl);
    ADD_FAILURE() << "NCCL was asked for where it cannot serve, and open_nccl_sum did not throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("NCCL was asked for, but 1 of 1 ranks cannot use it (this rank: "), std::string::npos) << msg;
    EXPECT_NE(msg.find(why), std::string::npos) << msg;
  }
}

TEST(NcclLoader, FindsTheLibraryCMakeFound) {
  ASSERT_EQ(std::getenv("VAE_NCCL_LIBRARY"), nullptr) << "ctest runs this case without VAE_NCCL_LIBRARY";
  std::string why;
  EXPECT_TRUE(gpu::nccl_loadable(&why)) << "CMake found " << VAE_TEST_NCCL_LIBRARY << ", yet: " << why;
  EXPECT_EQ(why, "");
}

TEST(NcclLoader, NamesAMissingLibrary) {
  const char* named = std::getenv("VAE_NCCL_LIBRARY");
  if (!named) GTEST_SKIP() << "ctest runs this case with VAE_NCCL_LIBRARY naming a file that is not there";
  std::string why;
  EXPECT_FALSE(gpu::nccl_loadable(&why));
  EXPECT_NE(why.find(named), std::string::npos) << why;
  EXPECT_NE(why.find("VAE_NCCL_LIBRARY"), std::string::npos) << why;  // how to point at one
  // Without NCCL, the automatic choice is the host path and NCCL asked for says why.
  test::OneRank one;
  EXPECT_EQ(gpu::open_nccl_sum(one, gpu::GradientSum::automatic), nullptr);
  expect_nccl_refused(named);
}

// One rank: NCCL where a GPU is usable and NCCL loads; else the host path, and NCCL asked for
// says why (the CUDA call that found no GPU, or the loader).
TEST(NcclLoader, OneRankChoosesNcclOnlyWithAGpu) {
  ASSERT_EQ(std::getenv("VAE_NCCL_LIBRARY"), nullptr) << "ctest runs this case without VAE_NCCL_LIBRARY";
  test::OneRank one;
  std::string why, loader;
  const bool loads = gpu::nccl_loadable(&loader);
  EXPECT_EQ(gpu::open_nccl_sum(one, gpu::GradientSum::host), nullptr);
  if (cuda_device_usable(&why) && loads) {
    auto sum = gpu::open_nccl_sum(one, gpu::GradientSum::automatic);
    ASSERT_NE(sum, nullptr);
    EXPECT_EQ(sum->description().rfind("NCCL 2.", 0), 0u) << sum->description();
    return;
  }
  EXPECT_EQ(gpu::open_nccl_sum(one, gpu::GradientSum::automatic), nullptr) << "no GPU (" << why << ") or no NCCL";
  // Why: the loader's words, or the CUDA call that found no GPU.
  expect_nccl_refused(loads ? std::string("cudaGetDevice") : loader);
}

}  // namespace
}  // namespace vae
