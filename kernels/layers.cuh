// Linear layers: Y = X W^T with W (out, in) row-major (PyTorch's layout) through cuBLAS
// in FP32 (no TF32), then our fused bias + activation kernel. Backward: our kernel fusing
// dY * act'(Y) (the derivative from the layer's output, ew::act_grad_from_output) with the
// bias gradient as a deterministic column sum; dW = dY^T X and dX = dY W through cuBLAS.
// For ReLU layers, the alternative forward: cuBLASLt's GEMM with the bias + ReLU epilogue
// in one launch (LtBiasRelu); bench/gpu_kernels.cu times it against GEMM + bias_act.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <map>
#include <memory>

#include "column_sum.cuh"
#include "cuda_handles.cuh"
#include "vae/config.h"

namespace vae::gpu {

// ---- cuBLAS products (on the handle's stream) -------------------------------------------
// Y (rows, out) = X (rows, in) W^T
void linear_forward(cublasHandle_t blas, int rows, int in, int out, const float* x, const float* w, float* y);
// dW (out, in) = dY^T (out, rows) X (rows, in)
void linear_weight_grad(cublasHandle_t blas, int rows, int in, int out, const float* dy, const float* x, float* dw);
// dX (rows, used) = dY (rows, out) W[:, :used] (out, in); used 0: all `in` inputs (a
// conditional decoder's first layer uses the z part only).
void linear_input_grad(cublasHandle_t blas, int rows, int in, int out, const float* dy, const float* w, float* dx,
                       int used = 0);

// ---- fused elementwise passes -------------------------------------------------------------
// y (rows, cols) <- act(y + b), b (cols).
void bias_act_forward(Activation act, float* y, const float* b, int rows, int cols, cudaStream_t stream);
// dy (rows, cols) <- dy * act'(y) from the output y (rows, cols); db (cols) = column sums of
// the result, deterministic.
void act_backward_bias_grad(Activation act, float* dy, const float* y, int rows, int cols, float* db,
                            const ReduceScratch& scratch, cudaStream_t stream);

// ---- cuBLASLt: Y = relu(X W^T + b) in one GEMM launch (CUBLASLT_EPILOGUE_RELU_BIAS) -------
// FP32 compute (CUBLAS_COMPUTE_32F: no TF32). A plan (descriptors and the heuristic's
// algorithm) is made on the first call of each shape, host work only; later calls, and
// graph captures, only launch. The workspace (shared with cuBLAS on the same stream) must
// outlive the object. Not thread-safe.
class LtBiasRelu {
 public:
  LtBiasRelu(void* workspace, std::size_t workspace_bytes);
  ~LtBiasRelu();
  LtBiasRelu(const LtBiasRelu&) = delete;
  LtBiasRelu& operator=(const LtBiasRelu&) = delete;

  // y (rows, out) = relu(x (rows, in) W^T + b), W (out, in), b (out). Returns false (and
  // launches nothing) when cuBLASLt has no algorithm for the shape: the caller falls back
  // to linear_forward + bias_act_forward.
  bool forward(int rows, int in, int out, const float* x, const float* w, const float* b, float* y,
               cudaStream_t stream);
  int plans_with_algorithm() const;  // shapes seen for which cuBLASLt had an algorithm

 private:
  struct Plan;
  Plan& plan(int rows, int in, int out, const float* x, const float* w, const float* b, const float* y);

  BlasLtHandle lt_;
  void* workspace_;
  std::size_t workspace_bytes_;
  // By (rows, in, out) and the alignments of x, w and y: the algorithm depends on both.
  std::map<std::array<int, 7>, std::unique_ptr<Plan>> plans_;  // (rows, in, out, alignments of x, w, y, bias)
};

}  // namespace vae::gpu
