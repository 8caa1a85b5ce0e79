// Helpers for the GPU suites: the skip-without-GPU fixture, device buffers filled from and
// read back to host vectors, NaN poisoning (so a test shows every output element is
// written), a stream + cuBLAS handle configured as the backend configures them, and the
// synthetic data and small models the backend tests share.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda_check.cuh"
#include "device_memory.cuh"
#include "internal.h"
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
inline std::vector<float> download_range(const float* device_ptr, std::size_t count) {
  VAE_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> out(count);
  VAE_CUDA_CHECK(cudaMemcpy(out.data(), device_ptr, count * sizeof(float), cudaMemcpyDeviceToHost));
  return out;
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

inline bool any_nan(const std::vector<float>& v) {
  for (float x : v)
    if (std::isnan(x)) return true;
  return false;
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
inline std::shared_ptr<Dataset> synthetic(std::int64_t n, int dim, std::uint64_t seed, bool as_float = false) {
  std::mt19937_64 g(seed);
  const int k = 4;
  std::vector<std::vector<std::uint8_t>> protos(k, std::vector<std::uint8_t>(static_cast<std::size_t>(dim)));
  for (auto& p : protos)
    for (auto& v : p) v = (g() % 2) ? 230 : 20;
  auto d = std::make_shared<Dataset>();
  d->source = "synthetic";
  d->count = n;
  d->dim = dim;
  d->height = 1;
  d->width = dim;
  std::vector<std::uint8_t> u8(static_cast<std::size_t>(n) * dim);
  for (std::int64_t i = 0; i < n; ++i)
    for (int j = 0; j < dim; ++j) {
      std::uint8_t v = protos[static_cast<std::size_t>(i % k)][static_cast<std::size_t>(j)];
      if (g() % 20 == 0) v = static_cast<std::uint8_t>(255 - v);
      u8[static_cast<std::size_t>(i) * dim + j] = v;
    }
  if (as_float) {
    d->f32.resize(u8.size());
    for (std::size_t i = 0; i < u8.size(); ++i) d->f32[i] = static_cast<float>(u8[i]) / 255.0f;
  } else {
    d->u8 = std::move(u8);
  }
  return d;
}

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

}  // namespace vae::test
