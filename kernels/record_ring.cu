// RecordRing: pinned slots, their events and the device record (record_ring.cuh).
#include <cstring>

#include "cuda_check.cuh"
#include "record_ring.cuh"

namespace vae::gpu {

RecordRing::RecordRing(int max_batch, int slots, cudaStream_t stream)
    : stream_(stream),
      record_bytes_(step_record_bytes(max_batch)),
      slots_(record_bytes_ * static_cast<std::size_t>(slots), "the step-record ring"),
      copied_(static_cast<std::size_t>(slots)),
      used_(static_cast<std::size_t>(slots), false),
      device_(record_bytes_, "the device step record") {
  VAE_CUDA_CHECK(cudaMemsetAsync(device_.get(), 0, device_.bytes(), stream_));
}

void RecordRing::send(const StepHeader& h, const std::uint32_t* indices) {
  const std::size_t s = next_;
  next_ = (next_ + 1) % copied_.size();
  if (used_[s]) VAE_CUDA_CHECK(cudaEventSynchronize(copied_[s].get()));  // the GPU is `slots` records behind
  char* slot = slots_.get() + s * record_bytes_;
  std::memcpy(slot, &h, sizeof(StepHeader));
  std::uint32_t* idx = record_indices(slot);
  if (indices) std::memcpy(idx, indices, static_cast<std::size_t>(h.n) * sizeof(std::uint32_t));
  else
    for (int i = 0; i < h.n; ++i) idx[i] = static_cast<std::uint32_t>(i);
  const std::size_t bytes = sizeof(StepHeader) + static_cast<std::size_t>(h.n) * sizeof(std::uint32_t);
  VAE_CUDA_CHECK(cudaMemcpyAsync(device_.get(), slot, bytes, cudaMemcpyHostToDevice, stream_));
  VAE_CUDA_CHECK(cudaEventRecord(copied_[s].get(), stream_));
  used_[s] = true;
}

}  // namespace vae::gpu
