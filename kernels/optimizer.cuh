// The optimizer (adam, adamw, sgd with momentum, rmsprop: ew::optimizer_update, PyTorch's
// forms) in one launch over the whole flat parameter buffer: params, grads and the two
// state slots, each layout.total() floats. The buffer has two parameter groups, the
// encoder [0, encoder_end) and the decoder [encoder_end, n); each element picks its group
// by index. Each group has its own update count (the t of Adam's and AdamW's bias
// corrections), read from device memory (the step state the step guard keeps); the learning
// rate and which groups this step updates are read from the step record. The scalars are
// computed on the device in double by ew::optimizer_scalars, the function the CPU path
// calls, so a captured graph needs no host work and no sync per step, whatever the schedule.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "elementwise.h"
#include "step_record.cuh"
#include "vae/config.h"

namespace vae::gpu {

struct OptimizerArgs {
  float* p = nullptr;         // (n) parameters
  const float* g = nullptr;   // (n) gradients
  float* s1 = nullptr;        // (n) first state slot (adam m, sgd momentum)
  float* s2 = nullptr;        // (n) second state slot (adam v, rmsprop square average)
  std::size_t n = 0;          // a multiple of 4; every pointer 16-byte aligned
  std::size_t encoder_end = 0;  // the group split, a multiple of 4 (layout.encoder_end())
  const StepHeader* hdr = nullptr;       // lr, update_encoder, update_decoder
  const std::int64_t* updates = nullptr;  // [2]: updates of the encoder and the decoder group, this one included
  const int* skip = nullptr;  // nullable: when non-zero (a dropped step) the launch changes nothing
};

void optimizer_step(const OptimizerArgs& a, const OptimizerConfig& cfg, cudaStream_t stream);

// For tests: the device's scalars for (lr[i], t[i]), i < count, into out (all device memory).
void optimizer_scalars_on_device(const double* lr, const std::int64_t* t, int count, const OptimizerConfig& cfg,
                                 ew::OptimizerScalars* out, cudaStream_t stream);

}  // namespace vae::gpu
