// Adam (PyTorch's form, ew::adam_update) in one launch over the whole flat parameter
// buffer: params, grads, m and v, each layout.total() floats. Adam's t is read from device
// memory (the step state the step guard keeps), and the bias corrections for step t are computed on the device
// in double exactly as ew::adam_scalars computes them on the host, so a captured graph
// needs no host work and no sync per step.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "vae/config.h"
#include "vae/elementwise.h"

namespace vae::gpu {

// n: floats in each of p, g, m, v (a multiple of 4; the pointers 16-byte aligned).
// t: device pointer to Adam's step number (1-based) for this update. skip (nullable):
// device flag; when non-zero the launch changes nothing (a dropped, non-finite step).
void adam_step(float* p, const float* g, float* m, float* v, std::size_t n, const std::int64_t* t, const int* skip,
               const OptimizerConfig& cfg, cudaStream_t stream);

// For tests: the device's scalars for each t in t_dev (count of them) into out (device).
void adam_scalars_on_device(const std::int64_t* t_dev, int count, const OptimizerConfig& cfg, ew::AdamScalars* out,
                            cudaStream_t stream);

}  // namespace vae::gpu
