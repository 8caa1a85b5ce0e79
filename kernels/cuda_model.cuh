// The device model: the MLP VAE's buffers on the GPU and its forward and backward pass,
// the device twin of CpuModel (host/cpu_model.h): the same data flow, the same layer order,
// the same passes (the ELBO with the reparameterization or the score-function gradient,
// the IWAE objective), the same formulas (host/elementwise.h). Everything is allocated in
// the constructor for `max_batch` data points and `max_rows` sample rows (data points x
// samples); a pass allocates nothing and only enqueues work on the stream (and cuBLAS
// calls on the handle, which must be bound to the same stream), so a whole pass can be
// captured into a CUDA graph.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "backend_shared.h"  // Pass
#include "column_sum.cuh"
#include "likelihood.cuh"
#include "device_memory.cuh"
#include "vae/config.h"
#include "vae/layout.h"

namespace vae::gpu {

class LtBiasRelu;

using vae::Pass;  // CpuModel's passes (host/backend_shared.h), also as gpu::Pass

class CudaModel {
 public:
  // blas must already be set to `stream` (cublasSetStream), FP32 without TF32.
  // max_rows >= max_batch: the most sample rows (n * L) a pass may use. lt (nullable,
  // outliving the model): ReLU layers' forward through cuBLASLt's bias + ReLU epilogue
  // instead of cuBLAS GEMM + bias_act_forward.
  CudaModel(const ModelConfig& cfg, int max_batch, int max_rows, cudaStream_t stream, cublasHandle_t blas,
            LtBiasRelu* lt = nullptr);

  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  int max_batch() const { return max_batch_; }
  int max_rows() const { return max_rows_; }

  // One flat allocation: params | grads | s1 | s2, layout().total() floats each (zeroed);
  // s1 and s2 are the optimizer's two state slots (OptimizerState's m and v).
  float* params() const { return flat_.get(); }
  float* grads() const { return flat_.get() + total_; }
  float* state1() const { return flat_.get() + 2 * total_; }
  float* state2() const { return flat_.get() + 3 * total_; }
  std::size_t total() const { return total_; }

  float* x() const { return x_.get(); }  // (max_batch, data_width) inputs of the next pass (features, condition)

  // A pass over rows [0, n) of x() with L samples per data point: eps (n*L, Z), row b*L+l,
  // at eps_block + *eps_offset (offset in device memory; null means 0). beta: device
  // pointer to the KL weight (the ELBO gradient passes read it; others may pass null).
  // With a gradient pass, grads() afterwards holds the gradient of the batch mean of the
  // pass's loss, every tensor written; row_logp, kl, head, z hold the forward results and,
  // for iwae, weights and bound the importance weights (/ n) and the bound per data point;
  // for forward and iwae, lpq the log p(z) - log q(z|x) per row.
  void run(const float* eps_block, const std::int64_t* eps_offset, int n, int L, Pass pass, const double* beta);
  // log p(x_b | z_r) for codes z (n*L, Z) decoding data point b = r / L of x(), into
  // row_logp(); no encoder (the naive estimate draws z from the prior).
  void decode_log_likelihood(const float* z, int n, int L);
  // Decoder means (rows, D) for decoder inputs z (rows, decoder_input_dim: z, then the
  // condition), rows <= max_rows(); returns where they are (on the device, until the next pass).
  const float* decode_mean(const float* z, int rows);

  // Results of the last pass, on the device.
  const float* row_logp() const { return row_logp_.get(); }  // (n*L)
  const float* lpq() const { return lpq_.get(); }            // (n*L)
  const float* kl() const { return kl_.get(); }              // (n)
  float* recon() const { return recon_.get(); }              // (n), written by loss_accumulate
  const float* bound() const { return bound_.get(); }        // (n) IWAE
  const float* weights() const { return weights_.get(); }    // (n*L) IWAE: normalized weights / n
  const float* head() const { return head_.get(); }          // (n, 2Z) mu | logvar, bias added
  const float* z() const { return z_.get(); }                // (n*L, Z)
  const float* logits() const { return logits_.get(); }      // (n*L, output_width); after backward d loss / d logits

 private:
  void linear_act(int rows, const LinearView& l, const float* in, float* out);  // GEMM + bias + activation
  const float* decode(const float* z, int rows);  // the hidden decoder layers; returns the last input
  // The decoder's input for codes z (n*L, Z) of the data points in x(): z itself, or [z, c] in zc_.
  const float* decoder_codes(const float* z, int n, int L);
  void output_logits(const float* z, int rows);   // decode, then the output GEMM into logits_ (no bias)
  // The decoder on codes z (n*L, Z) up to the output GEMM (logits without the bias), and the
  // likelihood arguments for them (forward only; a gradient pass adds its outputs).
  LikelihoodArgs decode_output(const float* z, int n, int L);
  struct BackwardOps;  // backward's operations for backward_walk (host/backward_walk.h)
  void backward(const float* eps_block, const std::int64_t* eps_offset, int n, int L, Pass pass, const double* beta);

  ModelConfig cfg_;
  ParamLayout layout_;
  int max_batch_, max_rows_;
  std::size_t total_;
  cudaStream_t stream_;
  cublasHandle_t blas_;
  LtBiasRelu* lt_;
  DeviceBuffer<float> flat_;
  DeviceBuffer<float> x_;                           // (B, D + C)
  DeviceBuffer<float> xin_;                         // (B, D + C) log(1 + x) with cfg.log1p_input, or none
  DeviceBuffer<float> zc_;                          // (R, Z + C) a conditional decoder's input, or none
  DeviceBuffer<float> lib_;                         // (B) --library-size: log library per item, or none
  std::vector<DeviceBuffer<float>> enc_act_;        // (B, H_i)
  std::vector<DeviceBuffer<float>> dec_act_;        // (R, H'_i)
  DeviceBuffer<float> head_;                        // (B, 2Z)
  DeviceBuffer<float> z_;                           // (R, Z)
  DeviceBuffer<float> logits_;                      // (R, output_width: D, or 2D with per-item zero inflation)
  DeviceBuffer<float> grad_a_, grad_b_;             // (R, max(width, 2Z)) ping-pong
  DeviceBuffer<float> row_logp_, lpq_, weights_;    // (R)
  DeviceBuffer<float> kl_, recon_, bound_;          // (B)
  ReduceScratchBuffers scratch_;                    // every fused reduction's scratch
};

}  // namespace vae::gpu
