// The unfused baselines of bench/gpu_kernels.cu: one kernel per operation, as a framework
// without fusion runs the sequences our fused kernels replace (bias add, activation,
// multiply, column and row sums, the Bernoulli pieces, the latent pieces, one optimizer
// launch per tensor), and the spin kernel that keeps the GPU busy between timed repeats.
// Kernels only: the launches stay in gpu_kernels.cu (the CPU emulator rewrites launches in
// that file alone).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "elementwise.h"
#include "vae/config.h"

namespace vae::bench {

__global__ void spin_kernel(unsigned long long ns) {
#if defined(VAE_CUDA_EMU)
  (void)ns;  // the CPU emulator (tests/emu) runs this program for its checks, not its times
#else
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
#endif
}

// y[r, c] += b[c]
__global__ void add_bias_kernel(float* y, const float* b, int rows, int cols) {
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    y[i] += b[i % static_cast<std::size_t>(cols)];
}
__global__ void relu_kernel(float* y, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    y[i] = ew::act_forward<Activation::relu>(y[i]);
}
__global__ void mul_relu_grad_kernel(float* dy, const float* y, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    dy[i] *= ew::act_grad_from_output<Activation::relu>(y[i]);
}
// Column sums in two launches: partial[chunk][c] over 64-row chunks, then the chunks in order.
constexpr int kPartialRows = 64;
__global__ void column_partial_kernel(const float* m, int rows, int cols, float* partial) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  const int chunk = blockIdx.y;
  if (c >= cols) return;
  float s = 0.0f;
  const int r1 = min(rows, (chunk + 1) * kPartialRows);
  for (int r = chunk * kPartialRows; r < r1; ++r) s += m[static_cast<std::size_t>(r) * cols + c];
  partial[static_cast<std::size_t>(chunk) * cols + c] = s;
}
__global__ void column_finish_kernel(const float* partial, int chunks, int cols, float* out) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float s = 0.0f;
  for (int k = 0; k < chunks; ++k) s += partial[static_cast<std::size_t>(k) * cols + c];
  out[c] = s;
}
// Row sums: one warp per row.
__global__ void row_sum_kernel(const float* m, int rows, int cols, float* out) {
  const int r = blockIdx.x * (blockDim.x / 32) + static_cast<int>(threadIdx.x / 32);
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;
  float s = 0.0f;
  for (int c = lane; c < cols; c += 32) s += m[static_cast<std::size_t>(r) * cols + c];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) out[r] = s;
}
// Bernoulli pieces: log p terms, sigmoid, gradient.
__global__ void bernoulli_logprob_kernel(const float* x, const float* o, std::size_t n, float* lp) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float v = o[i];
    lp[i] = x[i] * v - ((v > 0.0f ? v : 0.0f) + log1pf(expf(-fabsf(v))));
  }
}
__global__ void sigmoid_kernel(const float* o, std::size_t n, float* s) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    s[i] = 1.0f / (1.0f + expf(-o[i]));
}
__global__ void bernoulli_grad_kernel(const float* s, const float* x, std::size_t n, float scale, float* g) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    g[i] = (s[i] - x[i]) * scale;
}
// Latent pieces, (n, Z) with head (n, 2Z).
__global__ void reparam_kernel(const float* head, const float* eps, int n, int Z, float* z) {
  const std::size_t total = static_cast<std::size_t>(n) * Z;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t b = i / Z, j = i % Z;
    z[i] = ew::reparameterize(head[b * 2 * Z + j], head[b * 2 * Z + Z + j], eps[i]);
  }
}
__global__ void kl_terms_kernel(const float* head, int n, int Z, float* terms) {
  const std::size_t total = static_cast<std::size_t>(n) * Z;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t b = i / Z, j = i % Z;
    terms[i] = ew::kl_term(head[b * 2 * Z + j], head[b * 2 * Z + Z + j]);
  }
}
__global__ void latent_dmu_kernel(const float* head, const float* dz, int n, int Z, float beta_scale, float* dhead) {
  const std::size_t total = static_cast<std::size_t>(n) * Z;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t b = i / Z, j = i % Z;
    dhead[b * 2 * Z + j] = ew::latent_dmu(head[b * 2 * Z + j], dz[i], beta_scale);
  }
}
__global__ void latent_ds_kernel(const float* head, const float* dz, const float* eps, int n, int Z, float beta_scale,
                                 float* dhead) {
  const std::size_t total = static_cast<std::size_t>(n) * Z;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t b = i / Z, j = i % Z;
    dhead[b * 2 * Z + Z + j] = ew::latent_ds(head[b * 2 * Z + Z + j], dz[i] * eps[i], beta_scale);
  }
}
// One tensor's optimizer update with host-computed scalars (a per-tensor launch).
__global__ void optimizer_tensor_kernel(float* p, const float* g, float* s1, float* s2, std::size_t n,
                                        ew::OptimizerScalars s) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    ew::optimizer_update(p[i], s1[i], s2[i], g[i], s);
}

}  // namespace vae::bench
