// Row-major GEMM wrappers over CBLAS (OpenBLAS), for float and double, named by the
// three products a linear layer needs. Weights W are (out, in), activations (rows, features).
#pragma once
#include <cblas.h>

namespace vae::blas {

inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const double* a, int lda,
                 const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
}

// Y (rows, out) = X (rows, in) W^T
template <class T>
void linear_forward(int rows, int in, int out, const T* x, const T* w, T* y) {
  gemm(CblasNoTrans, CblasTrans, rows, out, in, x, in, w, in, T(0), y, out);
}
// dW (out, in) = dY^T (out, rows) X (rows, in)
template <class T>
void linear_weight_grad(int rows, int in, int out, const T* dy, const T* x, T* dw) {
  gemm(CblasTrans, CblasNoTrans, out, in, rows, dy, out, x, in, T(0), dw, in);
}
// dX (rows, used) = dY (rows, out) W[:, :used] (out, in): the gradient of the first `used`
// inputs (all of them by default; a conditional decoder's first layer: z, not the condition).
template <class T>
void linear_input_grad(int rows, int in, int out, const T* dy, const T* w, T* dx, int used = 0) {
  const int u = used > 0 ? used : in;
  gemm(CblasNoTrans, CblasNoTrans, rows, u, out, dy, out, w, in, T(0), dx, u);
}

}  // namespace vae::blas
