// Row-major GEMM wrappers over CBLAS (OpenBLAS), for float and double, named by the
// three products a linear layer needs. Weights W are (out, in), activations (rows, features).
//
// Bits that do not depend on the thread count: OpenBLAS's threaded GEMM splits its work by the
// threads it has and gives other bits at 1 and 2 threads. So OpenBLAS runs on one thread
// (gemm1) and each product is cut here into a fixed number of blocks of C's longer
// side, each one single-threaded GEMM, which the OpenMP pool shares out. The cut depends on the
// shapes and on gemm_blocks() (the machine's cores), never on the threads in use: the CPU path
// may change its thread count between steps (the load governor) and a seed still fixes a run.
#pragma once
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstddef>

#include "internal.h"

namespace vae::blas {

// The blocks a product is cut into: the machine's hardware threads (fixed for a machine).
inline int gemm_blocks() { return cpu_cores(); }
// The least rows or columns of C in one block: smaller cuts cost more than they share.
constexpr int kMinBlock = 32;

// One single-threaded product. OpenBLAS's OpenMP build runs on one thread inside a parallel
// region of several threads, and otherwise on as many as the calling task's pool holds (it
// follows omp_get_max_threads() at every call, whatever openblas_set_num_threads said): so
// that pool is one thread for the call.
struct OneThreadPool {
  int pool = omp_get_max_threads();
  OneThreadPool() {
    if (pool != 1) omp_set_num_threads(1);
  }
  ~OneThreadPool() {
    if (pool != 1) omp_set_num_threads(pool);
  }
  OneThreadPool(const OneThreadPool&) = delete;
  OneThreadPool& operator=(const OneThreadPool&) = delete;
};
inline void gemm1(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const float* a, int lda,
                  const float* b, int ldb, float beta, float* c, int ldc) {
  const OneThreadPool one;
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
inline void gemm1(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const double* a, int lda,
                  const double* b, int ldb, double beta, double* c, int ldc) {
  const OneThreadPool one;
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
}

// C (m, n) = op(A) (m, k) op(B) (k, n) + beta C, in `blocks` blocks of C's rows (m > n) or
// columns, each at least kMinBlock long (fewer blocks where C is too small), shared out over
// the OpenMP pool.
template <class T>
void gemm_in_blocks(int blocks, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const T* a, int lda,
                    const T* b, int ldb, T beta, T* c, int ldc) {
  const bool by_rows = m > n;
  const int len = by_rows ? m : n;
  blocks = std::max(1, std::min(blocks, len / kMinBlock));
  if (blocks == 1) return gemm1(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
#pragma omp parallel for schedule(dynamic, 1)
  for (int q = 0; q < blocks; ++q) {
    const int b0 = static_cast<int>(static_cast<long long>(len) * q / blocks);
    const int b1 = static_cast<int>(static_cast<long long>(len) * (q + 1) / blocks);
    const std::size_t s0 = static_cast<std::size_t>(b0);
    if (by_rows)  // rows b0..b1 of op(A) and C
      gemm1(ta, tb, b1 - b0, n, k, ta == CblasNoTrans ? a + s0 * lda : a + s0, lda, b, ldb, beta, c + s0 * ldc, ldc);
    else  // columns b0..b1 of op(B) and C
      gemm1(ta, tb, m, b1 - b0, k, a, lda, tb == CblasNoTrans ? b + s0 : b + s0 * ldb, ldb, beta, c + s0, ldc);
  }
}

template <class T>
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const T* a, int lda, const T* b, int ldb,
          T beta, T* c, int ldc) {
  gemm_in_blocks(gemm_blocks(), ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
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
