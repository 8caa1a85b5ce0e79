// The Adam kernel over the flat parameter buffer, with Adam's scalars computed on the
// device from t in device memory (see adam.cuh).
#include <algorithm>

#include "adam.cuh"
#include "cuda_check.cuh"
#include "vae/error.h"

namespace vae::gpu {
namespace {

// ew::adam_scalars, on the device (same double formula).
__device__ ew::AdamScalars device_adam_scalars(double lr, double beta1, double beta2, double eps, long long t) {
  const double bc1 = 1.0 - pow(beta1, double(t));
  const double bc2 = 1.0 - pow(beta2, double(t));
  return ew::AdamScalars{beta1, beta2, eps, lr / bc1, 1.0 / sqrt(bc2)};
}

// Grid-stride over float4s of the flat buffers; each block computes the scalars once.
__global__ void adam_kernel(float4* __restrict__ p, const float4* __restrict__ g, float4* __restrict__ m,
                            float4* __restrict__ v, std::size_t n4, const std::int64_t* __restrict__ t,
                            const int* __restrict__ skip, double lr, double beta1, double beta2, double eps) {
  if (skip && *skip) return;  // the same for every block
  __shared__ ew::AdamScalars shared;
  if (threadIdx.x == 0) shared = device_adam_scalars(lr, beta1, beta2, eps, static_cast<long long>(*t));
  __syncthreads();
  const ew::AdamScalars s = shared;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n4;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    float4 pp = p[i], mm = m[i], vv = v[i];
    const float4 gg = g[i];
    ew::adam_update(pp.x, mm.x, vv.x, gg.x, s);
    ew::adam_update(pp.y, mm.y, vv.y, gg.y, s);
    ew::adam_update(pp.z, mm.z, vv.z, gg.z, s);
    ew::adam_update(pp.w, mm.w, vv.w, gg.w, s);
    p[i] = pp;
    m[i] = mm;
    v[i] = vv;
  }
}

__global__ void adam_scalars_kernel(const std::int64_t* t, int count, double lr, double beta1, double beta2,
                                    double eps, ew::AdamScalars* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) out[i] = device_adam_scalars(lr, beta1, beta2, eps, static_cast<long long>(t[i]));
}

bool aligned16(const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; }

}  // namespace

void adam_step(float* p, const float* g, float* m, float* v, std::size_t n, const std::int64_t* t, const int* skip,
               const OptimizerConfig& cfg, cudaStream_t stream) {
  if (n == 0 || n % 4 != 0) throw_error("adam_step: n must be a positive multiple of 4, got ", n);
  if (!p || !g || !m || !v || !t) throw_error("adam_step: null device pointer");
  if (!aligned16(p) || !aligned16(g) || !aligned16(m) || !aligned16(v))
    throw_error("adam_step: params, grads, m and v must be 16-byte aligned");
  const std::size_t n4 = n / 4;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<std::size_t>((n4 + threads - 1) / threads, 2048));
  adam_kernel<<<blocks, threads, 0, stream>>>(reinterpret_cast<float4*>(p), reinterpret_cast<const float4*>(g),
                                              reinterpret_cast<float4*>(m), reinterpret_cast<float4*>(v), n4, t,
                                              skip, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps);
  VAE_LAUNCH_CHECK("adam_kernel");
}

void adam_scalars_on_device(const std::int64_t* t_dev, int count, const OptimizerConfig& cfg, ew::AdamScalars* out,
                            cudaStream_t stream) {
  if (count <= 0) return;
  const int threads = 128;
  adam_scalars_kernel<<<(count + threads - 1) / threads, threads, 0, stream>>>(t_dev, count, cfg.lr, cfg.beta1,
                                                                                cfg.beta2, cfg.eps, out);
  VAE_LAUNCH_CHECK("adam_scalars_kernel");
}

}  // namespace vae::gpu
