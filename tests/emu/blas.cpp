// The CPU emulator's cuBLAS and cuBLASLt: the entry points the project calls, each checked
// as cuBLAS checks its arguments and run in stream order (emu.h) through OpenBLAS's sgemm.
// cuBLASLt's matmul supports what LtBiasRelu asks for: FP32, op(A) op(B), and the
// DEFAULT, RELU, BIAS and RELU_BIAS epilogues.
//
// VAE_EMU_GEMM=splitk sums every product in another order than the CPU path's OpenBLAS
// calls do: K is cut into three uneven parts, each part's product is formed on its own and
// the parts are added last to first, as cuBLAS's split-K kernels do. cuBLAS on a GPU never
// rounds as OpenBLAS does on the CPU; with this setting the GPU suites show that their
// tolerances allow for that, which the default (OpenBLAS's own order) cannot show.
#include <cblas.h>
#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "emu.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
  // cublasSetWorkspace's buffer is in use; cublasSetStream drops it (back to cuBLAS's own
  // pool), as cuBLAS does.
  bool user_workspace = false;
  int math_mode = CUBLAS_DEFAULT_MATH;
};
struct cublasLtContext {
  int unused = 0;
};

namespace {
struct LtDesc {
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const float* bias = nullptr;
};
struct LtLayout {
  std::uint64_t rows = 0, cols = 0;
  std::int64_t ld = 0;
};
struct LtPref {
  int unused = 0;
};
LtDesc* desc(cublasLtMatmulDesc_t d) { return reinterpret_cast<LtDesc*>(d); }
LtLayout* layout(cublasLtMatrixLayout_t l) { return reinterpret_cast<LtLayout*>(l); }

CBLAS_TRANSPOSE to_cblas(cublasOperation_t op) { return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans; }
bool valid_op(cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T; }

// A float rounded to TF32 (10 mantissa bits, to nearest, ties away from zero), as the
// tensor cores read FP32 operands under CUBLAS_TF32_TENSOR_OP_MATH.
float to_tf32(float v) {
  if (!std::isfinite(v)) return v;
  std::uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  bits = (bits + 0x1000u) & 0xFFFFE000u;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}
// A copy of the column-major (rows, cols) operand at p (leading dimension ld), rounded to TF32.
std::vector<float> tf32_copy(const float* p, int rows, int cols, int ld) {
  if (rows <= 0 || cols <= 0) return {};
  std::vector<float> out(static_cast<std::size_t>(ld) * static_cast<std::size_t>(cols - 1) + static_cast<std::size_t>(rows));
  for (int j = 0; j < cols; ++j)
    for (int i = 0; i < rows; ++i) {
      const std::size_t e = static_cast<std::size_t>(j) * static_cast<std::size_t>(ld) + static_cast<std::size_t>(i);
      out[e] = to_tf32(p[e]);
    }
  return out;
}

// The statuses the emulator returns: cuBLAS's name and message of each.
constexpr vae_emu::CodeText<cublasStatus_t> kStatuses[] = {
    {CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS", "success"},
    {CUBLAS_STATUS_NOT_INITIALIZED, "CUBLAS_STATUS_NOT_INITIALIZED", "the library was not initialized"},
    {CUBLAS_STATUS_ALLOC_FAILED, "CUBLAS_STATUS_ALLOC_FAILED", "the resource allocation failed"},
    {CUBLAS_STATUS_INVALID_VALUE, "CUBLAS_STATUS_INVALID_VALUE", "an invalid numeric value was used as an argument"},
    {CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_STATUS_NOT_SUPPORTED", "the functionality requested is not supported"},
    {CUBLAS_STATUS_EXECUTION_FAILED, "CUBLAS_STATUS_EXECUTION_FAILED", "the GPU program failed to execute"},
};

bool split_k() {
  static const bool on = [] {
    const char* v = std::getenv("VAE_EMU_GEMM");
    if (!v || !*v || std::strcmp(v, "openblas") == 0) return false;
    if (std::strcmp(v, "splitk") == 0) return true;
    std::fprintf(stderr, "emulator: VAE_EMU_GEMM='%s' is neither 'openblas' nor 'splitk'\n", v);
    std::abort();
  }();
  return on;
}

// C = alpha op(A) op(B) + beta C (column-major, as cuBLAS), in OpenBLAS's order or split-K.
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  if (!split_k() || k < 3) {
    cblas_sgemm(CblasColMajor, to_cblas(ta), to_cblas(tb), m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int cut[4] = {0, k / 5 + 1, k / 2 + 1, k};  // three uneven parts, none empty for k >= 3
  const std::size_t mn = static_cast<std::size_t>(m) * static_cast<std::size_t>(n);
  std::vector<float> part(3 * mn);
  for (int p = 0; p < 3; ++p) {
    const int k0 = cut[p], kp = cut[p + 1] - cut[p];
    const float* a = A + (ta == CUBLAS_OP_N ? static_cast<std::size_t>(k0) * lda : static_cast<std::size_t>(k0));
    const float* b = B + (tb == CUBLAS_OP_N ? static_cast<std::size_t>(k0) : static_cast<std::size_t>(k0) * ldb);
    cblas_sgemm(CblasColMajor, to_cblas(ta), to_cblas(tb), m, n, kp, alpha, a, lda, b, ldb, 0.0f,
                part.data() + p * mn, m);
  }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      const std::size_t e = static_cast<std::size_t>(j) * m + i;
      float& c = C[static_cast<std::size_t>(j) * ldc + i];
      const float sum = (part[2 * mn + e] + part[mn + e]) + part[e];
      c = beta == 0.0f ? sum : sum + beta * c;  // beta 0: C is not read (it may hold NaN)
    }
}
}  // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new (std::nothrow) cublasContext;
  return *handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  handle->user_workspace = false;  // cuBLAS: "unconditionally resets the workspace to the default pool"
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!stream) return CUBLAS_STATUS_INVALID_VALUE;
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace, size_t bytes) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (bytes > 0 && !workspace) return CUBLAS_STATUS_INVALID_VALUE;
  handle->user_workspace = bytes > 0;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math_mode = static_cast<int>(mode);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetAtomicsMode(cublasHandle_t handle, cublasAtomicsMode_t) {
  return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}
cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->pointer_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t s) {
  const auto* x = vae_emu::find_code(kStatuses, s);
  return x ? x->name : "CUBLAS_STATUS_INTERNAL_ERROR";
}
const char* cublasGetStatusString(cublasStatus_t s) {
  const auto* x = vae_emu::find_code(kStatuses, s);
  return x ? x->text : "an internal operation failed (emulator)";
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                              int k, const float* alpha, const float* A, int lda, const float* B, int ldb,
                              const float* beta, float* C, int ldc) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  const int a_rows = transa == CUBLAS_OP_N ? m : k, b_rows = transb == CUBLAS_OP_N ? k : n;
  if (!valid_op(transa) || !valid_op(transb) || m < 0 || n < 0 || k < 0 || lda < std::max(1, a_rows) ||
      ldb < std::max(1, b_rows) || ldc < std::max(1, m) || !alpha || !beta)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  if (!handle->user_workspace && vae_emu::is_capturing(handle->stream)) {
    // Without cublasSetWorkspace (or after a cublasSetStream, which drops it) cuBLAS takes
    // its workspace from its own pool, allocating inside the capture: the project's step
    // graphs must not allocate, so this is refused here (a real GPU accepts it quietly).
    std::fprintf(stderr,
                 "vae_emu: cublasSgemm captured into a graph without a user workspace (call cublasSetWorkspace "
                 "after cublasSetStream)\n");
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  const bool host_scalars = handle->pointer_mode == CUBLAS_POINTER_MODE_HOST;
  const float a_val = host_scalars ? *alpha : 0.0f, b_val = host_scalars ? *beta : 0.0f;
  // CUBLAS_TF32_TENSOR_OP_MATH: the GPU rounds A and B to TF32 before multiplying; so does
  // the emulator, so that a handle left in TF32 mode shows in the GPU-vs-CPU comparisons.
  const bool tf32 = (handle->math_mode & 0xF) == CUBLAS_TF32_TENSOR_OP_MATH;
  const bool ok = vae_emu::submit_host_op(handle->stream, "cublasSgemm", [=]() {
    const float al = host_scalars ? a_val : *alpha, be = host_scalars ? b_val : *beta;
    if (tf32) {
      const auto a = tf32_copy(A, transa == CUBLAS_OP_N ? m : k, transa == CUBLAS_OP_N ? k : m, lda);
      const auto b = tf32_copy(B, transb == CUBLAS_OP_N ? k : n, transb == CUBLAS_OP_N ? n : k, ldb);
      gemm(transa, transb, m, n, k, al, a.data(), lda, b.data(), ldb, be, C, ldc);
      return;
    }
    gemm(transa, transb, m, n, k, al, A, lda, B, ldb, be, C, ldc);
  });
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

// ---- cuBLASLt --------------------------------------------------------------------------------
cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
  if (!d) return CUBLAS_STATUS_INVALID_VALUE;
  if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  *d = reinterpret_cast<cublasLtMatmulDesc_t>(new LtDesc);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete desc(d);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t bytes) {
  if (!d || !buf) return CUBLAS_STATUS_INVALID_VALUE;
  LtDesc* x = desc(d);
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
      if (bytes != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&x->ta, buf, bytes);
      return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_TRANSB:
      if (bytes != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&x->tb, buf, bytes);
      return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
      if (bytes != sizeof(cublasLtEpilogue_t)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&x->epilogue, buf, bytes);
      return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
      if (bytes != sizeof(void*)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&x->bias, buf, bytes);
      return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: {
      cudaDataType_t t;
      if (bytes != sizeof t) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&t, buf, bytes);
      return t == CUDA_R_32F ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
    }
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
  if (!l) return CUBLAS_STATUS_INVALID_VALUE;
  if (type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (ld < static_cast<int64_t>(std::max<uint64_t>(rows, 1))) return CUBLAS_STATUS_INVALID_VALUE;
  *l = reinterpret_cast<cublasLtMatrixLayout_t>(new LtLayout{rows, cols, ld});
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete layout(l);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  if (!p) return CUBLAS_STATUS_INVALID_VALUE;
  *p = reinterpret_cast<cublasLtMatmulPreference_t>(new LtPref);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete reinterpret_cast<LtPref*>(p);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t,
                                                    const void* buf, size_t) {
  return p && buf ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

namespace {
bool shapes_ok(const LtDesc& d, const LtLayout& a, const LtLayout& b, const LtLayout& c, const LtLayout& o) {
  const std::uint64_t m = d.ta == CUBLAS_OP_N ? a.rows : a.cols, ka = d.ta == CUBLAS_OP_N ? a.cols : a.rows;
  const std::uint64_t kb = d.tb == CUBLAS_OP_N ? b.rows : b.cols, n = d.tb == CUBLAS_OP_N ? b.cols : b.rows;
  return ka == kb && o.rows == m && o.cols == n && c.rows == m && c.cols == n;
}
bool epilogue_ok(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_DEFAULT || e == CUBLASLT_EPILOGUE_RELU || e == CUBLASLT_EPILOGUE_BIAS ||
         e == CUBLASLT_EPILOGUE_RELU_BIAS;
}
}  // namespace

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t o, cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int* found) {
  if (!h || !d || !a || !b || !c || !o || !p || requested < 1 || !results || !found) return CUBLAS_STATUS_INVALID_VALUE;
  if (!shapes_ok(*desc(d), *layout(a), *layout(b), *layout(c), *layout(o))) return CUBLAS_STATUS_INVALID_VALUE;
  if (!epilogue_ok(desc(d)->epilogue)) return CUBLAS_STATUS_NOT_SUPPORTED;
  std::memset(&results[0], 0, sizeof results[0]);
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *found = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t a, const void* B, cublasLtMatrixLayout_t b, const void* beta,
                              const void* C, cublasLtMatrixLayout_t c, void* D, cublasLtMatrixLayout_t o,
                              const cublasLtMatmulAlgo_t*, void*, size_t, cudaStream_t stream) {
  if (!h || !d || !a || !b || !c || !o || !alpha || !beta || !A || !B || !D) return CUBLAS_STATUS_INVALID_VALUE;
  const LtDesc x = *desc(d);
  const LtLayout la = *layout(a), lb = *layout(b), lc = *layout(c), lo = *layout(o);
  if (!shapes_ok(x, la, lb, lc, lo)) return CUBLAS_STATUS_INVALID_VALUE;
  if (!epilogue_ok(x.epilogue)) return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool use_bias = x.epilogue == CUBLASLT_EPILOGUE_BIAS || x.epilogue == CUBLASLT_EPILOGUE_RELU_BIAS;
  const bool relu = x.epilogue == CUBLASLT_EPILOGUE_RELU || x.epilogue == CUBLASLT_EPILOGUE_RELU_BIAS;
  if (use_bias && !x.bias) return CUBLAS_STATUS_INVALID_VALUE;
  if (C != D && beta && *static_cast<const float*>(beta) != 0.0f) return CUBLAS_STATUS_NOT_SUPPORTED;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const int m = static_cast<int>(lo.rows), n = static_cast<int>(lo.cols);
  const int k = static_cast<int>(x.ta == CUBLAS_OP_N ? la.cols : la.rows);
  const bool ok = vae_emu::submit_host_op(stream, "cublasLtMatmul", [=]() {
    float* out = static_cast<float*>(D);
    gemm(x.ta, x.tb, m, n, k, al, static_cast<const float*>(A), static_cast<int>(la.ld), static_cast<const float*>(B),
         static_cast<int>(lb.ld), be, out, static_cast<int>(lo.ld));
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float& v = out[static_cast<std::size_t>(j) * static_cast<std::size_t>(lo.ld) + static_cast<std::size_t>(i)];
        if (use_bias) v += x.bias[i];
        if (relu) v = v > 0.0f ? v : 0.0f;
      }
  });
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // extern "C"
