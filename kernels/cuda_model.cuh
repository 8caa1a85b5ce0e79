// The device model: the MLP VAE's buffers on the GPU and its forward and backward pass,
// the device twin of CpuModel (host/cpu_model.h): the same data flow, the same layer order,
// the same formulas (vae/elementwise.h). Everything is allocated in the constructor for
// `max_batch` data points; a pass allocates nothing and only enqueues work on the stream
// (and cuBLAS calls on the handle, which must be bound to the same stream), so a whole
// pass can be captured into a CUDA graph.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "column_sum.cuh"
#include "device_memory.cuh"
#include "vae/config.h"
#include "vae/layout.h"

namespace vae::gpu {

class CudaModel {
 public:
  // blas must already be set to `stream` (cublasSetStream), FP32 without TF32.
  CudaModel(const ModelConfig& cfg, int max_batch, cudaStream_t stream, cublasHandle_t blas);

  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  int max_batch() const { return max_batch_; }

  // One flat allocation: params | grads | m | v, layout().total() floats each (zeroed).
  float* params() const { return flat_.get(); }
  float* grads() const { return flat_.get() + total_; }
  float* adam_m() const { return flat_.get() + 2 * total_; }
  float* adam_v() const { return flat_.get() + 3 * total_; }
  std::size_t total() const { return total_; }

  float* x() const { return x_.get(); }  // (max_batch, D) inputs of the next pass

  // Forward over rows [0, n) of x() with eps (n*L, Z) at eps_block + *eps_offset (offset in
  // device memory; null means 0). With backward, grads() afterwards holds the gradient of
  // the batch loss mean_b[-(1/L) sum_l log p(x_b|z_bl) + beta*KL_b], every tensor written.
  void forward(const float* eps_block, const std::int64_t* eps_offset, int n, bool backward);

  // Results of the last pass, on the device.
  const float* row_logp() const { return row_logp_.get(); }  // (n*L)
  const float* kl() const { return kl_.get(); }              // (n)
  float* recon() const { return recon_.get(); }              // (n), written by loss_accumulate
  const float* head() const { return head_.get(); }          // (n, 2Z) mu | logvar, bias added
  const float* z() const { return z_.get(); }                // (n*L, Z)
  const float* logits() const { return logits_.get(); }      // (n*L, D); after backward d loss / d logits

 private:
  void backward(const float* eps_block, const std::int64_t* eps_offset, int n);

  ModelConfig cfg_;
  ParamLayout layout_;
  int max_batch_;
  std::size_t total_;
  cudaStream_t stream_;
  cublasHandle_t blas_;
  DeviceBuffer<float> flat_;
  DeviceBuffer<float> x_;                           // (B, D)
  std::vector<DeviceBuffer<float>> enc_act_;        // (B, H_i)
  std::vector<DeviceBuffer<float>> dec_act_;        // (B*L, H'_i)
  DeviceBuffer<float> head_;                        // (B, 2Z)
  DeviceBuffer<float> z_;                           // (B*L, Z)
  DeviceBuffer<float> logits_;                      // (B*L, D)
  DeviceBuffer<float> grad_a_, grad_b_;             // (B*L, max width) ping-pong
  DeviceBuffer<float> row_logp_;                    // (B*L)
  DeviceBuffer<float> kl_, recon_;                  // (B)
  DeviceBuffer<float> partial_;                     // reduction scratch
  DeviceBuffer<unsigned> counters_;                 // reduction tickets, zero between launches
  ReduceScratch scratch_;
};

}  // namespace vae::gpu
