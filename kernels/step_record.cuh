// The per-step record: the only thing the host writes for a training step. It lives in a
// pinned host ring slot, is copied to one device buffer by one cudaMemcpyAsync, and the
// captured graph's kernels read from it everything that changes from step to step: the
// step number, where the step's noise is inside the current noise blocks, which rows to
// gather, and the step's scalars from vae::step_scalars() (learning rate, KL weight beta,
// which parameter groups to update). Nothing that varies per step is baked into a graph,
// so one graph serves every step of a batch size under any schedule. (The optimizer's
// update counts live in the device step state, step_guard.cuh: only finite steps count.)
//
//   [ StepHeader (64 bytes) | indices (n uint32) ]
#pragma once
#include <cstddef>
#include <cstdint>

namespace vae::gpu {

struct StepHeader {
  std::int64_t step = 0;        // global step (Batch::step); eval: batch number k
  std::int64_t eps_offset = 0;  // floats from the start of the eps (or eval) noise block
  std::int64_t bin_offset = 0;  // floats from the start of the binarization noise block
  std::uint64_t rows = 0;       // device address of the rows the indices point into
  std::int32_t rows_u8 = 1;     // 1: rows are uint8 pixels (x/255); 0: float32
  std::int32_t n = 0;           // data points in this step
  double lr = 0;                // StepScalars::lr: this step's learning rate
  double beta = 1;              // StepScalars::beta: the KL weight (warm-up); evaluation: ModelConfig::beta
  std::int32_t update_encoder = 1;  // StepScalars::update_encoder: update the encoder group [0, encoder_end)
  std::int32_t update_decoder = 1;  // StepScalars::update_decoder: update the decoder group
};
static_assert(sizeof(StepHeader) == 64, "StepHeader is 64 bytes: the indices start 16-byte aligned");

// Bytes of a record with room for `max_batch` indices, rounded up to 256.
inline std::size_t step_record_bytes(int max_batch) {
  const std::size_t b = sizeof(StepHeader) + sizeof(std::uint32_t) * static_cast<std::size_t>(max_batch);
  return (b + 255) / 256 * 256;
}
inline std::uint32_t* record_indices(void* record) {
  return reinterpret_cast<std::uint32_t*>(static_cast<char*>(record) + sizeof(StepHeader));
}
inline const std::uint32_t* record_indices(const void* record) {
  return reinterpret_cast<const std::uint32_t*>(static_cast<const char*>(record) + sizeof(StepHeader));
}

}  // namespace vae::gpu
