// The CPU path's threads: products cut into fixed blocks (bits independent of the thread
// count) and the load governor that picks the count on a shared machine.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "blas.h"
#include "load_governor.h"
#include "test_util.h"
#include "vae/vae.h"

namespace vae {
namespace {

// C = op(A) op(B) + beta C in double, element by element: the reference for the blocked product.
std::vector<double> naive_gemm(bool ta, bool tb, int m, int n, int k, const std::vector<double>& a, int lda,
                               const std::vector<double>& b, int ldb, double beta, std::vector<double> c, int ldc) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p)
        s += (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
      c[i * ldc + j] = s + beta * c[i * ldc + j];
    }
  return c;
}

// The pool's size for a scope.
struct Threads {
  int saved = omp_get_max_threads();
  explicit Threads(int n) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(saved); }
};

template <class T>
void check_blocked_products(double tol) {
  struct Shape {
    int m, n, k;
  };
  // C taller than wide (cut by rows) and wider than tall (cut by columns), odd sizes.
  for (const Shape s : {Shape{131, 45, 33}, Shape{37, 163, 19}, Shape{97, 97, 70}})
    for (const bool ta : {false, true})
      for (const bool tb : {false, true}) {
        const int lda = ta ? s.m : s.k, ldb = tb ? s.k : s.n, ldc = s.n;
        const auto a = test::uniform_values<double>(static_cast<std::size_t>(s.m) * s.k, -1, 1, 1);
        const auto b = test::uniform_values<double>(static_cast<std::size_t>(s.k) * s.n, -1, 1, 2);
        const auto c0 = test::uniform_values<double>(static_cast<std::size_t>(s.m) * s.n, -1, 1, 3);
        const auto want = naive_gemm(ta, tb, s.m, s.n, s.k, a, lda, b, ldb, 0.5, c0, ldc);
        const std::vector<T> at(a.begin(), a.end()), bt(b.begin(), b.end());
        for (const int blocks : {1, 2, 3, 5}) {
          std::vector<std::vector<T>> by_threads;
          for (const int threads : {1, 2, 3}) {
            Threads pool(threads);
            std::vector<T> c(c0.begin(), c0.end());
            blas::gemm_in_blocks(blocks, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k,
                                 at.data(), lda, bt.data(), ldb, T(0.5), c.data(), ldc);
            by_threads.push_back(c);
          }
          const std::string what = "m " + std::to_string(s.m) + " n " + std::to_string(s.n) + " k " +
                                   std::to_string(s.k) + (ta ? " A^T" : " A") + (tb ? " B^T" : " B") + ", " +
                                   std::to_string(blocks) + " blocks";
          EXPECT_LT(test::rel_norm_error(by_threads[0], want), tol) << what;
          for (std::size_t i = 0; i < want.size(); ++i)
            ASSERT_NEAR(static_cast<double>(by_threads[0][i]), want[i], tol * 10 * std::sqrt(double(s.k))) << what << " at " << i;
          for (std::size_t t = 1; t < by_threads.size(); ++t)
            ASSERT_EQ(0, std::memcmp(by_threads[0].data(), by_threads[t].data(), want.size() * sizeof(T)))
                << what << ": " << t + 1 << " threads gave other bits than 1";
        }
      }
}

TEST(BlockedGemm, EveryCutMatchesTheProductAndTheBitsIgnoreTheThreads) {
  check_blocked_products<float>(1e-6);
  check_blocked_products<double>(1e-14);
}

// A model wide enough that every layer's products are cut (more than kMinBlock per block).
std::vector<float> params_after_steps(int threads, Precision precision) {
  const auto data = test::synthetic(300, 97, 11);
  ModelConfig m;
  m.input_dim = 97;
  m.encoder_hidden = {70};
  m.decoder_hidden = {66};
  m.latent = 5;
  TrainConfig t = test::cpu_train(67, 100);
  t.threads = threads;
  t.precision = precision;
  t.binarize = Binarize::dynamic;
  auto backend = make_backend(Device::cpu, m, t);
  backend->set_parameters(init_parameters(backend->layout(), m, 4));
  backend->set_train_data(data);
  BatchStream stream(data->count, t.batch, 4);
  Batch b;
  for (int k = 0; k < 12; ++k) {
    stream.next_rolling(b);
    backend->train_step(b);
  }
  const LossSums e = backend->evaluate(*data);
  EXPECT_TRUE(std::isfinite(e.loss));
  auto p = backend->parameters();
  p.push_back(static_cast<float>(e.loss));
  return p;
}

TEST(Threads, TrainingGivesTheSameBitsAtAnyThreadCount) {
  for (const Precision precision : {Precision::fp32, Precision::fp64}) {
    const auto one = params_after_steps(1, precision);
    for (const int threads : {2, 3, 0}) {  // 0: all cores, governed by load
      const auto other = params_after_steps(threads, precision);
      ASSERT_EQ(one.size(), other.size());
      EXPECT_EQ(0, std::memcmp(one.data(), other.data(), one.size() * sizeof(float)))
          << threads << " threads gave other bits than 1 (" << (precision == Precision::fp64 ? "fp64" : "fp32")
          << "), relative difference " << test::rel_norm_error(one, other);
    }
  }
}

TEST(LoadGovernor, ReadsTheMachinesBusyTicks) {
  MachineTicks t;
  ASSERT_TRUE(parse_cpu_ticks("cpu  100 5 50 1000 20 3 2 7 0 0", t));
  EXPECT_EQ(t.total, 1187u);
  EXPECT_EQ(t.busy, 1187u - 1000u - 20u);  // idle and iowait are not busy
  ASSERT_TRUE(parse_cpu_ticks("cpu 1 2 3 4", t));  // old kernels: four fields
  EXPECT_EQ(t.busy, 6u);
  EXPECT_FALSE(parse_cpu_ticks("cpu0 1 2 3 4 5 6 7 8", t));  // one core's line, not the machine's
  EXPECT_FALSE(parse_cpu_ticks("cpu 1 2", t));
  EXPECT_FALSE(parse_cpu_ticks("intr 1 2 3 4", t));
}

TEST(LoadGovernor, AThreadGoesWhenOtherWorkHoldsACoreAndComesBack) {
  // current count, most threads, free cores -> threads
  struct Case {
    int current, max;
    double free_cores;
    int want;
  };
  for (const Case c : {Case{2, 2, 2.0, 2}, Case{2, 2, 1.5, 2}, Case{2, 2, 1.4, 1}, Case{2, 2, 1.0, 1},
                       Case{1, 2, 1.5, 1}, Case{1, 2, 1.6, 2}, Case{1, 2, 0.2, 1}, Case{8, 8, 4.3, 4},
                       Case{3, 8, 7.9, 8}, Case{3, 8, 3.0, 3}, Case{5, 4, 4.0, 4}})
    EXPECT_EQ(governed_threads(c.current, c.max, c.free_cores), c.want)
        << "current " << c.current << ", max " << c.max << ", free cores " << c.free_cores;
}

TEST(LoadGovernor, CountsOnlyOtherProcessesAsLoad) {
  // A made-up 2-core machine at 100 ticks/s, windows of one second.
  LoadGovernor g(2, {2, 100}, {0, 0}, 0.0);
  // This process alone keeps both cores busy: no other load.
  EXPECT_EQ(g.observe({200, 200}, 2.0, 1.0), 2);
  // A busy loop arrives: 3 runnable threads on 2 cores, this process gets 4/3 of a core.
  EXPECT_EQ(g.observe({400, 400}, 2.0 + 4.0 / 3, 1.0), 1);
  // Now one thread beside the loop: one core each; the count holds.
  EXPECT_EQ(g.observe({600, 600}, 3.0 + 4.0 / 3, 1.0), 1);
  // The loop ends: one core idle.
  EXPECT_EQ(g.observe({700, 800}, 4.0 + 4.0 / 3, 1.0), 2);
  // A reading after a long wait (between calls) says nothing about now.
  EXPECT_EQ(g.observe({2700, 2800}, 4.0 + 4.0 / 3, 20.0), 2);
  // Nor does one whose ticks went backwards.
  EXPECT_EQ(g.observe({100, 200}, 5.0, 1.0), 2);
}

}  // namespace
}  // namespace vae
