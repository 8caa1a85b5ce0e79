// Linear layers: Y = X W^T with W (out, in) row-major (PyTorch's layout) through cuBLAS
// in FP32 (no TF32), then our fused bias + activation kernel. Backward: our kernel fusing
// dY * act'(Y) (the derivative from the layer's output, ew::act_grad_from_output) with the
// bias gradient as a deterministic column sum; dW = dY^T X and dX = dY W through cuBLAS.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "column_sum.cuh"
#include "vae/config.h"

namespace vae::gpu {

// ---- cuBLAS products (on the handle's stream) -------------------------------------------
// Y (rows, out) = X (rows, in) W^T
void linear_forward(cublasHandle_t blas, int rows, int in, int out, const float* x, const float* w, float* y);
// dW (out, in) = dY^T (out, rows) X (rows, in)
void linear_weight_grad(cublasHandle_t blas, int rows, int in, int out, const float* dy, const float* x, float* dw);
// dX (rows, in) = dY (rows, out) W (out, in)
void linear_input_grad(cublasHandle_t blas, int rows, int in, int out, const float* dy, const float* w, float* dx);

// ---- fused elementwise passes -------------------------------------------------------------
// y (rows, cols) <- act(y + b), b (cols).
void bias_act_forward(Activation act, float* y, const float* b, int rows, int cols, cudaStream_t stream);
// dy (rows, cols) <- dy * act'(y) from the output y (rows, cols); db (cols) = column sums of
// the result, deterministic.
void act_backward_bias_grad(Activation act, float* dy, const float* y, int rows, int cols, float* db,
                            const ReduceScratch& scratch, cudaStream_t stream);

}  // namespace vae::gpu
