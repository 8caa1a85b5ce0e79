// Kernel-level benchmarks of the CPU path: each fused pass against the unfused sequence of
// passes it replaces, at the reference model's sizes (batch 128, widths 400 and 784, Z 20,
// 652,832 parameters). Google Benchmark; run with --benchmark_format=json for JSON.
// Each unfused variant computes the same result with one pass per operation, as a framework
// without fusion would (separate bias add, activation, multiply, reduction, ...). Inputs are
// not reset between iterations (copying them would dominate the small passes); re-applying
// a pass to its own output keeps every value finite.
#include <benchmark/benchmark.h>

#include <vector>

#include "bench_data.h"
#include "cpu_passes.h"
#include "elementwise.h"

namespace {

using vae::Activation;
namespace ew = vae::ew;
namespace cpu = vae::cpu;
using vae::bench::random_vec;

constexpr int kRows = 128;

// ---- bias + ReLU over (128, 400) ------------------------------------------------------
void BM_BiasRelu_Fused(benchmark::State& st) {
  const int cols = static_cast<int>(st.range(0));
  auto y = random_vec(std::size_t(kRows) * cols, -1, 1, 1), b = random_vec(cols, -1e-3f, 1e-3f, 2);
  for (auto _ : st) {
    cpu::bias_act<Activation::relu>(y.data(), b.data(), kRows, cols);
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(st.iterations() * int64_t(y.size()) * 8);
}
void BM_BiasRelu_Unfused(benchmark::State& st) {
  const int cols = static_cast<int>(st.range(0));
  auto y = random_vec(std::size_t(kRows) * cols, -1, 1, 1), b = random_vec(cols, -1e-3f, 1e-3f, 2);
  for (auto _ : st) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < kRows; ++r)
      for (int c = 0; c < cols; ++c) y[std::size_t(r) * cols + c] += b[c];
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = ew::act_forward<Activation::relu>(y[i]);
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(st.iterations() * int64_t(y.size()) * 8);
}
BENCHMARK(BM_BiasRelu_Fused)->Arg(400)->Arg(784)->UseRealTime();
BENCHMARK(BM_BiasRelu_Unfused)->Arg(400)->Arg(784)->UseRealTime();

// ---- ReLU backward fused with the bias-gradient reduction, (128, 400) ------------------
void BM_ReluBackwardBiasGrad_Fused(benchmark::State& st) {
  const int cols = 400;
  auto dy = random_vec(std::size_t(kRows) * cols, -1, 1, 3), y = random_vec(dy.size(), -1, 1, 4);
  std::vector<float> db(cols);
  for (auto _ : st) {
    cpu::act_backward_bias_grad<Activation::relu>(dy.data(), y.data(), kRows, cols, db.data());
    benchmark::DoNotOptimize(db.data());
  }
}
void BM_ReluBackwardBiasGrad_Unfused(benchmark::State& st) {
  const int cols = 400;
  auto dy = random_vec(std::size_t(kRows) * cols, -1, 1, 3), y = random_vec(dy.size(), -1, 1, 4);
  std::vector<float> db(cols), mask(dy.size());
  for (auto _ : st) {
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < y.size(); ++i) mask[i] = ew::act_grad_from_output<Activation::relu>(y[i]);
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < dy.size(); ++i) dy[i] *= mask[i];
    cpu::column_sums(dy.data(), kRows, cols, db.data());
    benchmark::DoNotOptimize(db.data());
  }
}
BENCHMARK(BM_ReluBackwardBiasGrad_Fused)->UseRealTime();
BENCHMARK(BM_ReluBackwardBiasGrad_Unfused)->UseRealTime();

// ---- Bernoulli likelihood with its gradient, (128, 784) -------------------------------
void BM_BernoulliLikelihood_Fused(benchmark::State& st) {
  vae::ModelConfig cfg;
  const int D = cfg.input_dim;
  auto raw = random_vec(std::size_t(kRows) * D, -6, 6, 5), x = random_vec(raw.size(), 0, 1, 6),
       bias = random_vec(D, -1, 1, 7);
  std::vector<float> row_logp(kRows), db(D), none;
  for (auto _ : st) {
    cpu::likelihood_pass<float, true>(cfg, raw.data(), bias.data(), nullptr, x.data(), kRows, 1, 1.0f / kRows,
                                      none.data(), row_logp.data());
    cpu::column_sums(raw.data(), kRows, D, db.data());
    benchmark::DoNotOptimize(db.data());
  }
}
void BM_BernoulliLikelihood_Unfused(benchmark::State& st) {
  const int D = 784;
  auto o = random_vec(std::size_t(kRows) * D, -6, 6, 5), x = random_vec(o.size(), 0, 1, 6),
       bias = random_vec(D, -1, 1, 7);
  std::vector<float> row_logp(kRows), db(D), lp(o.size()), sig(o.size()), g(o.size());
  for (auto _ : st) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < kRows; ++r)  // bias add
      for (int d = 0; d < D; ++d) o[std::size_t(r) * D + d] += bias[d];
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < o.size(); ++i)  // log p per element
      lp[i] = x[i] * o[i] - ((o[i] > 0 ? o[i] : 0) + log1pf(expf(-fabsf(o[i]))));
#pragma omp parallel for schedule(static)
    for (int r = 0; r < kRows; ++r) {  // row sums
      float a = 0;
      for (int d = 0; d < D; ++d) a += lp[std::size_t(r) * D + d];
      row_logp[r] = a;
    }
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < o.size(); ++i) sig[i] = 1.0f / (1.0f + expf(-o[i]));  // sigmoid
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < o.size(); ++i) g[i] = (sig[i] - x[i]) * (1.0f / kRows);  // gradient
    cpu::column_sums(g.data(), kRows, D, db.data());
    benchmark::DoNotOptimize(db.data());
  }
}
BENCHMARK(BM_BernoulliLikelihood_Fused)->UseRealTime();
BENCHMARK(BM_BernoulliLikelihood_Unfused)->UseRealTime();

// ---- latent: bias, reparameterization, KL, (128, Z=20), L=1 ---------------------------
void BM_Latent_Fused(benchmark::State& st) {
  const int Z = 20;
  auto head = random_vec(std::size_t(kRows) * 2 * Z, -1, 1, 8), bias = random_vec(2 * Z, -1e-4f, 1e-4f, 9),
       eps = random_vec(std::size_t(kRows) * Z, -2, 2, 10);
  std::vector<float> z(eps.size()), kl(kRows);
  for (auto _ : st) {
    cpu::latent_forward(head.data(), bias.data(), eps.data(), kRows, 1, Z, z.data(), kl.data());
    benchmark::DoNotOptimize(kl.data());
  }
}
void BM_Latent_Unfused(benchmark::State& st) {
  const int Z = 20;
  auto head = random_vec(std::size_t(kRows) * 2 * Z, -1, 1, 8), bias = random_vec(2 * Z, -1e-4f, 1e-4f, 9),
       eps = random_vec(std::size_t(kRows) * Z, -2, 2, 10);
  std::vector<float> z(eps.size()), kl(kRows), sd(eps.size()), term(eps.size());
  for (auto _ : st) {
    for (int b = 0; b < kRows; ++b)
      for (int j = 0; j < 2 * Z; ++j) head[std::size_t(b) * 2 * Z + j] += bias[j];
    for (int b = 0; b < kRows; ++b)
      for (int j = 0; j < Z; ++j) sd[std::size_t(b) * Z + j] = expf(0.5f * head[std::size_t(b) * 2 * Z + Z + j]);
    for (int b = 0; b < kRows; ++b)
      for (int j = 0; j < Z; ++j)
        z[std::size_t(b) * Z + j] = head[std::size_t(b) * 2 * Z + j] + sd[std::size_t(b) * Z + j] * eps[std::size_t(b) * Z + j];
    for (int b = 0; b < kRows; ++b)
      for (int j = 0; j < Z; ++j) {
        const float mu = head[std::size_t(b) * 2 * Z + j], s = head[std::size_t(b) * 2 * Z + Z + j];
        term[std::size_t(b) * Z + j] = 0.5f * (mu * mu + expf(s) - s - 1);
      }
    for (int b = 0; b < kRows; ++b) {
      float a = 0;
      for (int j = 0; j < Z; ++j) a += term[std::size_t(b) * Z + j];
      kl[b] = a;
    }
    benchmark::DoNotOptimize(kl.data());
  }
}
BENCHMARK(BM_Latent_Fused)->UseRealTime();
BENCHMARK(BM_Latent_Unfused)->UseRealTime();

// ---- Adam over the reference model's 652,832 parameters --------------------------------
constexpr std::size_t kParams = 652832;
void BM_Adam_Fused(benchmark::State& st) {
  auto p = random_vec(kParams, -1, 1, 11), g = random_vec(kParams, -1, 1, 12);
  std::vector<float> m(kParams), v(kParams);
  long t = 0;
  for (auto _ : st) {
    cpu::adam_pass(p.data(), m.data(), v.data(), g.data(), kParams, ew::adam_scalars(1e-3, 0.9, 0.999, 1e-8, ++t));
    benchmark::DoNotOptimize(p.data());
  }
  st.SetBytesProcessed(st.iterations() * int64_t(kParams) * 4 * 7);
}
void BM_Adam_Unfused(benchmark::State& st) {
  auto p = random_vec(kParams, -1, 1, 11), g = random_vec(kParams, -1, 1, 12);
  std::vector<float> m(kParams), v(kParams), mhat(kParams), denom(kParams);
  long t = 0;
  for (auto _ : st) {
    const auto s = ew::adam_scalars(1e-3, 0.9, 0.999, 1e-8, ++t);
    const float b1 = float(s.beta1), b2 = float(s.beta2);
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < kParams; ++i) m[i] = b1 * m[i] + (1 - b1) * g[i];
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < kParams; ++i) v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < kParams; ++i) denom[i] = sqrtf(v[i]) * float(s.inv_sqrt_bc2) + float(s.eps);
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < kParams; ++i) p[i] -= float(s.step_size) * m[i] / denom[i];
    benchmark::DoNotOptimize(p.data());
  }
  st.SetBytesProcessed(st.iterations() * int64_t(kParams) * 4 * 7);
}
BENCHMARK(BM_Adam_Fused)->UseRealTime();
BENCHMARK(BM_Adam_Unfused)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
