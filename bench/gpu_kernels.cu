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
//   optimizer            one launch over the buffer   vs  one launch per tensor (10 tensors)
// and the forward GEMM + bias + ReLU of a hidden layer two ways: cuBLAS GEMM + our
// bias_act kernel, or cuBLASLt's GEMM with the RELU_BIAS epilogue (the backend's
// CudaBackendOptions::lt_bias_relu). The output says which is faster.
//
// Timing: CUDA events around each repeat; before each, a spin kernel keeps the GPU busy
// while the host enqueues the repeat, so a time is GPU execution (kernels and the gaps
// between them), not host launch latency. Warm-up, then the median (and min, p90) of the
// repeats. Cold: each repeat works on the next of several buffer sets that together exceed
// twice the L2 cache, so inputs come from HBM; hot: one buffer set, L2-resident where it
// fits (as in a training step, where a kernel reads what the previous one wrote).
// GB/s is the operation's minimal traffic (each input read once, each output written
// once) over the time, the same byte count for the fused and the unfused variant, so the
// two compare as throughput of the same work. Before timing, both variants run from the
// same inputs and their outputs are compared (the "check" column).
//
//   gpu_kernels [--json PATH] [--repeats N] [--warmup N] [--batches 128,1024,4096]
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench_data.h"
#include "column_sum.cuh"
#include "cuda_check.cuh"
#include "device_memory.cuh"
#include "latent.cuh"
#include "layers.cuh"
#include "likelihood.cuh"
#include "optimizer.cuh"
#include "step_record.cuh"
#include "vae/elementwise.h"
#include "vae/error.h"
#include "vae/layout.h"

namespace {

using vae::Activation;
using vae::gpu::DeviceBuffer;
namespace ew = vae::ew;
namespace gpu = vae::gpu;

constexpr int kThreads = 256;
constexpr int kHidden = 400, kInput = 784, kLatent = 20;

int blocks_for(std::size_t n) { return static_cast<int>(std::min<std::size_t>((n + kThreads - 1) / kThreads, 65535)); }

// ---- the unfused operations: one kernel each --------------------------------------------------

__global__ void spin_kernel(unsigned long long ns) {
#if defined(VAE_CUDA_EMU)
  (void)ns;  // the CPU emulator (tests/emu) runs this program for its checks, not its times
#else
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
#endif
}

// y[r, c] += b[c]
__global__ void add_bias_kernel(float* y, const float* b, int rows, int cols) {
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    y[i] += b[i % static_cast<std::size_t>(cols)];
}
__global__ void relu_kernel(float* y, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    y[i] = ew::act_forward<Activation::relu>(y[i]);
}
__global__ void mul_relu_grad_kernel(float* dy, const float* y, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    dy[i] *= ew::act_grad_from_output<Activation::relu>(y[i]);
}
// Column sums in two launches: partial[chunk][c] over 64-row chunks, then the chunks in order.
constexpr int kPartialRows = 64;
__global__ void column_partial_kernel(const float* m, int rows, int cols, float* partial) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  const int chunk = blockIdx.y;
  if (c >= cols) return;
  float s = 0.0f;
  const int r1 = min(rows, (chunk + 1) * kPartialRows);
  for (int r = chunk * kPartialRows; r < r1; ++r) s += m[static_cast<std::size_t>(r) * cols + c];
  partial[static_cast<std::size_t>(chunk) * cols + c] = s;
}
__global__ void column_finish_kernel(const float* partial, int chunks, int cols, float* out) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float s = 0.0f;
  for (int k = 0; k < chunks; ++k) s += partial[static_cast<std::size_t>(k) * cols + c];
  out[c] = s;
}
// Row sums: one warp per row.
__global__ void row_sum_kernel(const float* m, int rows, int cols, float* out) {
  const int r = blockIdx.x * (blockDim.x / 32) + static_cast<int>(threadIdx.x / 32);
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;
  float s = 0.0f;
  for (int c = lane; c < cols; c += 32) s += m[static_cast<std::size_t>(r) * cols + c];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) out[r] = s;
}
// Bernoulli pieces: log p terms, sigmoid, gradient.
__global__ void bernoulli_logprob_kernel(const float* x, const float* o, std::size_t n, float* lp) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float v = o[i];
    lp[i] = x[i] * v - ((v > 0.0f ? v : 0.0f) + log1pf(expf(-fabsf(v))));
  }
}
__global__ void sigmoid_kernel(const float* o, std::size_t n, float* s) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    s[i] = 1.0f / (1.0f + expf(-o[i]));
}
__global__ void bernoulli_grad_kernel(const float* s, const float* x, std::size_t n, float scale, float* g) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    g[i] = (s[i] - x[i]) * scale;
}
// Latent pieces, (n, Z) with head (n, 2Z).
__global__ void reparam_kernel(const float* head, const float* eps, int n, int Z, float* z) {
  const std::size_t total = static_cast<std::size_t>(n) * Z;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t b = i / Z, j = i % Z;
    z[i] = ew::reparameterize(head[b * 2 * Z + j], head[b * 2 * Z + Z + j], eps[i]);
  }
}
__global__ void kl_terms_kernel(const float* head, int n, int Z, float* terms) {
  const std::size_t total = static_cast<std::size_t>(n) * Z;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t b = i / Z, j = i % Z;
    terms[i] = ew::kl_term(head[b * 2 * Z + j], head[b * 2 * Z + Z + j]);
  }
}
__global__ void latent_dmu_kernel(const float* head, const float* dz, int n, int Z, float beta_scale, float* dhead) {
  const std::size_t total = static_cast<std::size_t>(n) * Z;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t b = i / Z, j = i % Z;
    dhead[b * 2 * Z + j] = ew::latent_dmu(head[b * 2 * Z + j], dz[i], beta_scale);
  }
}
__global__ void latent_ds_kernel(const float* head, const float* dz, const float* eps, int n, int Z, float beta_scale,
                                 float* dhead) {
  const std::size_t total = static_cast<std::size_t>(n) * Z;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t b = i / Z, j = i % Z;
    dhead[b * 2 * Z + Z + j] = ew::latent_ds(head[b * 2 * Z + Z + j], dz[i] * eps[i], beta_scale);
  }
}
// One tensor's optimizer update with host-computed scalars (a per-tensor launch).
__global__ void optimizer_tensor_kernel(float* p, const float* g, float* s1, float* s2, std::size_t n,
                                        ew::OptimizerScalars s) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    ew::optimizer_update(p[i], s1[i], s2[i], g[i], s);
}

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

// ---- buffers ------------------------------------------------------------------------------------

using vae::bench::random_vec;

// A device array with a pristine copy of its initial values, to restore before a check.
struct Array {
  DeviceBuffer<float> buf;
  std::vector<float> init;
  Array() = default;
  Array(std::vector<float> values, const char* what) : buf(values.size(), what), init(std::move(values)) { reset(); }
  explicit Array(std::size_t n, const char* what) : buf(n, what), init(n, 0.0f) { reset(); }
  void reset() {
    VAE_CUDA_CHECK(cudaMemcpy(buf.get(), init.data(), init.size() * sizeof(float), cudaMemcpyHostToDevice));
    // A pageable copy may return before it lands, and the kernels run on a non-blocking stream.
    VAE_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<float> download() const {
    std::vector<float> v(buf.size());
    VAE_CUDA_CHECK(cudaMemcpy(v.data(), buf.get(), v.size() * sizeof(float), cudaMemcpyDeviceToHost));
    return v;
  }
  float* get() const { return buf.get(); }
};

// max |a - b| / (atol + rtol |b|) over the elements; <= 1 passes.
double worst(const std::vector<float>& a, const std::vector<float>& b, double atol, double rtol) {
  if (a.size() != b.size()) return INFINITY;
  double w = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double e = std::fabs(double(a[i]) - double(b[i])) / (atol + rtol * std::fabs(double(b[i])));
    if (!(e <= w)) w = std::isfinite(e) ? e : INFINITY;
  }
  return w;
}

// ---- timing -------------------------------------------------------------------------------------

struct Stats {
  double median_us = 0, min_us = 0, p90_us = 0;
};

struct Options {
  std::string json;
  int repeats = 200;
  int warmup = 20;
  std::vector<int> batches{128, 1024, 4096};
};

class Timer {
 public:
  Timer(cudaStream_t stream, int warmup, int repeats) : stream_(stream), warmup_(warmup), repeats_(repeats) {
    VAE_CUDA_CHECK(cudaEventCreate(&start_));
    VAE_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~Timer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // fn(set) for set = repeat % sets (sets = 1: always the same buffers).
  Stats time(const std::function<void(int)>& fn, int sets) {
    for (int i = 0; i < warmup_; ++i) fn(i % sets);
    VAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<double> us;
    for (int r = 0; r < repeats_; ++r) {
      spin_kernel<<<1, 1, 0, stream_>>>(100000);  // 100 us: the host enqueues the repeat meanwhile
      launch_check("spin_kernel");
      VAE_CUDA_CHECK(cudaEventRecord(start_, stream_));
      fn(r % sets);
      VAE_CUDA_CHECK(cudaEventRecord(stop_, stream_));
      VAE_CUDA_CHECK(cudaEventSynchronize(stop_));
      float ms = 0;
      VAE_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
      us.push_back(1e3 * double(ms));
    }
    std::sort(us.begin(), us.end());
    Stats s;
    s.median_us = us.size() % 2 ? us[us.size() / 2] : 0.5 * (us[us.size() / 2 - 1] + us[us.size() / 2]);
    s.min_us = us.front();
    s.p90_us = us[std::min(us.size() - 1, static_cast<std::size_t>(0.9 * double(us.size())))];
    return s;
  }

 private:
  cudaStream_t stream_;
  int warmup_, repeats_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// ---- cases --------------------------------------------------------------------------------------

struct Variant {
  std::string name;  // "fused", "unfused", "cublas+bias_act", "cublaslt_epilogue"
  int launches = 1;
  std::function<void(int)> run;  // on buffer set k
};

struct Case {
  std::string op, shape;
  int batch = 0;  // 0: independent of the batch
  double bytes = 0, flops = 0;
  int sets = 1;  // buffer sets for the cold measurement
  std::vector<Variant> variants;
  std::function<std::string()> check;  // "" when the variants agree, else what differs
};

struct Row {
  std::string op, shape, variant, check;
  int batch, launches;
  double bytes, flops;
  Stats cold, hot;
};

// Buffer sets whose total exceeds twice the L2 (at most 64 sets and 2 GiB).
int sets_for(std::size_t bytes_per_set, std::size_t l2) {
  const std::size_t want = (2 * l2) / std::max<std::size_t>(1, bytes_per_set) + 2;
  const std::size_t cap = (std::size_t(2) << 30) / std::max<std::size_t>(1, bytes_per_set);
  return static_cast<int>(std::max<std::size_t>(1, std::min<std::size_t>({want, 64, cap})));
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

class Bench {
 public:
  explicit Bench(const Options& opt) : opt_(opt) {
    VAE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    VAE_CUBLAS_CHECK(cublasCreate(&blas_));
    workspace_ = DeviceBuffer<char>(std::size_t(32) << 20, "the cuBLAS workspace");
    VAE_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
    VAE_CUBLAS_CHECK(cublasSetWorkspace(blas_, workspace_.get(), workspace_.bytes()));
    VAE_CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
    VAE_CUBLAS_CHECK(cublasSetAtomicsMode(blas_, CUBLAS_ATOMICS_NOT_ALLOWED));
    lt_ = std::make_unique<gpu::LtBiasRelu>(workspace_.get(), workspace_.bytes());
    int dev = 0;
    VAE_CUDA_CHECK(cudaGetDevice(&dev));
    VAE_CUDA_CHECK(cudaGetDeviceProperties(&prop_, dev));
    l2_ = static_cast<std::size_t>(prop_.l2CacheSize);
    timer_ = std::make_unique<Timer>(stream_, opt.warmup, opt.repeats);
  }
  ~Bench() {
    cudaStreamSynchronize(stream_);
    lt_.reset();
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }

  int run() {
    for (int B : opt_.batches) {
      measure(bias_act_case(B));
      measure(act_backward_case(B));
      measure(likelihood_case(B));
      measure(latent_forward_case(B));
      measure(latent_backward_case(B));
      measure(gemm_case(B, kInput, kHidden));   // encoder hidden layer
      measure(gemm_case(B, kLatent, kHidden));  // decoder hidden layer
    }
    measure(optimizer_case());
    print_table();
    if (!opt_.json.empty()) write_json();
    return failed_checks_ ? 1 : 0;
  }

 private:
  cudaStream_t s() const { return stream_; }

  void measure(Case c) {
    std::string check = "ok";
    if (c.check) {
      const std::string why = c.check();
      if (!why.empty()) {
        check = "FAILED: " + why;
        ++failed_checks_;
      }
    }
    for (auto& v : c.variants) {
      Row r;
      r.op = c.op;
      r.shape = c.shape;
      r.variant = v.name;
      r.check = check;
      r.batch = c.batch;
      r.launches = v.launches;
      r.bytes = c.bytes;
      r.flops = c.flops;
      r.cold = timer_->time(v.run, c.sets);
      r.hot = timer_->time(v.run, 1);
      rows_.push_back(r);
    }
    std::fprintf(stderr, "  %s %s: done\n", c.op.c_str(), c.shape.c_str());
  }

  // ---- bias + ReLU, (B, 400) -------------------------------------------------------------------
  Case bias_act_case(int B) {
    const int cols = kHidden;
    const std::size_t n = static_cast<std::size_t>(B) * cols;
    auto sets = std::make_shared<std::vector<Array>>();
    auto bias = std::make_shared<Array>(random_vec(cols, -1e-3f, 1e-3f, 2), "bias");
    Case c;
    c.op = "bias_act_relu";
    c.shape = std::to_string(B) + "x" + std::to_string(cols);
    c.batch = B;
    c.bytes = double(2 * n + cols) * 4;
    c.sets = sets_for(n * 4, l2_);
    for (int k = 0; k < c.sets; ++k) sets->emplace_back(random_vec(n, -1, 1, 1), "y");
    c.variants.push_back({"fused", 1, [=](int k) {
                            gpu::bias_act_forward(Activation::relu, (*sets)[k].get(), bias->get(), B, cols, s());
                          }});
    c.variants.push_back({"unfused", 2, [=](int k) {
                            float* y = (*sets)[k].get();
                            add_bias_kernel<<<blocks_for(n), kThreads, 0, s()>>>(y, bias->get(), B, cols);
                            launch_check("add_bias_kernel");
                            relu_kernel<<<blocks_for(n), kThreads, 0, s()>>>(y, n);
                            launch_check("relu_kernel");
                          }});
    c.check = [=]() -> std::string {
      Array& a = (*sets)[0];
      a.reset();
      gpu::bias_act_forward(Activation::relu, a.get(), bias->get(), B, cols, s());
      sync();
      const auto f = a.download();
      a.reset();
      add_bias_kernel<<<blocks_for(n), kThreads, 0, s()>>>(a.get(), bias->get(), B, cols);
      relu_kernel<<<blocks_for(n), kThreads, 0, s()>>>(a.get(), n);
      sync();
      const double w = worst(a.download(), f, 1e-6, 1e-6);
      return w <= 1 ? "" : "y differs (" + fmt("%.3g", w) + " of the allowance)";
    };
    return c;
  }

  // ---- ReLU backward + bias gradient, (B, 400) ---------------------------------------------------
  Case act_backward_case(int B) {
    const int cols = kHidden;
    const std::size_t n = static_cast<std::size_t>(B) * cols;
    struct Set {
      Array dy, y;
    };
    auto sets = std::make_shared<std::vector<Set>>();
    auto db = std::make_shared<Array>(static_cast<std::size_t>(cols), "db");
    auto scratch = std::make_shared<gpu::ReduceScratchBuffers>(gpu::reduce_partial_floats(B, cols, 1, false), B, cols,
                                                               nullptr);
    auto partial = std::make_shared<Array>(static_cast<std::size_t>((B + kPartialRows - 1) / kPartialRows) * cols,
                                           "partial");
    auto y_values = random_vec(n, -1, 1, 4);
    for (auto& v : y_values) v = v > 0 ? v : 0.0f;  // a ReLU output
    Case c;
    c.op = "act_backward_bias";
    c.shape = std::to_string(B) + "x" + std::to_string(cols);
    c.batch = B;
    c.bytes = double(3 * n + cols) * 4;
    c.sets = sets_for(2 * n * 4, l2_);
    for (int k = 0; k < c.sets; ++k) sets->push_back({Array(random_vec(n, -1, 1, 3), "dy"), Array(y_values, "y")});
    c.variants.push_back({"fused", 1, [=](int k) {
                            gpu::act_backward_bias_grad(Activation::relu, (*sets)[k].dy.get(), (*sets)[k].y.get(), B,
                                                        cols, db->get(), scratch->view(), s());
                          }});
    c.variants.push_back({"unfused", 3, [=](int k) {
                            mul_relu_grad_kernel<<<blocks_for(n), kThreads, 0, s()>>>((*sets)[k].dy.get(),
                                                                                       (*sets)[k].y.get(), n);
                            launch_check("mul_relu_grad_kernel");
                            column_sums_unfused((*sets)[k].dy.get(), B, cols, partial->get(), db->get(), s());
                          }});
    c.check = [=]() -> std::string {
      Set& t = (*sets)[0];
      t.dy.reset();
      gpu::act_backward_bias_grad(Activation::relu, t.dy.get(), t.y.get(), B, cols, db->get(), scratch->view(), s());
      sync();
      const auto fdy = t.dy.download(), fdb = db->download();
      t.dy.reset();
      mul_relu_grad_kernel<<<blocks_for(n), kThreads, 0, s()>>>(t.dy.get(), t.y.get(), n);
      column_sums_unfused(t.dy.get(), B, cols, partial->get(), db->get(), s());
      sync();
      if (worst(t.dy.download(), fdy, 1e-7, 1e-6) > 1) return "dy differs";
      const double w = worst(db->download(), fdb, 1e-4 * std::sqrt(double(B)), 1e-5);
      return w <= 1 ? "" : "db differs (" + fmt("%.3g", w) + " of the allowance)";
    };
    return c;
  }

  // ---- Bernoulli likelihood with gradients, (B, 784) ---------------------------------------------
  Case likelihood_case(int B) {
    const int D = kInput;
    const std::size_t n = static_cast<std::size_t>(B) * D;
    struct Set {
      Array out, x;
    };
    auto sets = std::make_shared<std::vector<Set>>();
    auto bias = std::make_shared<Array>(random_vec(D, -0.5f, 0.5f, 6), "bias");
    auto dbias = std::make_shared<Array>(static_cast<std::size_t>(D), "dbias");
    auto row_logp = std::make_shared<Array>(static_cast<std::size_t>(B), "row_logp");
    auto lp = std::make_shared<Array>(n, "log-prob terms");
    auto sig = std::make_shared<Array>(n, "sigmoid");
    auto partial = std::make_shared<Array>(static_cast<std::size_t>((B + kPartialRows - 1) / kPartialRows) * D,
                                           "partial");
    auto scratch = std::make_shared<gpu::ReduceScratchBuffers>(gpu::reduce_partial_floats(B, D, 1, true), B, D,
                                                               nullptr);
    vae::ModelConfig cfg;
    cfg.input_dim = D;
    cfg.samples = 1;
    Case c;
    c.op = "likelihood_bernoulli";
    c.shape = std::to_string(B) + "x" + std::to_string(D);
    c.batch = B;
    c.bytes = double(3 * n + 2 * D + B) * 4;
    c.sets = sets_for(2 * n * 4, l2_);
    auto x_values = random_vec(n, 0, 1, 7);
    for (int k = 0; k < c.sets; ++k) sets->push_back({Array(random_vec(n, -3, 3, 8), "out"), Array(x_values, "x")});
    const float scale = 1.0f / static_cast<float>(B);
    auto fused = [=](Set& t) {
      gpu::LikelihoodArgs a;
      a.out = t.out.get();
      a.bias = bias->get();
      a.x = t.x.get();
      a.n = B;
      a.L = 1;
      a.dbias = dbias->get();
      a.row_logp = row_logp->get();
      gpu::likelihood_forward_backward(cfg, a, gpu::LikelihoodMode::backward, scratch->view(), s());
    };
    auto unfused = [=](Set& t) {
      float* o = t.out.get();
      add_bias_kernel<<<blocks_for(n), kThreads, 0, s()>>>(o, bias->get(), B, D);
      launch_check("add_bias_kernel");
      bernoulli_logprob_kernel<<<blocks_for(n), kThreads, 0, s()>>>(t.x.get(), o, n, lp->get());
      launch_check("bernoulli_logprob_kernel");
      sigmoid_kernel<<<blocks_for(n), kThreads, 0, s()>>>(o, n, sig->get());
      launch_check("sigmoid_kernel");
      bernoulli_grad_kernel<<<blocks_for(n), kThreads, 0, s()>>>(sig->get(), t.x.get(), n, scale, o);
      launch_check("bernoulli_grad_kernel");
      row_sum_kernel<<<(B + 7) / 8, 256, 0, s()>>>(lp->get(), B, D, row_logp->get());
      launch_check("row_sum_kernel");
      column_sums_unfused(o, B, D, partial->get(), dbias->get(), s());
    };
    c.variants.push_back({"fused", 1, [=](int k) { fused((*sets)[k]); }});
    c.variants.push_back({"unfused", 7, [=](int k) { unfused((*sets)[k]); }});
    c.check = [=]() -> std::string {
      Set& t = (*sets)[0];
      t.out.reset();
      fused(t);
      sync();
      const auto fo = t.out.download(), fdb = dbias->download(), flp = row_logp->download();
      t.out.reset();
      unfused(t);
      sync();
      if (worst(t.out.download(), fo, 1e-7, 1e-4) > 1) return "d/dlogits differs";
      if (worst(dbias->download(), fdb, 1e-5, 1e-4) > 1) return "d bias differs";
      const double w = worst(row_logp->download(), flp, 1e-3, 1e-5);
      return w <= 1 ? "" : "row log p differs (" + fmt("%.3g", w) + " of the allowance)";
    };
    return c;
  }

  // ---- latent forward, (B, Z = 20), L = 1 --------------------------------------------------------
  Case latent_forward_case(int B) {
    const int Z = kLatent;
    const std::size_t nz = static_cast<std::size_t>(B) * Z;
    struct Set {
      Array head, eps;
    };
    auto sets = std::make_shared<std::vector<Set>>();
    auto bias = std::make_shared<Array>(random_vec(2 * Z, -1e-4f, 1e-4f, 9), "bias");
    auto z = std::make_shared<Array>(nz, "z");
    auto kl = std::make_shared<Array>(static_cast<std::size_t>(B), "kl");
    auto terms = std::make_shared<Array>(nz, "KL terms");
    Case c;
    c.op = "latent_forward";
    c.shape = std::to_string(B) + "x" + std::to_string(Z);
    c.batch = B;
    c.bytes = double(2 * 2 * nz + 2 * nz + B + 2 * Z) * 4;
    c.sets = sets_for(3 * nz * 4, l2_);
    for (int k = 0; k < c.sets; ++k)
      sets->push_back({Array(random_vec(2 * nz, -1, 1, 10), "head"), Array(random_vec(nz, -2, 2, 11), "eps")});
    auto fused = [=](Set& t) {
      gpu::latent_forward(t.head.get(), bias->get(), t.eps.get(), nullptr, B, 1, Z, z->get(), kl->get(), nullptr, s());
    };
    auto unfused = [=](Set& t) {
      add_bias_kernel<<<blocks_for(2 * nz), kThreads, 0, s()>>>(t.head.get(), bias->get(), B, 2 * Z);
      launch_check("add_bias_kernel");
      reparam_kernel<<<blocks_for(nz), kThreads, 0, s()>>>(t.head.get(), t.eps.get(), B, Z, z->get());
      launch_check("reparam_kernel");
      kl_terms_kernel<<<blocks_for(nz), kThreads, 0, s()>>>(t.head.get(), B, Z, terms->get());
      launch_check("kl_terms_kernel");
      row_sum_kernel<<<(B + 7) / 8, 256, 0, s()>>>(terms->get(), B, Z, kl->get());
      launch_check("row_sum_kernel");
    };
    c.variants.push_back({"fused", 1, [=](int k) { fused((*sets)[k]); }});
    c.variants.push_back({"unfused", 4, [=](int k) { unfused((*sets)[k]); }});
    c.check = [=]() -> std::string {
      Set& t = (*sets)[0];
      t.head.reset();
      fused(t);
      sync();
      const auto fz = z->download(), fkl = kl->download();
      t.head.reset();
      unfused(t);
      sync();
      if (worst(z->download(), fz, 1e-6, 1e-5) > 1) return "z differs";
      return worst(kl->download(), fkl, 1e-5, 1e-5) <= 1 ? "" : "KL differs";
    };
    return c;
  }

  // ---- latent backward, (B, Z = 20), L = 1 -------------------------------------------------------
  Case latent_backward_case(int B) {
    const int Z = kLatent;
    const std::size_t nz = static_cast<std::size_t>(B) * Z;
    struct Set {
      Array head, eps, dz;
    };
    auto sets = std::make_shared<std::vector<Set>>();
    auto dhead = std::make_shared<Array>(2 * nz, "dhead");
    auto dbias = std::make_shared<Array>(static_cast<std::size_t>(2 * Z), "dbias");
    auto partial = std::make_shared<Array>(static_cast<std::size_t>((B + kPartialRows - 1) / kPartialRows) * 2 * Z,
                                           "partial");
    auto scratch = std::make_shared<gpu::ReduceScratchBuffers>(gpu::reduce_partial_floats(B, Z, 2, false), B, Z,
                                                               nullptr);
    auto beta = std::make_shared<DeviceBuffer<double>>(1, "beta");
    const double one = 1.0;
    VAE_CUDA_CHECK(cudaMemcpy(beta->get(), &one, sizeof one, cudaMemcpyHostToDevice));
    const float beta_scale = 1.0f / static_cast<float>(B);
    Case c;
    c.op = "latent_backward";
    c.shape = std::to_string(B) + "x" + std::to_string(Z);
    c.batch = B;
    c.bytes = double(2 * nz + 2 * nz + 2 * nz + 2 * Z) * 4;  // head, eps + dz, dhead, dbias
    c.sets = sets_for(4 * nz * 4, l2_);
    for (int k = 0; k < c.sets; ++k)
      sets->push_back({Array(random_vec(2 * nz, -1, 1, 12), "head"), Array(random_vec(nz, -2, 2, 13), "eps"),
                       Array(random_vec(nz, -0.1f, 0.1f, 14), "dz")});
    auto fused = [=](Set& t) {
      gpu::LatentBackwardArgs a;
      a.head = t.head.get();
      a.eps_block = t.eps.get();
      a.n = B;
      a.L = 1;
      a.Z = Z;
      a.dz = t.dz.get();
      a.beta = beta->get();
      a.dhead = dhead->get();
      a.dbias = dbias->get();
      gpu::latent_backward(a, scratch->view(), s());
    };
    auto unfused = [=](Set& t) {
      latent_dmu_kernel<<<blocks_for(nz), kThreads, 0, s()>>>(t.head.get(), t.dz.get(), B, Z, beta_scale, dhead->get());
      launch_check("latent_dmu_kernel");
      latent_ds_kernel<<<blocks_for(nz), kThreads, 0, s()>>>(t.head.get(), t.dz.get(), t.eps.get(), B, Z, beta_scale,
                                                             dhead->get());
      launch_check("latent_ds_kernel");
      column_sums_unfused(dhead->get(), B, 2 * Z, partial->get(), dbias->get(), s());
    };
    c.variants.push_back({"fused", 1, [=](int k) { fused((*sets)[k]); }});
    c.variants.push_back({"unfused", 4, [=](int k) { unfused((*sets)[k]); }});
    c.check = [=]() -> std::string {
      Set& t = (*sets)[0];
      fused(t);
      sync();
      const auto fh = dhead->download(), fb = dbias->download();
      unfused(t);
      sync();
      if (worst(dhead->download(), fh, 1e-7, 1e-5) > 1) return "(d mu, d s) differ";
      return worst(dbias->download(), fb, 1e-5 * std::sqrt(double(B)), 1e-5) <= 1 ? "" : "head-bias gradient differs";
    };
    return c;
  }

  // ---- optimizer over the reference model's flat buffer --------------------------------------------
  Case optimizer_case() {
    const vae::ModelConfig model;  // the reference model: 784-400-20, 20-400-784
    const vae::ParamLayout layout(model);
    const std::size_t n = layout.total();
    struct Set {
      Array p, g, m, v;
    };
    auto sets = std::make_shared<std::vector<Set>>();
    vae::OptimizerConfig cfg;  // Adam, lr 1e-3
    auto record = std::make_shared<DeviceBuffer<char>>(gpu::step_record_bytes(1), "record");
    gpu::StepHeader h;
    h.lr = cfg.lr;
    VAE_CUDA_CHECK(cudaMemcpy(record->get(), &h, sizeof h, cudaMemcpyHostToDevice));
    auto updates = std::make_shared<DeviceBuffer<std::int64_t>>(2, "update counts");
    const std::int64_t counts[2] = {100, 100};
    VAE_CUDA_CHECK(cudaMemcpy(updates->get(), counts, sizeof counts, cudaMemcpyHostToDevice));
    const ew::OptimizerScalars host_scalars = ew::optimizer_scalars(cfg, cfg.lr, 100);
    Case c;
    c.op = "optimizer_adam";
    c.shape = std::to_string(n) + " params, " + std::to_string(layout.tensors().size()) + " tensors";
    c.batch = 0;
    c.bytes = double(7 * n) * 4;  // p, g, m, v read; p, m, v written
    c.sets = sets_for(4 * n * 4, l2_);
    for (int k = 0; k < c.sets; ++k)
      sets->push_back({Array(random_vec(n, -0.05f, 0.05f, 15), "p"), Array(random_vec(n, -1e-2f, 1e-2f, 16), "g"),
                       Array(random_vec(n, -1e-3f, 1e-3f, 17), "m"), Array(random_vec(n, 0, 1e-5f, 18), "v")});
    const std::size_t split = layout.encoder_end();
    auto fused = [=](Set& t) {
      gpu::OptimizerArgs a;
      a.p = t.p.get();
      a.g = t.g.get();
      a.s1 = t.m.get();
      a.s2 = t.v.get();
      a.n = n;
      a.encoder_end = split;
      a.hdr = reinterpret_cast<const gpu::StepHeader*>(record->get());
      a.updates = updates->get();
      gpu::optimizer_step(a, cfg, s());
    };
    const std::vector<vae::TensorView> tensors = layout.tensors();
    auto unfused = [=](Set& t) {
      for (const auto& tv : tensors) {
        const std::size_t o = tv.offset, m = tv.size();
        optimizer_tensor_kernel<<<blocks_for(m), kThreads, 0, s()>>>(t.p.get() + o, t.g.get() + o, t.m.get() + o,
                                                                     t.v.get() + o, m, host_scalars);
        launch_check("optimizer_tensor_kernel");
      }
    };
    c.variants.push_back({"fused", 1, [=](int k) { fused((*sets)[k]); }});
    c.variants.push_back({"unfused", static_cast<int>(tensors.size()), [=](int k) { unfused((*sets)[k]); }});
    c.check = [=]() -> std::string {
      Set& t = (*sets)[0];
      for (Array* a : {&t.p, &t.m, &t.v}) a->reset();
      fused(t);
      sync();
      const auto fp = t.p.download(), fm = t.m.download(), fv = t.v.download();
      for (Array* a : {&t.p, &t.m, &t.v}) a->reset();
      unfused(t);
      sync();
      // Padding between tensors: the fused kernel updates it (g = 0, p = 0 stays 0), the
      // per-tensor launches do not; random padding values differ, so compare tensors only.
      const auto up = t.p.download(), um = t.m.download(), uv = t.v.download();
      for (const auto& tv : tensors)
        for (std::size_t i = tv.offset; i < tv.offset + tv.size(); ++i)
          if (std::fabs(up[i] - fp[i]) > 1e-7f + 1e-6f * std::fabs(fp[i]) ||
              std::fabs(um[i] - fm[i]) > 1e-9f + 1e-6f * std::fabs(fm[i]) ||
              std::fabs(uv[i] - fv[i]) > 1e-12f + 1e-6f * std::fabs(fv[i]))
            return "element " + std::to_string(i) + " of " + tv.name + " differs";
      return "";
    };
    return c;
  }

  // ---- GEMM + bias + ReLU: cuBLAS + our kernel vs the cuBLASLt epilogue -----------------------------
  Case gemm_case(int B, int in, int out) {
    struct Set {
      Array x, y;
    };
    auto sets = std::make_shared<std::vector<Set>>();
    auto w = std::make_shared<Array>(random_vec(static_cast<std::size_t>(out) * in, -0.05f, 0.05f, 19), "W");
    auto b = std::make_shared<Array>(random_vec(out, -0.05f, 0.05f, 20), "b");
    const std::size_t nx = static_cast<std::size_t>(B) * in, ny = static_cast<std::size_t>(B) * out;
    Case c;
    c.op = "gemm_bias_relu";
    c.shape = std::to_string(B) + "x" + std::to_string(in) + "->" + std::to_string(out);
    c.batch = B;
    c.bytes = double(nx + ny + static_cast<std::size_t>(out) * in + out) * 4;
    c.flops = 2.0 * double(B) * in * out;
    c.sets = sets_for((nx + ny) * 4, l2_);
    for (int k = 0; k < c.sets; ++k) sets->push_back({Array(random_vec(nx, 0, 1, 21), "x"), Array(ny, "y")});
    gpu::LtBiasRelu* lt = lt_.get();
    cublasHandle_t blas = blas_;
    auto ours = [=](Set& t) {
      gpu::linear_forward(blas, B, in, out, t.x.get(), w->get(), t.y.get());
      gpu::bias_act_forward(Activation::relu, t.y.get(), b->get(), B, out, s());
    };
    auto lt_run = [=](Set& t) {
      if (!lt->forward(B, in, out, t.x.get(), w->get(), b->get(), t.y.get(), s()))
        throw vae::Error("cuBLASLt has no bias + ReLU algorithm for " + std::to_string(B) + "x" + std::to_string(in) +
                         "->" + std::to_string(out));
    };
    c.variants.push_back({"cublas+bias_act", 2, [=](int k) { ours((*sets)[k]); }});
    c.variants.push_back({"cublaslt_epilogue", 1, [=](int k) { lt_run((*sets)[k]); }});
    c.check = [=]() -> std::string {
      Set& t = (*sets)[0];
      ours(t);
      sync();
      const auto fy = t.y.download();
      lt_run(t);
      sync();
      const double w_ = worst(t.y.download(), fy, 1e-5 * std::sqrt(double(in)), 1e-5);
      return w_ <= 1 ? "" : "y differs (" + fmt("%.3g", w_) + " of the allowance)";
    };
    return c;
  }

  void sync() const { VAE_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  // ---- output ---------------------------------------------------------------------------------------
  static double gbps(const Row& r, const Stats& s) { return s.median_us > 0 ? r.bytes / (s.median_us * 1e3) : 0; }

  void print_table() const {
    std::printf("\n%s (sm_%d%d, %d SMs, L2 %.0f MB); median of %d repeats after %d warm-up, microseconds\n",
                prop_.name, prop_.major, prop_.minor, prop_.multiProcessorCount, double(l2_) / 1e6, opt_.repeats,
                opt_.warmup);
    std::printf("%-22s %-26s %-18s %3s %10s %10s %9s %10s %9s  %s\n", "op", "shape", "variant", "ln", "cold_us",
                "cold_p90", "cold_GB/s", "hot_us", "hot_GB/s", "check");
    for (const auto& r : rows_) {
      std::string extra;
      if (r.flops > 0) extra = fmt("  %.0f GFLOP/s hot", r.flops / (r.hot.median_us * 1e3));
      std::printf("%-22s %-26s %-18s %3d %10.2f %10.2f %9.1f %10.2f %9.1f  %s%s\n", r.op.c_str(), r.shape.c_str(),
                  r.variant.c_str(), r.launches, r.cold.median_us, r.cold.p90_us, gbps(r, r.cold), r.hot.median_us,
                  gbps(r, r.hot), r.check.c_str(), extra.c_str());
    }
    // The fused / unfused ratios, and the GEMM + bias + ReLU verdict.
    std::printf("\ntime ratios (second variant / first: > 1 means the first is faster):\n");
    for (std::size_t i = 0; i + 1 < rows_.size(); ++i) {
      const Row& a = rows_[i];
      const Row& b = rows_[i + 1];
      if (a.op != b.op || a.shape != b.shape) continue;
      std::printf("  %-22s %-26s %s / %s: %.2fx cold, %.2fx hot\n", a.op.c_str(), a.shape.c_str(), b.variant.c_str(),
                  a.variant.c_str(), b.cold.median_us / a.cold.median_us, b.hot.median_us / a.hot.median_us);
    }
    const Verdict v = verdict();
    std::printf("\nGEMM + bias + ReLU at batch %d: cuBLAS + bias_act %.2f us, cuBLASLt epilogue %.2f us (hot, both "
                "hidden layers): %s\n",
                v.batch, v.ours_us, v.lt_us,
                v.lt_faster ? "the epilogue is faster (CudaBackendOptions::lt_bias_relu = true)"
                            : "keep cuBLAS + bias_act (CudaBackendOptions::lt_bias_relu = false)");
  }

  struct Verdict {
    int batch = 0;
    double ours_us = 0, lt_us = 0;
    bool lt_faster = false;
  };
  // At the reference training batch 128 (else the smallest batch measured), summed over
  // both hidden layers' shapes.
  Verdict verdict() const {
    Verdict v;
    for (const auto& r : rows_) {
      if (r.op != "gemm_bias_relu") continue;
      if (v.batch == 0 || (v.batch != 128 && (r.batch == 128 || r.batch < v.batch))) v.batch = r.batch;
    }
    for (const auto& r : rows_) {
      if (r.op != "gemm_bias_relu" || r.batch != v.batch) continue;
      (r.variant == "cublaslt_epilogue" ? v.lt_us : v.ours_us) += r.hot.median_us;
    }
    v.lt_faster = v.lt_us > 0 && v.lt_us < v.ours_us;
    return v;
  }

  static std::string esc(const std::string& s) {
    std::string o;
    for (char ch : s) {
      if (ch == '"' || ch == '\\') o += '\\';
      o += ch;
    }
    return o;
  }

  void write_json() const {
    std::ostringstream j;
    char date[64];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    j << "{\n  \"program\": \"gpu_kernels\",\n  \"date\": \"" << date << "\",\n  \"device\": \"" << esc(prop_.name)
      << "\",\n  \"sm\": \"" << prop_.major << prop_.minor << "\",\n  \"sms\": " << prop_.multiProcessorCount
      << ",\n  \"l2_bytes\": " << l2_ << ",\n  \"cuda_driver\": " << driver << ",\n  \"cuda_runtime\": " << runtime
      << ",\n  \"repeats\": " << opt_.repeats << ",\n  \"warmup\": " << opt_.warmup
      << ",\n  \"timing\": \"CUDA events per repeat behind a 100 us spin kernel (GPU time, launch gaps included); "
         "median, min, p90 in microseconds; cold: buffer sets rotated over more than twice the L2; hot: one set; "
         "gbps: the operation's minimal traffic over the median time\",\n  \"results\": [\n";
    for (std::size_t i = 0; i < rows_.size(); ++i) {
      const Row& r = rows_[i];
      j << "    {\"op\": \"" << r.op << "\", \"shape\": \"" << r.shape << "\", \"batch\": " << r.batch
        << ", \"variant\": \"" << r.variant << "\", \"launches\": " << r.launches << ", \"bytes\": " << r.bytes
        << ", \"flops\": " << r.flops << ", \"cold\": {\"median_us\": " << r.cold.median_us
        << ", \"min_us\": " << r.cold.min_us << ", \"p90_us\": " << r.cold.p90_us << ", \"gbps\": " << gbps(r, r.cold)
        << "}, \"hot\": {\"median_us\": " << r.hot.median_us << ", \"min_us\": " << r.hot.min_us
        << ", \"p90_us\": " << r.hot.p90_us << ", \"gbps\": " << gbps(r, r.hot) << "}, \"check\": \"" << esc(r.check)
        << "\"}" << (i + 1 < rows_.size() ? "," : "") << "\n";
    }
    const Verdict v = verdict();
    j << "  ],\n  \"gemm_bias_relu_verdict\": {\"batch\": " << v.batch << ", \"cublas_bias_act_us\": " << v.ours_us
      << ", \"cublaslt_epilogue_us\": " << v.lt_us << ", \"lt_bias_relu_faster\": " << (v.lt_faster ? "true" : "false")
      << ", \"note\": \"hot medians at that batch, summed over the 784->400 and 20->400 layers; "
         "CudaBackendOptions::lt_bias_relu selects the epilogue\"},\n  \"failed_checks\": "
      << failed_checks_ << "\n}\n";
    std::ofstream f(opt_.json);
    if (!f) throw vae::Error("cannot write " + opt_.json);
    f << j.str();
    if (!f) throw vae::Error("writing " + opt_.json + " failed");
    std::printf("wrote %s\n", opt_.json.c_str());
  }

  Options opt_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  DeviceBuffer<char> workspace_;
  std::unique_ptr<gpu::LtBiasRelu> lt_;
  cudaDeviceProp prop_{};
  std::size_t l2_ = 0;
  std::unique_ptr<Timer> timer_;
  std::vector<Row> rows_;
  int failed_checks_ = 0;
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
