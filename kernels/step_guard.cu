// The step guard kernel and its launcher (see step_guard.cuh): a grid-stride scan of the
// gradients for the lowest non-finite index (integer atomicMin: the result does not depend
// on the order), then the last block decides the step.
#include <algorithm>

#include "column_sum.cuh"
#include "cuda_check.cuh"
#include "step_guard.cuh"
#include "vae/error.h"

namespace vae::gpu {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ unsigned long long first_bad(const float4 v, std::size_t i4, unsigned long long cur) {
  const unsigned long long base = 4ull * i4;
  if (!isfinite(v.x)) return min(cur, base);
  if (!isfinite(v.y)) return min(cur, base + 1);
  if (!isfinite(v.z)) return min(cur, base + 2);
  if (!isfinite(v.w)) return min(cur, base + 3);
  return cur;
}

__global__ void __launch_bounds__(kThreads)
    step_guard_kernel(const float4* __restrict__ g, std::size_t n4, const StepHeader* __restrict__ hdr,
                      DeviceStepState* __restrict__ st, DeviceLossSums* __restrict__ acc, int stop_on_bad) {
  __shared__ unsigned long long block_min[kThreads / 32];
  unsigned long long local = kNoBadIndex;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(kThreads) + threadIdx.x; i < n4;
       i += static_cast<std::size_t>(gridDim.x) * kThreads)
    local = first_bad(g[i], i, local);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) local = min(local, __shfl_xor_sync(0xffffffffu, local, o));
  if ((threadIdx.x & 31) == 0) block_min[threadIdx.x >> 5] = local;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long m = block_min[0];
    for (int w = 1; w < kThreads / 32; ++w) m = min(m, block_min[w]);
    if (m != kNoBadIndex) atomicMin(&st->min_bad, m);
  }
  if (!last_block_ticket(&st->ticket, gridDim.x)) return;
  if (threadIdx.x != 0) return;
  const unsigned long long bad_index = atomicExch(&st->min_bad, kNoBadIndex);  // read and reset
  const DeviceLossSums s = st->step;
  const bool bad_loss = !isfinite(s.loss);
  if (st->halted) {
    st->bad = 1;
  } else if (bad_loss || bad_index != kNoBadIndex) {
    st->bad = 1;
    if (st->bad_steps == 0) {
      st->first_bad_step = hdr->step;
      st->first_bad_index = bad_loss ? -1 : static_cast<std::int64_t>(bad_index);
    }
    st->bad_steps += 1;
    if (stop_on_bad) st->halted = 1;
  } else {
    st->bad = 0;
    acc->loss += s.loss;
    acc->recon += s.recon;
    acc->kl += s.kl;
    acc->count += s.count;
    if (hdr->update_encoder) st->updates[0] += 1;
    if (hdr->update_decoder) st->updates[1] += 1;
  }
}

}  // namespace

void step_guard(const float* grads, std::size_t n, const StepHeader* hdr, DeviceStepState* state,
                DeviceLossSums* acc, bool stop_on_bad, cudaStream_t stream) {
  if (n == 0 || n % 4 != 0) throw_error("step_guard: n must be a positive multiple of 4, got ", n);
  if (!grads || !hdr || !state || !acc) throw_error("step_guard: null device pointer");
  if (reinterpret_cast<std::uintptr_t>(grads) % 16 != 0) throw_error("step_guard: grads must be 16-byte aligned");
  const std::size_t n4 = n / 4;
  const int blocks = static_cast<int>(std::min<std::size_t>((n4 + kThreads - 1) / kThreads, 1024));
  step_guard_kernel<<<blocks, kThreads, 0, stream>>>(reinterpret_cast<const float4*>(grads), n4, hdr, state, acc,
                                                     stop_on_bad ? 1 : 0);
  VAE_LAUNCH_CHECK("step_guard_kernel");
}

}  // namespace vae::gpu
