// The kernel cases' harness, after ggml's tests/test-backend-ops.cpp: one case type per
// kernel (the other headers of this directory). A case holds its inputs at the sizes it was
// made with (fresh random values, never all zero), the GPU launch, the CPU twin it is
// checked against (a cpu:: pass of host/cpu_passes.h, CpuModel, or the host function the
// CPU backend calls) and the tolerance of each output. The GPU suite
// (tests/cuda/test_kernel_cases.cpp) makes every kernel's cases at odd sizes and checks
// them; bench/gpu_kernels.cu makes the same cases at the reference model's sizes, checks
// them the same way and times their launch.
//
// Plain C++ over the CUDA runtime (no kernels, no GoogleTest): it compiles in the test
// suite, in the benchmark (nvcc) and on the CPU emulator (tests/emu).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "column_sum.cuh"
#include "cuda_check.cuh"
#include "device_memory.cuh"
#include "layers.cuh"
#include "step_record.cuh"
#include "vae/error.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace vae::cases {

// ---- inputs ---------------------------------------------------------------------------------

// n values of `dist` (a <random> distribution of doubles) from a generator seeded `seed`.
template <class T, class Dist>
std::vector<T> draw(std::size_t n, Dist dist, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(g));
  return v;
}
inline std::vector<float> uniform(std::size_t n, double lo, double hi, std::uint64_t seed) {
  return draw<float>(n, std::uniform_real_distribution<double>(lo, hi), seed);
}
inline std::vector<float> normal(std::size_t n, std::uint64_t seed) {
  return draw<float>(n, std::normal_distribution<double>(0.0, 1.0), seed);
}

inline std::string shape(int a, int b) { return std::to_string(a) + "x" + std::to_string(b); }

// ---- device arrays ----------------------------------------------------------------------------

// n elements of device memory, copied back after a device sync.
template <class T>
std::vector<T> download(const T* device, std::size_t n) {
  VAE_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> host(n);
  VAE_CUDA_CHECK(cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}

class ArrayBase {
 public:
  virtual ~ArrayBase() = default;
  virtual void reset() = 0;
  virtual std::size_t bytes() const = 0;
  virtual std::vector<unsigned char> raw() const = 0;  // the device bytes
  virtual const std::string& name() const = 0;
};

// A device array of a case: an input holds its initial values, which reset() restores; an
// output has none, and reset() fills it with 0xFF bytes (NaN floats), so an element the
// launch does not write shows up. Copies and fills go through the legacy stream and a
// device sync: the cases launch on a non-blocking stream.
template <class T>
class Array final : public ArrayBase {
 public:
  Array(std::vector<T> init, const std::string& what) : buf_(init.size(), what), init_(std::move(init)), name_(what) {
    reset();
  }
  Array(std::size_t n, const std::string& what) : buf_(n, what), name_(what) { reset(); }
  ~Array() override { cudaDeviceSynchronize(); }  // no launch still reads it when it is freed
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;
  void reset() override {
    if (init_.empty()) {
      VAE_CUDA_CHECK(cudaMemset(buf_.get(), 0xFF, buf_.bytes()));
    } else {
      VAE_CUDA_CHECK(cudaMemcpy(buf_.get(), init_.data(), buf_.bytes(), cudaMemcpyHostToDevice));
    }
    VAE_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<T> download() const { return cases::download(buf_.get(), buf_.size()); }
  std::vector<unsigned char> raw() const override {
    return cases::download(reinterpret_cast<const unsigned char*>(buf_.get()), buf_.bytes());
  }
  void set(std::vector<T> init) {  // new initial values, uploaded
    if (init.size() != buf_.size())
      throw Error(name_ + ": " + std::to_string(init.size()) + " values for " + std::to_string(buf_.size()));
    init_ = std::move(init);
    reset();
  }
  T* get() const { return buf_.get(); }
  std::size_t size() const { return buf_.size(); }
  std::size_t bytes() const override { return buf_.bytes(); }
  const std::vector<T>& init() const { return init_; }
  const std::string& name() const override { return name_; }

 private:
  gpu::DeviceBuffer<T> buf_;
  std::vector<T> init_;
  std::string name_;
};

// A step record on the device, header and indices, as the backend writes it.
class Record {
 public:
  Record(const gpu::StepHeader& h, const std::vector<std::uint32_t>& indices)
      : buf_(gpu::step_record_bytes(static_cast<int>(indices.size())), "case step record") {
    write(h, indices);
  }
  void write(const gpu::StepHeader& h, const std::vector<std::uint32_t>& indices) {
    std::vector<char> host(buf_.size(), 0);
    std::memcpy(host.data(), &h, sizeof h);
    std::memcpy(gpu::record_indices(host.data()), indices.data(), indices.size() * sizeof(std::uint32_t));
    VAE_CUDA_CHECK(cudaMemcpy(buf_.get(), host.data(), host.size(), cudaMemcpyHostToDevice));
    VAE_CUDA_CHECK(cudaDeviceSynchronize());
  }
  const gpu::StepHeader* header() const { return reinterpret_cast<const gpu::StepHeader*>(buf_.get()); }
  const std::uint32_t* indices() const { return gpu::record_indices(buf_.get()); }

 private:
  gpu::DeviceBuffer<char> buf_;
};

// The reduction scratch of launches over up to (rows, cols) with nv column sums (and row sums).
inline gpu::ReduceScratchBuffers reduce_scratch(int rows, int cols, int nv, bool row_sums) {
  return gpu::ReduceScratchBuffers(gpu::reduce_partial_floats(rows, cols, nv, row_sums), rows, cols, nullptr);
}

// ---- where cases run ----------------------------------------------------------------------------

// A non-blocking stream, a cuBLAS handle on it configured as the backend's (FP32 without
// TF32, a workspace, no atomics) and a cuBLASLt plan cache sharing the workspace.
class Context {
 public:
  Context() : workspace_(std::size_t(32) << 20, "the cases' cuBLAS workspace") {
    VAE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    VAE_CUBLAS_CHECK(cublasCreate(&blas_));
    VAE_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
    VAE_CUBLAS_CHECK(cublasSetWorkspace(blas_, workspace_.get(), workspace_.bytes()));
    VAE_CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
    VAE_CUBLAS_CHECK(cublasSetAtomicsMode(blas_, CUBLAS_ATOMICS_NOT_ALLOWED));
    lt_ = std::make_unique<gpu::LtBiasRelu>(workspace_.get(), workspace_.bytes());
  }
  ~Context() {
    cudaStreamSynchronize(stream_);
    lt_.reset();
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t blas() const { return blas_; }
  gpu::LtBiasRelu& lt() const { return *lt_; }
  void sync() const { VAE_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  gpu::DeviceBuffer<char> workspace_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  std::unique_ptr<gpu::LtBiasRelu> lt_;
};

// ---- error measures -----------------------------------------------------------------------------

// An exact sum per output element (in double) and the sum of the absolute values of its
// terms: a float sum in any order lies within a small multiple of the latter.
struct SumRef {
  std::vector<double> sum, abs;
};
// The sums of a (rows, cols) matrix by row or by column.
inline SumRef matrix_sums(const std::vector<float>& m, int rows, int cols, bool by_row) {
  const std::size_t n = static_cast<std::size_t>(by_row ? rows : cols), c = static_cast<std::size_t>(cols);
  SumRef r{std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  for (std::size_t i = 0; i < m.size(); ++i) {
    r.sum[by_row ? i / c : i % c] += double(m[i]);
    r.abs[by_row ? i / c : i % c] += std::fabs(double(m[i]));
  }
  return r;
}
inline SumRef column_sums(const std::vector<float>& m, int rows, int cols) { return matrix_sums(m, rows, cols, false); }
inline SumRef row_sums(const std::vector<float>& m, int rows, int cols) { return matrix_sums(m, rows, cols, true); }

// What one run of a case found: each comparison that failed, with the worst element and
// the share of its allowance it used, and the first few mismatches with their index. NaN
// never passes a comparison.
class Check {
 public:
  // |got - want| <= atol + rtol * |want| for every element (FP32 against the twin's FP32:
  // device libm against glibc differs by an ulp or two).
  template <class A, class B>
  void close(const std::vector<A>& got, const std::vector<B>& want, double atol, double rtol, const std::string& what) {
    std::vector<double> allowed(want.size());
    for (std::size_t i = 0; i < want.size(); ++i) allowed[i] = atol + rtol * std::fabs(double(want[i]));
    compare(got, want, allowed, what);
  }
  // Sums against their exact value: |got - sum| <= 1e-6 * abs + 1e-6 (float summation in
  // another order than the twin's).
  void sums(const std::vector<float>& got, const SumRef& want, const std::string& what) {
    std::vector<double> allowed(want.abs.size());
    for (std::size_t i = 0; i < allowed.size(); ++i) allowed[i] = 1e-6 * want.abs[i] + 1e-6;
    compare(got, want.sum, allowed, what);
  }
  // ||got - want|| / ||want|| <= tol: a tensor whose elements sum many terms in another order.
  void norm_close(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < got.size() && i < want.size(); ++i) {
      diff += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
      norm += double(want[i]) * want[i];
    }
    const double err = std::sqrt(diff) / std::sqrt(norm);
    if (got.size() != want.size() || !(err <= tol))
      fail(what + ": relative error in norm " + num(err) + ", tolerance " + num(tol));
  }
  // |got - want| <= tol for one number.
  void near(double got, double want, double tol, const std::string& what) {
    if (!(std::fabs(got - want) <= tol))
      fail(what + ": got " + num(got) + " want " + num(want) + " tolerance " + num(tol));
  }
  template <class T>
  void bits(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
    const bool same =
        got.size() == want.size() && (got.empty() || std::memcmp(got.data(), want.data(), got.size() * sizeof(T)) == 0);
    if (!same) fail(what + ": not bit-identical");
  }
  template <class A, class B>
  void equal(const A& got, const B& want, const std::string& what) {
    if (got == want) return;
    std::ostringstream s;
    s << what << ": got " << got << " want " << want;
    fail(s.str());
  }
  void expect(bool ok, const std::string& what) {
    if (!ok) fail(what);
  }
  // Every element still NaN: a poisoned output the launch left alone.
  void untouched(const std::vector<float>& v, const std::string& what) {
    for (float x : v)
      if (!std::isnan(x)) return fail(what + ": written, though it must be left alone");
  }
  void fail(const std::string& what) { failures_.push_back(what); }
  // A measurement worth keeping beside the verdict (the test suite records it).
  void note(const std::string& key, const std::string& value) { notes_.emplace_back(key, value); }
  const std::vector<std::pair<std::string, std::string>>& notes() const { return notes_; }
  bool passed() const { return failures_.empty(); }
  const std::vector<std::string>& failures() const { return failures_; }
  std::string report() const {
    std::string s;
    for (const auto& f : failures_) s += "\n" + f;
    return s;
  }

 private:
  static std::string num(double v) {
    std::ostringstream s;
    s.precision(9);
    s << v;
    return s.str();
  }
  template <class A, class B>
  void compare(const std::vector<A>& got, const std::vector<B>& want, const std::vector<double>& allowed,
               const std::string& what) {
    if (got.size() != want.size())
      return fail(what + ": size " + std::to_string(got.size()) + " != " + std::to_string(want.size()));
    double worst = -1;
    std::size_t worst_i = 0, bad = 0;
    std::string first;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const double g = double(got[i]), w = double(want[i]);
      const double used = std::isfinite(g) && std::isfinite(w) ? std::fabs(g - w) / allowed[i] : INFINITY;
      if (!(used <= 1.0) && bad++ < 5) first += "\n  [" + std::to_string(i) + "] got " + num(g) + " want " + num(w);
      if (!(used <= worst)) {
        worst = used;
        worst_i = i;
      }
    }
    if (bad)
      fail(what + ": " + std::to_string(bad) + " of " + std::to_string(got.size()) +
           " elements outside tolerance; worst [" + std::to_string(worst_i) + "] used " + num(100.0 * worst) +
           "% of the allowance" + first);
  }
  std::vector<std::string> failures_;
  std::vector<std::pair<std::string, std::string>> notes_;
};

// ---- cases ----------------------------------------------------------------------------------------

// Any case: it runs and records what it finds.
class KernelCase {
 public:
  explicit KernelCase(std::string name) : name_(std::move(name)) {}
  virtual ~KernelCase() = default;
  KernelCase(const KernelCase&) = delete;
  KernelCase& operator=(const KernelCase&) = delete;
  const std::string& name() const { return name_; }
  virtual void check(Context& ctx, Check& c) = 0;

 private:
  std::string name_;
};

// The operation's minimal traffic (each input read once, each output written once) and
// arithmetic, for the benchmark's rates.
struct Traffic {
  double bytes = 0, flops = 0;
};

// A case of one launch: reset() puts the inputs back and poisons the outputs, launch() is
// what the benchmark times, verify() compares the outputs with the CPU twin's on the same
// inputs. check() runs it twice (the second launch must give the same bits: no float
// atomics, tickets that reset themselves), then extra(): properties that take more launches.
class OpCase : public KernelCase {
 public:
  using KernelCase::KernelCase;
  virtual void launch(Context& ctx) = 0;
  virtual void verify(Check& c) = 0;
  virtual void extra(Context&, Check&) {}
  virtual Traffic traffic() const { return {}; }

  void reset() {
    for (ArrayBase* a : arrays_) a->reset();
  }
  std::size_t bytes() const {
    std::size_t b = 0;
    for (const ArrayBase* a : arrays_) b += a->bytes();
    return b;
  }
  const std::vector<const Array<float>*>& outputs() const { return outputs_; }

  void check(Context& ctx, Check& c) final {
    reset();
    launch(ctx);
    ctx.sync();
    verify(c);
    std::vector<std::vector<unsigned char>> first;
    for (const ArrayBase* a : arrays_) first.push_back(a->raw());
    reset();
    launch(ctx);
    ctx.sync();
    for (std::size_t i = 0; i < arrays_.size(); ++i)
      c.expect(arrays_[i]->raw() == first[i],
               arrays_[i]->name() + ": a second launch from the same inputs gives other bits");
    extra(ctx, c);
  }

 protected:
  // The case's arrays (reset, sized and compared between launches) and, of those, its
  // float outputs by name (the benchmark compares its baselines' with them).
  void arrays(std::vector<ArrayBase*> all, std::vector<const Array<float>*> outputs) {
    arrays_ = std::move(all);
    outputs_ = std::move(outputs);
  }

 private:
  std::vector<ArrayBase*> arrays_;
  std::vector<const Array<float>*> outputs_;
};

// make() with OpenMP limited to one thread. The twins' passes are small at the cases' sizes,
// and on a busy machine the spinning threads of each parallel region cost far more than
// the work; the passes' results do not depend on the number of threads.
template <class F>
auto serial(F&& make) {
#if defined(_OPENMP)
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  auto value = make();
  omp_set_num_threads(threads);
  return value;
#else
  return make();
#endif
}

// A value computed on first use, serially (the twin's results: the benchmark makes many
// copies of a case for its cold runs and checks one).
template <class T>
class Once {
 public:
  template <class F>
  const T& get(F&& make) {
    if (!value_) value_.emplace(serial(make));
    return *value_;
  }

 private:
  std::optional<T> value_;
};

using CaseList = std::vector<std::unique_ptr<KernelCase>>;

}  // namespace vae::cases
