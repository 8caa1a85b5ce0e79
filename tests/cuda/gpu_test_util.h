// Helpers for the GPU suites: the skip-without-GPU fixture, device buffers filled from and
// read back to host vectors, NaN poisoning (so a test shows every output element is
// written), a stream + cuBLAS handle configured as the backend configures them, tolerance
// checks for sums, a device step record, and the synthetic data, small models and training
// runs the backend tests share.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "column_sum.cuh"
#include "cuda_backend.cuh"
#include "cuda_check.cuh"
#include "device_memory.cuh"
#include "internal.h"
#include "step_record.cuh"
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

// A device copy of a host vector, and back.
template <class T>
class Dev {
 public:
  explicit Dev(std::size_t n) : buf_(n, "test buffer") {}
  explicit Dev(const std::vector<T>& host) : buf_(host.size(), "test buffer") { upload(host); }
  void upload(const std::vector<T>& host) {
    EXPECT_EQ(host.size(), buf_.size());
    VAE_CUDA_CHECK(cudaMemcpy(buf_.get(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    VAE_CUDA_CHECK(cudaDeviceSynchronize());  // kernels on non-blocking streams see the data
  }
  std::vector<T> download() const {
    VAE_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<T> host(buf_.size());
    VAE_CUDA_CHECK(cudaMemcpy(host.data(), buf_.get(), host.size() * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  void poison() { fill_bytes(0xFF); }  // NaN for float
  void zero() { fill_bytes(0); }
  T* get() const { return buf_.get(); }
  std::size_t size() const { return buf_.size(); }

 private:
  void fill_bytes(int byte) {
    VAE_CUDA_CHECK(cudaMemset(buf_.get(), byte, buf_.bytes()));
    VAE_CUDA_CHECK(cudaDeviceSynchronize());
  }
  gpu::DeviceBuffer<T> buf_;
};

// Copies and fills on the legacy stream, then a device sync: the non-blocking streams the
// code under test runs on are not ordered after the legacy stream.
inline void poison_range(float* device_ptr, std::size_t count) {
  VAE_CUDA_CHECK(cudaMemset(device_ptr, 0xFF, count * sizeof(float)));
  VAE_CUDA_CHECK(cudaDeviceSynchronize());
}
inline void copy_to_device(void* dst, const void* src, std::size_t bytes) {
  VAE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  VAE_CUDA_CHECK(cudaDeviceSynchronize());
}
template <class T>
std::vector<T> download_range(const T* device_ptr, std::size_t count) {
  VAE_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> out(count);
  VAE_CUDA_CHECK(cudaMemcpy(out.data(), device_ptr, count * sizeof(T), cudaMemcpyDeviceToHost));
  return out;
}

// The reduction scratch of launches over up to (rows, cols) with nv column sums (and row
// sums), counters zeroed.
inline gpu::ReduceScratchBuffers reduce_scratch(int rows, int cols, int nv, bool row_sums) {
  return gpu::ReduceScratchBuffers(gpu::reduce_partial_floats(rows, cols, nv, row_sums), rows, cols, nullptr);
}

// A non-blocking stream and a cuBLAS handle on it: FP32 without TF32, as the backend.
class GpuContext {
 public:
  GpuContext() {
    VAE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    VAE_CUBLAS_CHECK(cublasCreate(&blas));
    VAE_CUBLAS_CHECK(cublasSetStream(blas, stream));
    VAE_CUBLAS_CHECK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
  }
  ~GpuContext() {
    cudaStreamSynchronize(stream);
    cublasDestroy(blas);
    cudaStreamDestroy(stream);
  }
  GpuContext(const GpuContext&) = delete;
  GpuContext& operator=(const GpuContext&) = delete;
  void sync() const { VAE_CUDA_CHECK(cudaStreamSynchronize(stream)); }

  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
};

// |got - want| <= 1e-6 * sum_abs + 1e-6 per element, where sum_abs is the sum of the
// absolute values of the terms behind want (the float error of a sum scales with it).
inline ::testing::AssertionResult sums_close(const std::vector<float>& got, const std::vector<double>& want,
                                      const std::vector<double>& sum_abs, const std::string& what) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << what << ": size mismatch";
  int bad = 0;
  std::ostringstream first;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double allowed = 1e-6 * sum_abs[i] + 1e-6;
    const double err = std::fabs(double(got[i]) - want[i]);
    if (!(err <= allowed)) {
      if (bad < 5) first << "\n  [" << i << "] got " << got[i] << " want " << want[i] << " allowed " << allowed;
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size() << " outside tolerance"
                                       << first.str();
}

// Column sums of a (rows, cols) float matrix, in double, with the sums of |terms|.
inline void column_sums_ref(const std::vector<float>& m, int rows, int cols, std::vector<double>& sum,
                     std::vector<double>& sum_abs) {
  sum.assign(static_cast<std::size_t>(cols), 0.0);
  sum_abs.assign(static_cast<std::size_t>(cols), 0.0);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const double v = m[static_cast<std::size_t>(r) * cols + c];
      sum[static_cast<std::size_t>(c)] += v;
      sum_abs[static_cast<std::size_t>(c)] += std::fabs(v);
    }
}

// A step record on the device: header plus indices, as the backend writes it.
class DeviceRecord {
 public:
  explicit DeviceRecord(int max_batch) : bytes_(gpu::step_record_bytes(max_batch)), buf_(bytes_, "test record") {}
  void write(const gpu::StepHeader& h, const std::vector<std::uint32_t>& indices) {
    std::vector<char> host(bytes_, 0);
    std::memcpy(host.data(), &h, sizeof h);
    std::memcpy(gpu::record_indices(host.data()), indices.data(), indices.size() * sizeof(std::uint32_t));
    test::copy_to_device(buf_.get(), host.data(), bytes_);
  }
  const gpu::StepHeader* header() const { return reinterpret_cast<const gpu::StepHeader*>(buf_.get()); }
  const std::uint32_t* indices() const { return gpu::record_indices(buf_.get()); }

 private:
  std::size_t bytes_;
  gpu::DeviceBuffer<char> buf_;
};

inline bool any_nan(const std::vector<float>& v) {
  for (float x : v)
    if (std::isnan(x)) return true;
  return false;
}
// Every element still NaN: a poisoned buffer nothing wrote.
inline bool all_nan(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isnan(x)) return false;
  return true;
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
// step read back alone, then an evaluation over the training data.
inline RunResult run(Device d, const ModelConfig& m, const TrainConfig& t, const std::shared_ptr<Dataset>& data,
                     int steps, const gpu::CudaBackendOptions* opt = nullptr, int eval_after = -1) {
  auto backend = make(d, m, t, opt);
  backend->set_parameters(init_parameters(backend->layout(), m, t.seed));
  backend->set_train_data(data);
  BatchStream stream(data->count, t.batch, t.seed);
  RunResult r;
  Batch b;
  for (int k = 0; k < steps; ++k) {
    stream.next_rolling(b);
    backend->train_step(b);
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

inline void expect_finite(const std::vector<double>& v, const std::string& what) {
  for (std::size_t i = 0; i < v.size(); ++i) ASSERT_TRUE(std::isfinite(v[i])) << what << " step " << i;
}

}  // namespace vae::test
