// The emulator's own tests: that it runs what a GPU runs (barriers, shuffles, streams,
// events, graphs), and that the faults it is there to expose do show: a missing barrier
// changes the result with the thread order, a missing wait reads stale data, capture
// refuses synchronous calls, a divergent barrier aborts; and that VAE_EMU_GEMM=splitk does
// sum cuBLAS's products in another order. Built and run only in the emulator's build
// (translated like the kernels).
#include <cblas.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <curand.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

namespace {

// Block sum through shared memory with barriers, then a warp shuffle butterfly.
__global__ void block_sum_kernel(const float* x, int n, float* out) {
  __shared__ float buf[256];
  const int t = threadIdx.x;
  const int i = blockIdx.x * blockDim.x + t;
  buf[t] = i < n ? x[i] : 0.0f;
  __syncthreads();
  for (int s = blockDim.x / 2; s >= 32; s >>= 1) {
    if (t < s) buf[t] += buf[t + s];
    __syncthreads();
  }
  if (t < 32) {
    float v = buf[t];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (t == 0) out[blockIdx.x] = v;
  }
}

// Thread t writes base + t into its slot and reads its neighbour's slot, with a barrier
// between (sync) or without one: then it reads the neighbour's new value only if the
// neighbour has run already.
__global__ void shift_kernel(float* out, float base, bool sync) {
  __shared__ float buf[64];
  const int t = threadIdx.x;
  buf[t] = base + static_cast<float>(t);
  if (sync) __syncthreads();
  out[t] = buf[(t + 1) % 64];
}

// Half a warp at __syncthreads, the other half at a shuffle that needs the whole warp.
__global__ void divergent_barrier_kernel() {
  if (threadIdx.x < 16) __syncthreads();
  else {
    float v = 1.0f;
    v = __shfl_xor_sync(0xffffffffu, v, 1);
    (void)v;
  }
}

__global__ void add_one_kernel(float* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += 1.0f;
}

void check(cudaError_t e) { ASSERT_EQ(e, cudaSuccess) << cudaGetErrorString(e); }

// n uniform floats from cuRAND's host Philox generator (defined at the end of the file, out
// of the prelude's renaming of the cuRAND calls).
std::vector<float> host_philox_uniform(unsigned long long seed, unsigned long long offset, std::size_t n);

// shift_kernel's output without the barrier, in the given thread order, after a run with
// the barrier has left 0, 1, ..., 63 in the shared slots; the new values are 100 + t.
std::vector<float> run_racy(const char* order) {
  setenv("VAE_EMU_ORDER", order, 1);  // the emulator reads it at every launch
  float* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, 64 * sizeof(float)), cudaSuccess);
  shift_kernel<<<1, 64>>>(d, 0.0f, true);
  shift_kernel<<<1, 64>>>(d, 100.0f, false);
  std::vector<float> h(64);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(h.data(), d, 64 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d);
  return h;
}

TEST(Emulator, BarriersAndShufflesSumLikeTheHost) {
  const int n = 1000;
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = static_cast<float>((i * 37) % 101) - 50.0f;
  float *dx = nullptr, *dout = nullptr;
  check(cudaMalloc(&dx, n * sizeof(float)));
  check(cudaMalloc(&dout, 4 * sizeof(float)));
  check(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  block_sum_kernel<<<4, 256>>>(dx, n, dout);
  check(cudaGetLastError());
  check(cudaDeviceSynchronize());
  std::vector<float> out(4);
  check(cudaMemcpy(out.data(), dout, 4 * sizeof(float), cudaMemcpyDeviceToHost));
  for (int b = 0; b < 4; ++b) {
    double want = 0;
    for (int i = b * 256; i < std::min(n, (b + 1) * 256); ++i) want += x[i];
    EXPECT_EQ(out[b], static_cast<float>(want)) << "block " << b;  // integers: exact in float
  }
  cudaFree(dx);
  cudaFree(dout);
}

TEST(Emulator, AMissingBarrierGivesOrderDependentResults) {
  const char* saved = std::getenv("VAE_EMU_ORDER");
  const std::string keep = saved ? saved : "";
  const std::vector<float> fwd = run_racy("forward"), rev = run_racy("reverse");
  if (keep.empty()) unsetenv("VAE_EMU_ORDER");
  else setenv("VAE_EMU_ORDER", keep.c_str(), 1);
  // Forward: every thread but the last runs before its neighbour and reads the old value;
  // reverse: every thread but the last runs after it and reads the new one.
  for (int t = 0; t < 64; ++t) {
    const float old_value = static_cast<float>((t + 1) % 64), new_value = 100.0f + old_value;
    EXPECT_EQ(fwd[t], t < 63 ? old_value : new_value) << "forward, thread " << t;
    EXPECT_EQ(rev[t], t < 63 ? new_value : old_value) << "reverse, thread " << t;
  }
}

TEST(Emulator, StreamWorkWaitsForTheHostToWait) {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  float* d = nullptr;
  float* pinned = nullptr;
  check(cudaMalloc(&d, 8 * sizeof(float)));
  check(cudaMallocHost(reinterpret_cast<void**>(&pinned), 8 * sizeof(float)));
  check(cudaMemsetAsync(d, 0, 8 * sizeof(float), s));
  add_one_kernel<<<1, 8, 0, s>>>(d, 8);
  for (int i = 0; i < 8; ++i) pinned[i] = -1.0f;
  check(cudaMemcpyAsync(pinned, d, 8 * sizeof(float), cudaMemcpyDeviceToHost, s));
  EXPECT_EQ(pinned[0], -1.0f) << "without a wait the copy has not happened";
  check(cudaStreamSynchronize(s));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(pinned[i], 1.0f);
  cudaFreeHost(pinned);
  cudaFree(d);
  cudaStreamDestroy(s);
}

// Two non-blocking streams and an event without timing, for the length of a test.
struct TwoStreams {
  cudaStream_t a = nullptr, b = nullptr;
  cudaEvent_t e = nullptr;
  TwoStreams() {
    check(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking));
    check(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking));
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  ~TwoStreams() {
    cudaEventDestroy(e);
    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
  }
};

TEST(Emulator, AnEventOrdersTwoStreams) {
  const TwoStreams t;
  cudaStream_t a = t.a, b = t.b;
  cudaEvent_t e = t.e;
  float* d = nullptr;
  float h = 0.0f;
  check(cudaMalloc(&d, sizeof(float)));
  check(cudaMemsetAsync(d, 0, sizeof(float), a));
  add_one_kernel<<<1, 1, 0, a>>>(d, 1);
  check(cudaEventRecord(e, a));
  check(cudaStreamWaitEvent(b, e, 0));
  add_one_kernel<<<1, 1, 0, b>>>(d, 1);
  check(cudaMemcpyAsync(&h, d, sizeof(float), cudaMemcpyDeviceToHost, b));  // pageable: waits
  EXPECT_EQ(h, 2.0f);
  cudaFree(d);
}

TEST(Emulator, FreshDeviceMemoryReadsAsNaN) {
  float* d = nullptr;
  float h = 0.0f;
  check(cudaMalloc(&d, sizeof(float)));
  check(cudaMemcpy(&h, d, sizeof(float), cudaMemcpyDeviceToHost));
  EXPECT_TRUE(std::isnan(h));
  cudaFree(d);
}

TEST(Emulator, GraphsReplayAndCaptureRefusesSynchronousCalls) {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  float* d = nullptr;
  check(cudaMalloc(&d, 4 * sizeof(float)));
  check(cudaMemsetAsync(d, 0, 4 * sizeof(float), s));
  check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  add_one_kernel<<<1, 4, 0, s>>>(d, 4);
  cudaGraph_t g = nullptr;
  check(cudaStreamEndCapture(s, &g));
  cudaGraphExec_t x = nullptr;
  check(cudaGraphInstantiate(&x, g, 0));
  for (int k = 0; k < 3; ++k) check(cudaGraphLaunch(x, s));
  check(cudaStreamSynchronize(s));
  std::vector<float> h(4);
  check(cudaMemcpy(h.data(), d, 4 * sizeof(float), cudaMemcpyDeviceToHost));
  for (float v : h) EXPECT_EQ(v, 3.0f) << "captured, not run; three replays";

  check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  float* more = nullptr;
  EXPECT_EQ(cudaMalloc(&more, 16), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaErrorStreamCaptureUnsupported);
  cudaGraph_t broken = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s, &broken), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(broken, nullptr);
  (void)cudaGetLastError();
  cudaGraphExecDestroy(x);
  cudaGraphDestroy(g);
  cudaFree(d);
  cudaStreamDestroy(s);
}

// Cross-stream waits inside a capture are not emulated: refused with an error that has
// CUDA's name (cudaGetErrorName knows every error the emulator returns), and the capture
// is invalidated.
TEST(Emulator, AnEventWaitInsideACaptureIsRefusedByName) {
  const TwoStreams t;
  check(cudaEventRecord(t.e, t.a));
  check(cudaStreamBeginCapture(t.b, cudaStreamCaptureModeThreadLocal));
  const cudaError_t err = cudaStreamWaitEvent(t.b, t.e, 0);
  EXPECT_STREQ(cudaGetErrorName(err), "cudaErrorStreamCaptureIsolation");
  cudaGraph_t g = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(t.b, &g), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(g, nullptr);
  (void)cudaGetLastError();
}

// cuBLAS hazards only a GPU shows otherwise: a handle in TF32 mode rounds the operands to
// 10 mantissa bits (the default math mode is plain FP32), and cublasSetStream drops the
// workspace cublasSetWorkspace gave, so a product captured after it would allocate inside
// the graph: the emulator refuses that capture.
TEST(Emulator, CublasTf32ModeRoundsAndCaptureNeedsAUserWorkspace) {
  const int m = 8, n = 8, k = 64;
  std::vector<float> a(static_cast<std::size_t>(m) * k), b(static_cast<std::size_t>(k) * n);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = 1.0f + static_cast<float>(i % 97) * 1.1e-4f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = 1.0f - static_cast<float>(i % 89) * 1.3e-4f;
  float *da = nullptr, *db = nullptr, *dc = nullptr, *ws = nullptr;
  check(cudaMalloc(&da, a.size() * sizeof(float)));
  check(cudaMalloc(&db, b.size() * sizeof(float)));
  check(cudaMalloc(&dc, static_cast<std::size_t>(m) * n * sizeof(float)));
  check(cudaMalloc(&ws, 1 << 20));
  check(cudaMemcpy(da, a.data(), a.size() * sizeof(float), cudaMemcpyHostToDevice));
  check(cudaMemcpy(db, b.data(), b.size() * sizeof(float), cudaMemcpyHostToDevice));
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const float one = 1.0f, zero = 0.0f;
  auto product = [&](cublasMath_t mode) {
    EXPECT_EQ(cublasSetMathMode(h, mode), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da, m, db, k, &zero, dc, m),
              CUBLAS_STATUS_SUCCESS);
    std::vector<float> c(static_cast<std::size_t>(m) * n);
    check(cudaDeviceSynchronize());
    check(cudaMemcpy(c.data(), dc, c.size() * sizeof(float), cudaMemcpyDeviceToHost));
    return c;
  };
  std::vector<float> want(static_cast<std::size_t>(m) * n);
  cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a.data(), m, b.data(), k, 0.0f, want.data(), m);
  const auto fp32 = product(CUBLAS_DEFAULT_MATH);
  const auto tf32 = product(CUBLAS_TF32_TENSOR_OP_MATH);
  double fp32_err = 0, tf32_err = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    fp32_err = std::max(fp32_err, std::fabs(double(fp32[i]) - want[i]) / std::fabs(double(want[i])));
    tf32_err = std::max(tf32_err, std::fabs(double(tf32[i]) - want[i]) / std::fabs(double(want[i])));
  }
  EXPECT_LT(fp32_err, 1e-5) << "the default math mode is FP32";
  EXPECT_GT(tf32_err, 1e-5) << "TF32 mode must round the operands (10-bit mantissas)";
  ASSERT_EQ(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), CUBLAS_STATUS_SUCCESS);

  // Workspace, then stream: the stream call drops the workspace; the capture is refused.
  ASSERT_EQ(cublasSetWorkspace(h, ws, 1 << 20), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasSetStream(h, s), CUBLAS_STATUS_SUCCESS);
  check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  EXPECT_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da, m, db, k, &zero, dc, m),
            CUBLAS_STATUS_NOT_SUPPORTED);
  cudaGraph_t g = nullptr;
  check(cudaStreamEndCapture(s, &g));
  if (g) cudaGraphDestroy(g);
  // Stream, then workspace (as the backend's configure_blas): captured.
  ASSERT_EQ(cublasSetWorkspace(h, ws, 1 << 20), CUBLAS_STATUS_SUCCESS);
  check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  EXPECT_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da, m, db, k, &zero, dc, m),
            CUBLAS_STATUS_SUCCESS);
  g = nullptr;
  check(cudaStreamEndCapture(s, &g));
  EXPECT_NE(g, nullptr);
  if (g) cudaGraphDestroy(g);
  cublasDestroy(h);
  cudaStreamDestroy(s);
  cudaFree(ws);
  cudaFree(dc);
  cudaFree(db);
  cudaFree(da);
}

TEST(Emulator, BadLaunchConfigurationIsReported) {
  add_one_kernel<<<1, 2048>>>(nullptr, 0);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// cuBLAS's sgemm, for each of op(A), op(B) in {N, T} (the layers use NT, TN and NN), against
// OpenBLAS in the CPU path's order and against a double reference. In the .emu_splitk variant
// the product must round differently from OpenBLAS's somewhere (else that variant shows
// nothing) and be as accurate; otherwise it must be OpenBLAS's, bit for bit.
TEST(Emulator, CublasProductsFollowVaeEmuGemm) {
  const int m = 37, n = 29, k = 61;
  const char* mode = std::getenv("VAE_EMU_GEMM");
  const bool split = mode && std::strcmp(mode, "splitk") == 0;
  std::vector<float> a(static_cast<std::size_t>(k) * m), b(static_cast<std::size_t>(k) * n);
  unsigned state = 12345u;
  auto next = [&state] {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(state >> 8) / 16777216.0f - 0.5f;
  };
  for (float& v : a) v = next();
  for (float& v : b) v = next();
  float *da = nullptr, *db = nullptr, *dc = nullptr;
  check(cudaMalloc(&da, a.size() * sizeof(float)));
  check(cudaMalloc(&db, b.size() * sizeof(float)));
  check(cudaMemcpy(da, a.data(), a.size() * sizeof(float), cudaMemcpyHostToDevice));
  check(cudaMemcpy(db, b.data(), b.size() * sizeof(float), cudaMemcpyHostToDevice));
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const float one = 1.0f, zero = 0.0f;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true}) {
      const std::string what = std::string("op(A) ") + (ta ? "T" : "N") + ", op(B) " + (tb ? "T" : "N");
      // a holds op(A) (m x k) column-major as A (m x k, lda m) or as A^T stored (k x m, lda k);
      // likewise b holds op(B) (k x n) as B (k x n, ldb k) or B^T stored (n x k, ldb n).
      const int lda = ta ? k : m, ldb = tb ? n : k;
      auto opa = [&](int i, int p) { return ta ? a[static_cast<std::size_t>(i) * k + p] : a[static_cast<std::size_t>(p) * m + i]; };
      auto opb = [&](int p, int j) { return tb ? b[static_cast<std::size_t>(p) * n + j] : b[static_cast<std::size_t>(j) * k + p]; };
      std::vector<float> want(static_cast<std::size_t>(m) * n, 0.0f), got(want.size());
      cblas_sgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
                  a.data(), lda, b.data(), ldb, 0.0f, want.data(), m);
      check(cudaMalloc(&dc, got.size() * sizeof(float)));  // fresh memory reads as NaN: beta 0 must not read it
      ASSERT_EQ(cublasSgemm(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &one, da, lda,
                            db, ldb, &zero, dc, m),
                CUBLAS_STATUS_SUCCESS);
      check(cudaDeviceSynchronize());
      check(cudaMemcpy(got.data(), dc, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
      cudaFree(dc);

      int differ = 0;
      double err = 0, norm = 0, err_openblas = 0;
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
          double ref = 0;
          for (int p = 0; p < k; ++p) ref += double(opa(i, p)) * double(opb(p, j));
          const std::size_t e = static_cast<std::size_t>(j) * m + i;
          ASSERT_FALSE(std::isnan(got[e])) << "element (" << i << ", " << j << "), " << what;
          differ += got[e] != want[e];
          err = std::max(err, std::fabs(got[e] - ref));
          err_openblas = std::max(err_openblas, std::fabs(want[e] - ref));
          norm = std::max(norm, std::fabs(ref));
        }
      EXPECT_LE(err_openblas, 1e-5 * norm) << "the reference's indexing, " << what;
      EXPECT_LE(err, 1e-5 * norm) << what;
      if (split) {
        EXPECT_GT(differ, 0) << "split-K rounded every element as OpenBLAS does, " << what;
        EXPECT_LE(err, 4 * err_openblas + 1e-7 * norm) << "split-K is much less accurate than OpenBLAS, " << what;
      } else {
        EXPECT_EQ(differ, 0) << "the default order is OpenBLAS's own, " << what;
      }
    }
  cublasDestroy(h);
  cudaFree(da);
  cudaFree(db);
}

// A Philox device generator on a stream of its own, and device memory for n floats.
struct PhiloxOnAStream {
  static constexpr std::size_t n = 64;
  cudaStream_t s = nullptr;
  float* d = nullptr;
  curandGenerator_t g = nullptr;
  PhiloxOnAStream() {
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    check(cudaMalloc(&d, n * sizeof(float)));
    EXPECT_EQ(curandCreateGenerator(&g, CURAND_RNG_PSEUDO_PHILOX4_32_10), CURAND_STATUS_SUCCESS);
    EXPECT_EQ(curandSetStream(g, s), CURAND_STATUS_SUCCESS);
  }
  ~PhiloxOnAStream() {
    if (g) curandDestroyGenerator(g);
    cudaFree(d);
    cudaStreamDestroy(s);
  }
  // What the device memory holds once the stream has run.
  std::vector<float> drawn() {
    check(cudaStreamSynchronize(s));
    std::vector<float> out(n);
    check(cudaMemcpy(out.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost));
    return out;
  }
};

// A device generator's call takes the seed and offset set before it was enqueued, not those
// set before it runs: here the second seed comes after the call, and before the host waits.
TEST(Emulator, CurandUsesTheSeedSetBeforeTheCall) {
  PhiloxOnAStream p;
  ASSERT_EQ(curandSetPseudoRandomGeneratorSeed(p.g, 1), CURAND_STATUS_SUCCESS);
  ASSERT_EQ(curandSetGeneratorOffset(p.g, 8), CURAND_STATUS_SUCCESS);
  ASSERT_EQ(curandGenerateUniform(p.g, p.d, p.n), CURAND_STATUS_SUCCESS);
  ASSERT_EQ(curandSetPseudoRandomGeneratorSeed(p.g, 2), CURAND_STATUS_SUCCESS);
  ASSERT_EQ(curandSetGeneratorOffset(p.g, 0), CURAND_STATUS_SUCCESS);
  EXPECT_EQ(p.drawn(), host_philox_uniform(1, 8, p.n)) << "seed 1, offset 8: the settings before the call";
}

// CUDA lets a program destroy an event whose record has not run yet; so does the emulator
// (the record's op once wrote into the freed event: AddressSanitizer, in emu-sanitize,
// reports that).
TEST(Emulator, AnEventDestroyedBeforeItsRecordRunsIsHarmless) {
  cudaStream_t s = nullptr;
  cudaEvent_t e = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  check(cudaEventCreate(&e));
  check(cudaEventRecord(e, s));
  check(cudaEventDestroy(e));
  check(cudaStreamSynchronize(s));
  cudaStreamDestroy(s);
}

// Likewise a cuRAND generator destroyed with generate calls still queued: they draw their
// numbers, not those of a generator created after it (which may reuse its memory).
TEST(Emulator, ACurandGeneratorDestroyedWithCallsQueuedStillDraws) {
  PhiloxOnAStream p;
  ASSERT_EQ(curandSetPseudoRandomGeneratorSeed(p.g, 3), CURAND_STATUS_SUCCESS);
  ASSERT_EQ(curandGenerateUniform(p.g, p.d, p.n), CURAND_STATUS_SUCCESS);
  ASSERT_EQ(curandDestroyGenerator(p.g), CURAND_STATUS_SUCCESS);
  p.g = nullptr;
  curandGenerator_t later = nullptr;
  ASSERT_EQ(curandCreateGenerator(&later, CURAND_RNG_PSEUDO_PHILOX4_32_10), CURAND_STATUS_SUCCESS);
  ASSERT_EQ(curandSetPseudoRandomGeneratorSeed(later, 4), CURAND_STATUS_SUCCESS);
  EXPECT_EQ(p.drawn(), host_philox_uniform(3, 0, p.n));
  curandDestroyGenerator(later);
}

TEST(EmulatorDeathTest, ADivergentBarrierAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        divergent_barrier_kernel<<<1, 32>>>();
        (void)cudaDeviceSynchronize();
      },
      "divergent_barrier_kernel.*deadlock");
}

}  // namespace

// cuRAND's own calls, not the emulated device generator's that the prelude maps them to.
#undef curandSetPseudoRandomGeneratorSeed
#undef curandSetGeneratorOffset
#undef curandGenerateUniform
#undef curandDestroyGenerator

namespace {
std::vector<float> host_philox_uniform(unsigned long long seed, unsigned long long offset, std::size_t n) {
  std::vector<float> out(n);
  curandGenerator_t h = nullptr;
  EXPECT_EQ(curandCreateGeneratorHost(&h, CURAND_RNG_PSEUDO_PHILOX4_32_10), CURAND_STATUS_SUCCESS);
  EXPECT_EQ(curandSetPseudoRandomGeneratorSeed(h, seed), CURAND_STATUS_SUCCESS);
  EXPECT_EQ(curandSetGeneratorOffset(h, offset), CURAND_STATUS_SUCCESS);
  EXPECT_EQ(curandGenerateUniform(h, out.data(), n), CURAND_STATUS_SUCCESS);
  curandDestroyGenerator(h);
  return out;
}
}  // namespace
