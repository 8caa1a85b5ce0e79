// The optimizer kernel over the flat parameter buffer, two parameter groups, scalars from
// device memory (see optimizer.cuh).
#include <algorithm>
#include <new>

#include "cuda_check.cuh"
#include "optimizer.cuh"
#include "vae/error.h"

namespace vae::gpu {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ void update4(float4& p, float4& s1, float4& s2, const float4 g,
                                        const ew::OptimizerScalars& s) {
  ew::optimizer_update(p.x, s1.x, s2.x, g.x, s);
  ew::optimizer_update(p.y, s1.y, s2.y, g.y, s);
  ew::optimizer_update(p.z, s1.z, s2.z, g.z, s);
  ew::optimizer_update(p.w, s1.w, s2.w, g.w, s);
}

// Grid-stride over float4s; float4 i belongs to the encoder group when i < enc4. Thread 0
// of each block computes both groups' scalars once (in double, ew::optimizer_scalars).
__global__ void __launch_bounds__(kThreads)
    optimizer_kernel(float4* __restrict__ p, const float4* __restrict__ g, float4* __restrict__ s1,
                     float4* __restrict__ s2, std::size_t n4, std::size_t enc4, const StepHeader* __restrict__ hdr,
                     const std::int64_t* __restrict__ updates, const int* __restrict__ skip, OptimizerConfig cfg) {
  if (skip && *skip) return;  // the same for every block: the step was dropped
  // Raw storage: a __shared__ variable cannot have a constructor (OptimizerScalars has
  // default member initializers); thread 0 assigns both before anyone reads them.
  alignas(ew::OptimizerScalars) __shared__ unsigned char raw[2 * sizeof(ew::OptimizerScalars)];
  __shared__ int update[2];
  ew::OptimizerScalars* scalars = reinterpret_cast<ew::OptimizerScalars*>(raw);
  if (threadIdx.x == 0) {
    update[0] = hdr->update_encoder;
    update[1] = hdr->update_decoder;
    const double lr = hdr->lr;
    for (int grp = 0; grp < 2; ++grp)
      if (update[grp])
        new (&scalars[grp]) ew::OptimizerScalars(ew::optimizer_scalars(cfg, lr, static_cast<long long>(updates[grp])));
  }
  __syncthreads();
  const bool up[2] = {update[0] != 0, update[1] != 0};
  if (!up[0] && !up[1]) return;
  // Start where this step has work: a decoder-only step skips the encoder's float4s.
  const std::size_t first = up[0] ? 0 : enc4, last = up[1] ? n4 : enc4;
  for (std::size_t i = first + blockIdx.x * static_cast<std::size_t>(kThreads) + threadIdx.x; i < last;
       i += static_cast<std::size_t>(gridDim.x) * kThreads) {
    const ew::OptimizerScalars& s = scalars[i < enc4 ? 0 : 1];
    float4 pp = p[i], m1 = s1[i], m2 = s2[i];
    update4(pp, m1, m2, g[i], s);
    p[i] = pp;
    s1[i] = m1;
    s2[i] = m2;
  }
}

__global__ void optimizer_scalars_kernel(const double* lr, const std::int64_t* t, int count, OptimizerConfig cfg,
                                         ew::OptimizerScalars* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) out[i] = ew::optimizer_scalars(cfg, lr[i], static_cast<long long>(t[i]));
}

bool aligned16(const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; }

}  // namespace

void optimizer_step(const OptimizerArgs& a, const OptimizerConfig& cfg, cudaStream_t stream) {
  if (a.n == 0 || a.n % 4 != 0) throw_error("optimizer_step: n must be a positive multiple of 4, got ", a.n);
  if (a.encoder_end % 4 != 0 || a.encoder_end > a.n)
    throw_error("optimizer_step: encoder_end must be a multiple of 4 in [0, ", a.n, "], got ", a.encoder_end);
  if (!a.p || !a.g || !a.s1 || !a.s2 || !a.hdr || !a.updates) throw_error("optimizer_step: null device pointer");
  if (!aligned16(a.p) || !aligned16(a.g) || !aligned16(a.s1) || !aligned16(a.s2))
    throw_error("optimizer_step: params, grads and both state slots must be 16-byte aligned");
  const std::size_t n4 = a.n / 4;
  const int blocks = static_cast<int>(std::min<std::size_t>((n4 + kThreads - 1) / kThreads, 2048));
  optimizer_kernel<<<blocks, kThreads, 0, stream>>>(
      reinterpret_cast<float4*>(a.p), reinterpret_cast<const float4*>(a.g), reinterpret_cast<float4*>(a.s1),
      reinterpret_cast<float4*>(a.s2), n4, a.encoder_end / 4, a.hdr, a.updates, a.skip, cfg);
  VAE_LAUNCH_CHECK("optimizer_kernel");
}

void optimizer_scalars_on_device(const double* lr, const std::int64_t* t, int count, const OptimizerConfig& cfg,
                                 ew::OptimizerScalars* out, cudaStream_t stream) {
  if (count <= 0) return;
  if (!lr || !t || !out) throw_error("optimizer_scalars_on_device: null device pointer");
  const int threads = 128;
  optimizer_scalars_kernel<<<(count + threads - 1) / threads, threads, 0, stream>>>(lr, t, count, cfg, out);
  VAE_LAUNCH_CHECK("optimizer_scalars_kernel");
}

}  // namespace vae::gpu
