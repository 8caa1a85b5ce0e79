// Linear layers: cuBLAS products, the fused bias+activation forward kernel and the fused
// activation-backward + bias-gradient kernel, with their launchers, and the cuBLASLt
// GEMM + bias + ReLU epilogue (see layers.cuh).
#include <algorithm>
#include <cstdio>

#include "cuda_check.cuh"
#include "elementwise.h"
#include "layers.cuh"
#include "vae/error.h"

namespace vae::gpu {
namespace {

// Row-major products through column-major cuBLAS: a row-major (r, c) matrix is the
// column-major (c, r) matrix, its transpose.
constexpr float kOne = 1.0f, kZero = 0.0f;

// ---- forward: y = act(y + b) ---------------------------------------------------------------
// One thread per element, grid-stride. y (rows, cols), b (cols).
template <Activation A>
__global__ void bias_act_forward_kernel(float* __restrict__ y, const float* __restrict__ b, int rows, int cols) {
  const std::size_t total = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const int c = static_cast<int>(i % static_cast<std::size_t>(cols));
    y[i] = ew::act_forward<A>(y[i] + b[c]);
  }
}

// ---- backward: dy <- dy * act'(y), db = column sums -------------------------------------
// Grid (column tiles, row chunks), block (kTileCols, kLanes): see column_sum.cuh.
template <Activation A>
__global__ void __launch_bounds__(kTileCols* kLanes)
    act_backward_bias_grad_kernel(float* __restrict__ dy, const float* __restrict__ y, int rows, int cols,
                                  float* __restrict__ db, float* __restrict__ partial, unsigned* __restrict__ counters) {
  const int col = blockIdx.x * kTileCols + threadIdx.x;
  float acc[1] = {0.0f};
  if (col < cols) {
    const int r0 = blockIdx.y * kChunkRows + threadIdx.y;
#pragma unroll
    for (int k = 0; k < kChunkRows / kLanes; ++k) {
      const int r = r0 + k * kLanes;
      if (r < rows) {
        const std::size_t i = static_cast<std::size_t>(r) * cols + col;
        const float g = dy[i] * ew::act_grad_from_output<A>(y[i]);
        dy[i] = g;
        acc[0] += g;
      }
    }
  }
  write_column_partials<1>(acc, cols, partial);
  if (last_block_ticket(counters + blockIdx.x, gridDim.y)) {
    float* const out[1] = {db};
    finish_column_sums<1>(cols, partial, out);
  }
}

void check_dims(const char* who, int rows, int cols) {
  if (rows <= 0 || cols <= 0) throw_error(who, ": rows and cols must be positive, got ", rows, " x ", cols);
}

template <Activation A>
void launch_bias_act(float* y, const float* b, int rows, int cols, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<std::size_t>((total + threads - 1) / threads, 8192));
  bias_act_forward_kernel<A><<<blocks, threads, 0, stream>>>(y, b, rows, cols);
  VAE_LAUNCH_CHECK("bias_act_forward_kernel");
}

template <Activation A>
void launch_act_backward(float* dy, const float* y, int rows, int cols, float* db, const ReduceScratch& s,
                         cudaStream_t stream) {
  const dim3 grid(column_tiles(cols), row_chunks(rows));
  const dim3 block(kTileCols, kLanes);
  act_backward_bias_grad_kernel<A><<<grid, block, 0, stream>>>(dy, y, rows, cols, db, s.partial, s.counters);
  VAE_LAUNCH_CHECK("act_backward_bias_grad_kernel");
}

}  // namespace

void linear_forward(cublasHandle_t blas, int rows, int in, int out, const float* x, const float* w, float* y) {
  if (rows <= 0 || in <= 0 || out <= 0)
    throw_error("linear_forward: rows, in, out must be positive, got ", rows, ", ", in, ", ", out);
  // column-major: Y^T (out, rows) = W (out, in) [stored as (in, out), op T] * X^T (in, rows)
  VAE_CUBLAS_CHECK(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &kOne, w, in, x, in, &kZero, y, out));
}

void linear_weight_grad(cublasHandle_t blas, int rows, int in, int out, const float* dy, const float* x, float* dw) {
  if (rows <= 0 || in <= 0 || out <= 0)
    throw_error("linear_weight_grad: rows, in, out must be positive, got ", rows, ", ", in, ", ", out);
  // column-major: dW^T (in, out) = X^T (in, rows) * dY (rows, out) [stored as (out, rows), op T]
  VAE_CUBLAS_CHECK(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, rows, &kOne, x, in, dy, out, &kZero, dw, in));
}

void linear_input_grad(cublasHandle_t blas, int rows, int in, int out, const float* dy, const float* w, float* dx,
                       int used) {
  if (rows <= 0 || in <= 0 || out <= 0)
    throw_error("linear_input_grad: rows, in, out must be positive, got ", rows, ", ", in, ", ", out);
  if (used < 0 || used > in) throw_error("linear_input_grad: used must be in [0, in = ", in, "], got ", used);
  const int u = used > 0 ? used : in;
  // column-major: dX^T (u, rows) = W^T[:u] (u, out) [stored as is, ld in] * dY^T (out, rows) [stored as is]
  VAE_CUBLAS_CHECK(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, u, rows, out, &kOne, w, in, dy, out, &kZero, dx, u));
}

void bias_act_forward(Activation act, float* y, const float* b, int rows, int cols, cudaStream_t stream) {
  check_dims("bias_act_forward", rows, cols);
  switch (act) {
    case Activation::relu: return launch_bias_act<Activation::relu>(y, b, rows, cols, stream);
    case Activation::tanh: return launch_bias_act<Activation::tanh>(y, b, rows, cols, stream);
    case Activation::leaky_relu: return launch_bias_act<Activation::leaky_relu>(y, b, rows, cols, stream);
    case Activation::softplus: return launch_bias_act<Activation::softplus>(y, b, rows, cols, stream);
  }
  throw_error("bias_act_forward: unknown activation ", int(act));
}

void act_backward_bias_grad(Activation act, float* dy, const float* y, int rows, int cols, float* db,
                            const ReduceScratch& scratch, cudaStream_t stream) {
  check_reduce_scratch(scratch, rows, cols, 1, false, "act_backward_bias_grad");
  switch (act) {
    case Activation::relu: return launch_act_backward<Activation::relu>(dy, y, rows, cols, db, scratch, stream);
    case Activation::tanh: return launch_act_backward<Activation::tanh>(dy, y, rows, cols, db, scratch, stream);
    case Activation::leaky_relu:
      return launch_act_backward<Activation::leaky_relu>(dy, y, rows, cols, db, scratch, stream);
    case Activation::softplus: return launch_act_backward<Activation::softplus>(dy, y, rows, cols, db, scratch, stream);
  }
  throw_error("act_backward_bias_grad: unknown activation ", int(act));
}

// ---- cuBLASLt GEMM + bias + ReLU ------------------------------------------------------------

struct LtBiasRelu::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;  // the heuristic found an algorithm
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    warn(a ? cublasLtMatrixLayoutDestroy(a) : CUBLAS_STATUS_SUCCESS);
    warn(b ? cublasLtMatrixLayoutDestroy(b) : CUBLAS_STATUS_SUCCESS);
    warn(d ? cublasLtMatrixLayoutDestroy(d) : CUBLAS_STATUS_SUCCESS);
    warn(desc ? cublasLtMatmulDescDestroy(desc) : CUBLAS_STATUS_SUCCESS);
  }
  static void warn(cublasStatus_t s) {
    if (s != CUBLAS_STATUS_SUCCESS)
      std::fprintf(stderr, "vae: warning: cuBLASLt release: %s\n", cublasGetStatusString(s));
  }
};

LtBiasRelu::LtBiasRelu(void* workspace, std::size_t workspace_bytes)
    : workspace_(workspace), workspace_bytes_(workspace_bytes) {}

LtBiasRelu::~LtBiasRelu() = default;  // the plans, then the handle

namespace {
// The largest power of two up to 256 that divides the address (cuBLASLt's alignment classes).
int alignment_of(const void* ptr) {
  const auto a = reinterpret_cast<std::uintptr_t>(ptr);
  int r = 256;
  while (r > 4 && a % static_cast<std::uintptr_t>(r) != 0) r /= 2;
  return r;
}
}  // namespace

LtBiasRelu::Plan& LtBiasRelu::plan(int rows, int in, int out, const float* x, const float* w, const float* bias,
                                   const float* y) {
  // The bias's alignment is part of the key: the heuristic sees the bias pointer, and a plan
  // chosen for a 256-byte-aligned bias must not serve one that is only 64-byte aligned.
  const int ax = alignment_of(x), aw = alignment_of(w), ay = alignment_of(y), ab = alignment_of(bias);
  auto& slot = plans_[{rows, in, out, ax, aw, ay, ab}];
  if (slot) return *slot;
  auto p = std::make_unique<Plan>();
  // Column-major view of the row-major product, as linear_forward: D = Y^T (out, rows) =
  // op(A) B with A = W stored (in, out), op T, and B = X^T stored (in, rows).
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_RELU_BIAS;
  const cudaDataType_t f32 = CUDA_R_32F;
  VAE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
  VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &f32, sizeof f32));
  // The heuristic reads the bias pointer's alignment (every bias starts on a 16-float boundary).
  VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  VAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_32F, static_cast<std::uint64_t>(in),
                                              static_cast<std::uint64_t>(out), in));
  VAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_32F, static_cast<std::uint64_t>(in),
                                              static_cast<std::uint64_t>(rows), in));
  VAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, CUDA_R_32F, static_cast<std::uint64_t>(out),
                                              static_cast<std::uint64_t>(rows), out));
  cublasLtMatmulPreference_t pref = nullptr;
  VAE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t status = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                               &workspace_bytes_, sizeof workspace_bytes_);
  // The operands' real alignments (the default preference assumes 256 bytes; parameter
  // tensors are only 64-byte aligned).
  const std::uint32_t align[4] = {static_cast<std::uint32_t>(aw), static_cast<std::uint32_t>(ax),
                                  static_cast<std::uint32_t>(ay), static_cast<std::uint32_t>(ay)};
  const cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int k = 0; k < 4 && status == CUBLAS_STATUS_SUCCESS; ++k)
    status = cublasLtMatmulPreferenceSetAttribute(pref, align_attr[k], &align[k], sizeof align[k]);
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulAlgoGetHeuristic(lt_.get(), p->desc, p->a, p->b, p->d, p->d, pref, 1, &result, &found);
  Plan::warn(cublasLtMatmulPreferenceDestroy(pref));
  if (status != CUBLAS_STATUS_SUCCESS && status != CUBLAS_STATUS_NOT_SUPPORTED)
    VAE_CUBLAS_CHECK(status);  // a real error: throws, naming the call
  p->ok = status == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (p->ok) p->algo = result.algo;
  slot = std::move(p);
  return *slot;
}

int LtBiasRelu::plans_with_algorithm() const {
  int n = 0;
  for (const auto& [shape, p] : plans_) n += p && p->ok;
  return n;
}

bool LtBiasRelu::forward(int rows, int in, int out, const float* x, const float* w, const float* b, float* y,
                         cudaStream_t stream) {
  if (rows <= 0 || in <= 0 || out <= 0)
    throw_error("LtBiasRelu::forward: rows, in, out must be positive, got ", rows, ", ", in, ", ", out);
  if (!x || !w || !b || !y) throw_error("LtBiasRelu::forward: null device pointer");
  Plan& p = plan(rows, in, out, x, w, b, y);
  if (!p.ok) return false;
  VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b));
  VAE_CUBLAS_CHECK(cublasLtMatmul(lt_.get(), p.desc, &kOne, w, p.a, x, p.b, &kZero, y, p.d, y, p.d, &p.algo, workspace_,
                                  workspace_bytes_, stream));
  return true;
}

}  // namespace vae::gpu
