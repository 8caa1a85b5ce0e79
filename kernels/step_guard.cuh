// The step guard: after a training step's forward and backward, one launch checks the
// step's loss and every gradient for non-finite values. A finite step adds its loss sums to
// the running sums and advances the update count of each parameter group the step record
// says to update (the optimizer's t, per group, as the CPU path counts them); a non-finite
// one is dropped (the optimizer reads `bad` and changes nothing), counted, and remembered
// (the step, and "loss" or the first gradient element that is not finite); with
// NanPolicy::stop it halts the backend: every later step is dropped until the host reads
// the state (health()) and stops. All of it stays on the device: no host sync per step, as
// the CPU backend's check does on the host.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "loss_sums.cuh"
#include "step_record.cuh"

namespace vae::gpu {

constexpr std::uint64_t kNoBadIndex = ~std::uint64_t(0);

// Device-resident, persistent across steps (one per backend).
struct DeviceStepState {
  DeviceLossSums step;                 // this step's sums (loss_accumulate writes them)
  std::int64_t updates[2] = {0, 0};    // updates of the encoder, decoder group so far (this step's included)
  std::int64_t bad_steps = 0;          // dropped steps (halted steps not counted)
  std::int64_t first_bad_step = -1;    // global step of the first dropped step
  std::int64_t first_bad_index = -2;   // -1: the loss; >= 0: flat index of a non-finite gradient
  unsigned long long min_bad = kNoBadIndex;  // scratch: lowest non-finite gradient index this step
  unsigned ticket = 0;                 // scratch: blocks done this step
  int bad = 0;                         // this step is dropped (the optimizer skips)
  int halted = 0;                      // NanPolicy::stop after a dropped step: drop everything
};

// grads: the flat gradient buffer, n floats (a multiple of 4, 16-byte aligned). acc: the
// running training sums. hdr: the step record (its step number is remembered; its update
// flags pick the groups whose update counts advance).
void step_guard(const float* grads, std::size_t n, const StepHeader* hdr, DeviceStepState* state,
                DeviceLossSums* acc, bool stop_on_bad, cudaStream_t stream);

}  // namespace vae::gpu
