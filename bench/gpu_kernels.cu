// Kernel-level benchmarks of the CUDA backend: each fused kernel against the unfused
// sequence of operations it replaces, one kernel per operation as a framework without
// fusion runs them, at the reference model's sizes (batch 128, 1024, 4096; widths 400 and
// 784; Z 20; the reference model's 652,832 parameters for the optimizer):
//   bias_act_relu        y = relu(y + b)              vs  bias add; relu
//   act_backward_bias    dy *= relu'(y), db = sums    vs  multiply; column partials; finish
//   likelihood           Bernoulli log p, d/dlogits,  vs  bias add; log-prob; sigmoid; gradient;
//                        bias grad, row log p             row sums; column partials; finish
//   latent_forward       bias, z, KL                  vs  bias add; reparameterize; KL terms; row sums
//   latent_backward      d mu, d s, head-bias grad    vs  d mu; d s; column partials; finish
//   optimizer            one launch over the buffer   vs  one launch per tensor (8 tensors)
// and the forward GEMM + bias + ReLU of a hidden layer two ways: cuBLAS GEMM + our
// bias_act kernel, or cuBLASLt's GEMM with the RELU_BIAS epilogue (the backend's
// CudaBackendOptions::lt_bias_relu). The output says which is faster.
//
// What is timed is the kernel cases' launch (bench/kernel_cases/): the cases the GPU test
// suite runs at odd sizes (tests/cuda/test_kernel_cases.cpp), made here at these sizes.
// Before timing, each case is checked as the test suite checks it (its CPU twin, a second
// launch bit for bit, its extra properties), each unfused sequence runs on the case's
// inputs and is checked against the same twin, and against the fused kernel's outputs
// with the tolerances each variant names (the "check" column).
//
// Timing: CUDA events around each repeat; before each, a spin kernel keeps the GPU busy
// while the host enqueues the repeat, so a time is GPU execution (kernels and the gaps
// between them), not host launch latency. Warm-up, then the median (and min, p90) of the
// repeats. Cold: each repeat works on the next of several copies of the case that together
// exceed twice the L2 cache, so inputs come from HBM; hot: one copy, L2-resident where it
// fits (as in a training step, where a kernel reads what the previous one wrote).
// GB/s is the operation's minimal traffic (each input read once, each output written
// once) over the time, the same byte count for the fused and the unfused variant, so the
// two compare as throughput of the same work.
//
//   gpu_kernels [--json PATH] [--repeats N] [--warmup N] [--batches 128,1024,4096]
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cuda_check.cuh"
#include "device_memory.cuh"
#include "elementwise.h"
#include "kernel_cases/harness.h"
#include "kernel_cases/latent.h"
#include "kernel_cases/layers.h"
#include "kernel_cases/likelihood.h"
#include "kernel_cases/optimizer.h"
#include "kernel_timing.h"
#include "unfused_kernels.cuh"
#include "vae/error.h"
#include "vae/layout.h"

namespace {

using vae::Activation;
using vae::gpu::DeviceBuffer;
namespace cases = vae::cases;
namespace ew = vae::ew;
namespace gpu = vae::gpu;

constexpr int kThreads = 256;
constexpr int kHidden = 400, kInput = 784, kLatent = 20;

int blocks_for(std::size_t n) { return static_cast<int>(std::min<std::size_t>((n + kThreads - 1) / kThreads, 65535)); }

using namespace vae::bench;  // the unfused kernels

void launch_check(const char* what) { VAE_LAUNCH_CHECK(what); }

// Column sums of m (rows, cols) into out, two launches; partial holds ceil(rows/64)*cols.
void column_sums_unfused(const float* m, int rows, int cols, float* partial, float* out, cudaStream_t s) {
  const int chunks = (rows + kPartialRows - 1) / kPartialRows;
  const dim3 grid((cols + 127) / 128, chunks);
  column_partial_kernel<<<grid, 128, 0, s>>>(m, rows, cols, partial);
  launch_check("column_partial_kernel");
  column_finish_kernel<<<(cols + 127) / 128, 128, 0, s>>>(partial, chunks, cols, out);
  launch_check("column_finish_kernel");
}
// Scratch of the unfused sequences, shared by every copy of a case.
std::shared_ptr<DeviceBuffer<float>> scratch(std::size_t n, const char* what) {
  return std::make_shared<DeviceBuffer<float>>(n, what);
}
std::size_t partial_floats(int rows, int cols) {
  return static_cast<std::size_t>((rows + kPartialRows - 1) / kPartialRows) * cols;
}

// ---- the benchmark --------------------------------------------------------------------------------

struct Options {
  std::string json;
  int repeats = 200;
  int warmup = 20;
  std::vector<int> batches{128, 1024, 4096};
};

// An output the variant must reproduce, against the case's own launch: atol + rtol |fused|.
struct Agreement {
  std::string output;  // the case's output array, by name
  double atol, rtol;
};

// Makes a variant's run from the first copy of a case, with the scratch it needs (shared
// by every copy).
template <class C>
using Maker = std::function<std::function<void(C&)>(C&)>;
// A variant that needs no scratch of its own.
template <class C, class F>
Maker<C> plain(F f) {
  return [f](C&) { return std::function<void(C&)>(f); };
}

// A timed variant of a case: the case's own launch (no maker), or another sequence doing
// the same work on the case's arrays.
template <class C>
struct Variant {
  std::string name;
  int launches;
  Maker<C> make;
  std::vector<Agreement> agree;
};

struct Spec {
  std::string op, shape;
  int batch;  // 0: independent of the batch
};

class Bench {
 public:
  explicit Bench(const Options& opt) : opt_(opt) {
    int dev = 0;
    VAE_CUDA_CHECK(cudaGetDevice(&dev));
    VAE_CUDA_CHECK(cudaGetDeviceProperties(&info_.prop, dev));
    info_.l2 = static_cast<std::size_t>(info_.prop.l2CacheSize);
    info_.repeats = opt.repeats;
    info_.warmup = opt.warmup;
    timer_ = std::make_unique<vae::bench::Timer>(ctx_.stream(), opt.warmup, opt.repeats, [this] {
      spin_kernel<<<1, 1, 0, s()>>>(100000);  // 100 us: the host enqueues the repeat meanwhile
      launch_check("spin_kernel");
    });
  }

  int run() {
    for (int B : opt_.batches) {
      bias_act(B);
      act_backward(B);
      likelihood(B);
      latent_forward(B);
      latent_backward(B);
      gemm(B, kInput, kHidden);   // encoder hidden layer
      gemm(B, kLatent, kHidden);  // decoder hidden layer
    }
    optimizer();
    vae::bench::print_table(rows_, info_);
    if (!opt_.json.empty()) vae::bench::write_json(opt_.json, rows_, info_);
    return info_.failed_checks ? 1 : 0;
  }

 private:
  cudaStream_t s() const { return ctx_.stream(); }

  // Copies of the case for the cold runs (together over twice the L2), the check, then each
  // variant timed cold and hot.
  template <class C>
  void measure(const Spec& spec, const std::function<std::unique_ptr<C>()>& make,
               const std::vector<Variant<C>>& variants) {
    std::vector<std::unique_ptr<C>> copies;
    copies.push_back(make());
    const int sets = vae::bench::sets_for(copies[0]->bytes(), info_.l2);
    while (static_cast<int>(copies.size()) < sets) copies.push_back(make());
    C& first = *copies[0];
    std::vector<std::function<void(C&)>> runs;
    for (const auto& v : variants)
      runs.push_back(v.make ? v.make(first) : std::function<void(C&)>([this](C& c) { c.launch(ctx_); }));
    const std::string verdict = check(first, variants, runs);
    if (verdict != "ok") ++info_.failed_checks;
    const vae::cases::Traffic t = first.traffic();
    for (std::size_t i = 0; i < variants.size(); ++i) {
      vae::bench::Row r;
      r.op = spec.op;
      r.shape = spec.shape;
      r.variant = variants[i].name;
      r.check = verdict;
      r.batch = spec.batch;
      r.launches = variants[i].launches;
      r.bytes = t.bytes;
      r.flops = t.flops;
      const auto& run = runs[i];
      r.cold = timer_->time([&](int k) { run(*copies[static_cast<std::size_t>(k)]); }, sets);
      r.hot = timer_->time([&](int) { run(first); }, 1);
      rows_.push_back(r);
    }
    std::fprintf(stderr, "  %s %s: done\n", spec.op.c_str(), spec.shape.c_str());
  }

  // The case checked as the test suite checks it; each other variant against the case's
  // twin and against the case's own launch. "ok", or "FAILED: " and the first failure.
  template <class C>
  std::string check(C& c, const std::vector<Variant<C>>& variants, const std::vector<std::function<void(C&)>>& runs) {
    cases::Check k;
    c.check(ctx_, k);
    c.reset();
    c.launch(ctx_);
    ctx_.sync();
    std::vector<std::vector<float>> own;
    for (const auto* o : c.outputs()) own.push_back(o->download());
    for (std::size_t i = 0; i < variants.size(); ++i) {
      if (!variants[i].make) continue;
      c.reset();
      runs[i](c);
      ctx_.sync();
      cases::Check v;
      c.verify(v);
      for (const Agreement& a : variants[i].agree) {
        std::size_t j = 0;
        while (j < c.outputs().size() && c.outputs()[j]->name() != a.output) ++j;
        if (j == c.outputs().size()) throw vae::Error(c.name() + " has no output named " + a.output);
        v.close(c.outputs()[j]->download(), own[j], a.atol, a.rtol, a.output + " against the case's launch");
      }
      for (const auto& f : v.failures()) k.fail(variants[i].name + ": " + f);
    }
    if (k.passed()) return "ok";
    std::fprintf(stderr, "%s: FAILED%s\n", c.name().c_str(), k.report().c_str());
    return "FAILED: " + k.failures().front();
  }

  void bias_act(int B) {
    using C = cases::BiasActCase;
    measure<C>({"bias_act_relu", cases::shape(B, kHidden), B},
               [B] { return std::make_unique<C>(Activation::relu, B, kHidden); },
               {{"fused", 1, nullptr, {}},
                {"unfused",
                 2,
                 plain<C>([this](C& c) {
                   const std::size_t n = c.y().size();
                   add_bias_kernel<<<blocks_for(n), kThreads, 0, s()>>>(c.y().get(), c.b().get(), c.rows(), c.cols());
                   launch_check("add_bias_kernel");
                   relu_kernel<<<blocks_for(n), kThreads, 0, s()>>>(c.y().get(), n);
                   launch_check("relu_kernel");
                 }),
                 {{"y", 1e-6, 1e-6}}}});
  }

  void act_backward(int B) {
    using C = cases::ActBackwardCase;
    auto unfused = [this](C& first) {
      auto partial = scratch(partial_floats(first.rows(), first.cols()), "partial");
      return std::function<void(C&)>([this, partial](C& c) {
        mul_relu_grad_kernel<<<blocks_for(c.dy().size()), kThreads, 0, s()>>>(c.dy().get(), c.y().get(), c.dy().size());
        launch_check("mul_relu_grad_kernel");
        column_sums_unfused(c.dy().get(), c.rows(), c.cols(), partial->get(), c.db().get(), s());
      });
    };
    measure<C>({"act_backward_bias", cases::shape(B, kHidden), B},
               [B] { return std::make_unique<C>(Activation::relu, B, kHidden); },
               {{"fused", 1, nullptr, {}},
                {"unfused", 3, unfused, {{"dy", 1e-7, 1e-6}, {"db", 1e-4 * std::sqrt(double(B)), 1e-5}}}});
  }

  void likelihood(int B) {
    using C = cases::LikelihoodCase;
    auto unfused = [this](C& first) {
      const std::size_t n = first.out().size();
      auto lp = scratch(n, "log-prob terms"), sig = scratch(n, "sigmoid");
      auto partial = scratch(partial_floats(first.rows(), first.D()), "partial");
      return std::function<void(C&)>([this, n, lp, sig, partial](C& c) {
        const int R = c.rows(), D = c.D();
        float* o = c.out().get();
        add_bias_kernel<<<blocks_for(n), kThreads, 0, s()>>>(o, c.bias().get(), R, D);
        launch_check("add_bias_kernel");
        bernoulli_logprob_kernel<<<blocks_for(n), kThreads, 0, s()>>>(c.x().get(), o, n, lp->get());
        launch_check("bernoulli_logprob_kernel");
        sigmoid_kernel<<<blocks_for(n), kThreads, 0, s()>>>(o, n, sig->get());
        launch_check("sigmoid_kernel");
        bernoulli_grad_kernel<<<blocks_for(n), kThreads, 0, s()>>>(sig->get(), c.x().get(), n, c.scale(), o);
        launch_check("bernoulli_grad_kernel");
        row_sum_kernel<<<(R + 7) / 8, 256, 0, s()>>>(lp->get(), R, D, c.row_logp().get());
        launch_check("row_sum_kernel");
        column_sums_unfused(o, R, D, partial->get(), c.dbias().get(), s());
      });
    };
    measure<C>({"likelihood_bernoulli", cases::shape(B, kInput), B},
               [B] {
                 return std::make_unique<C>(vae::Likelihood::bernoulli, false, B, 1, kInput,
                                            gpu::LikelihoodMode::backward);
               },
               {{"fused", 1, nullptr, {}},
                {"unfused",
                 7,
                 unfused,
                 {{"logits", 1e-7, 1e-4}, {"output bias gradient", 1e-5, 1e-4}, {"row log p", 1e-3, 1e-5}}}});
  }

  void latent_forward(int B) {
    using C = cases::LatentForwardCase;
    auto unfused = [this](C& first) {
      auto terms = scratch(static_cast<std::size_t>(first.n()) * first.Z(), "KL terms");
      return std::function<void(C&)>([this, terms](C& c) {
        const int n = c.n(), Z = c.Z();
        const std::size_t nz = static_cast<std::size_t>(n) * Z;
        add_bias_kernel<<<blocks_for(2 * nz), kThreads, 0, s()>>>(c.head().get(), c.bias().get(), n, 2 * Z);
        launch_check("add_bias_kernel");
        reparam_kernel<<<blocks_for(nz), kThreads, 0, s()>>>(c.head().get(), c.eps(), n, Z, c.z().get());
        launch_check("reparam_kernel");
        kl_terms_kernel<<<blocks_for(nz), kThreads, 0, s()>>>(c.head().get(), n, Z, terms->get());
        launch_check("kl_terms_kernel");
        row_sum_kernel<<<(n + 7) / 8, 256, 0, s()>>>(terms->get(), n, Z, c.kl().get());
        launch_check("row_sum_kernel");
      });
    };
    measure<C>({"latent_forward", cases::shape(B, kLatent), B},
               [B] { return std::make_unique<C>(B, 1, kLatent, false); },
               {{"fused", 1, nullptr, {}}, {"unfused", 4, unfused, {{"z", 1e-6, 1e-5}, {"kl", 1e-5, 1e-5}}}});
  }

  void latent_backward(int B) {
    using C = cases::LatentBackwardCase;
    auto unfused = [this](C& first) {
      auto partial = scratch(partial_floats(first.n(), 2 * first.Z()), "partial");
      return std::function<void(C&)>([this, partial](C& c) {
        const int n = c.n(), Z = c.Z();
        const std::size_t nz = static_cast<std::size_t>(n) * Z;
        latent_dmu_kernel<<<blocks_for(nz), kThreads, 0, s()>>>(c.head().get(), c.dz().get(), n, Z, c.beta_scale(),
                                                                c.dhead().get());
        launch_check("latent_dmu_kernel");
        latent_ds_kernel<<<blocks_for(nz), kThreads, 0, s()>>>(c.head().get(), c.dz().get(), c.eps(), n, Z,
                                                               c.beta_scale(), c.dhead().get());
        launch_check("latent_ds_kernel");
        column_sums_unfused(c.dhead().get(), n, 2 * Z, partial->get(), c.dbias().get(), s());
      });
    };
    measure<C>(
        {"latent_backward", cases::shape(B, kLatent), B},
        [B] { return std::make_unique<C>(cases::LatentGrad::reparam, B, 1, kLatent); },
        {{"fused", 1, nullptr, {}},
         {"unfused", 4, unfused, {{"dhead", 1e-7, 1e-5}, {"head bias gradient", 1e-5 * std::sqrt(double(B)), 1e-5}}}});
  }

  // cuBLAS + bias_act against the epilogue: the case (cuBLASLt) checks the two agree.
  void gemm(int B, int in, int out) {
    using C = cases::LtBiasReluCase;
    measure<C>({"gemm_bias_relu", cases::layer_shape(B, in, out), B},
               [B, in, out] { return std::make_unique<C>(B, in, out); },
               {{"cublas+bias_act", 2, plain<C>([this](C& c) { c.launch_unfused(ctx_); }), {}},
                {"cublaslt_epilogue", 1, nullptr, {}}});
  }

  // Adam over the reference model's flat buffer (784-400-20, 20-400-784), zero padding.
  void optimizer() {
    using C = cases::OptimizerCase;
    const vae::ModelConfig model;
    const vae::ParamLayout layout(model);
    cases::OptimizerShape shape;
    shape.lr = shape.cfg.lr;
    shape.n = layout.total();
    shape.encoder_end = layout.encoder_end();
    shape.counts = {100, 100};
    shape.tensors = layout.tensors();
    const ew::OptimizerScalars host = ew::optimizer_scalars(shape.cfg, shape.lr, 100);
    auto unfused = plain<C>([this, host](C& c) {
      for (const auto& tv : c.shape().tensors) {
        const std::size_t o = tv.offset, m = tv.size();
        optimizer_tensor_kernel<<<blocks_for(m), kThreads, 0, s()>>>(c.p().get() + o, c.g().get() + o, c.s1().get() + o,
                                                                     c.s2().get() + o, m, host);
        launch_check("optimizer_tensor_kernel");
      }
    });
    const int tensors = static_cast<int>(shape.tensors.size());
    measure<C>(
        {"optimizer_adam", std::to_string(shape.n) + " params, " + std::to_string(tensors) + " tensors", 0},
        [shape] { return std::make_unique<C>(shape); },
        {{"fused", 1, nullptr, {}},
         {"unfused", tensors, unfused, {{"params", 1e-7, 1e-6}, {"slot 1", 1e-9, 1e-6}, {"slot 2", 1e-12, 1e-6}}}});
  }

  Options opt_;
  cases::Context ctx_;
  vae::bench::RunInfo info_;
  std::unique_ptr<vae::bench::Timer> timer_;
  std::vector<vae::bench::Row> rows_;
};

std::vector<int> parse_batches(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const int v = std::atoi(item.c_str());
    if (v <= 0) throw vae::Error("--batches: '" + text + "' is not a list of positive integers");
    out.push_back(v);
  }
  if (out.empty()) throw vae::Error("--batches: empty list");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options opt;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw vae::Error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--json") {
        opt.json = value();
      } else if (a == "--repeats") {
        opt.repeats = std::atoi(value().c_str());
      } else if (a == "--warmup") {
        opt.warmup = std::atoi(value().c_str());
      } else if (a == "--batches") {
        opt.batches = parse_batches(value());
      } else if (a == "-h" || a == "--help") {
        std::printf("usage: gpu_kernels [--json PATH] [--repeats N] [--warmup N] [--batches 128,1024,4096]\n");
        return 0;
      } else {
        throw vae::Error("unknown argument '" + a + "' (see --help)");
      }
    }
    if (opt.repeats < 1 || opt.warmup < 0) throw vae::Error("--repeats must be >= 1 and --warmup >= 0");
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
      std::fprintf(stderr, "gpu_kernels: no usable GPU (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "no device");
      return 2;
    }
    Bench bench(opt);
    return bench.run();
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "gpu_kernels: %s\n", ex.what());
    return 1;
  }
}
