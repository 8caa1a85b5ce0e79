// The step records' way to the device: a ring of pinned host slots, each holding one record
// [StepHeader | indices] (step_record.cuh), and the one device record the kernels (and the
// captured step graphs) read. send() writes the next slot and copies it with one
// cudaMemcpyAsync on the stream; a slot is written again only after its copy has run (an
// event per slot), so the host waits only when it is `slots` records ahead of the GPU.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda_handles.cuh"
#include "device_memory.cuh"
#include "step_record.cuh"

namespace vae::gpu {

class RecordRing {
 public:
  // Records of up to max_batch indices; the device record starts zeroed (on `stream`).
  RecordRing(int max_batch, int slots, cudaStream_t stream);

  // The record h with h.n indices (null: the identity 0..h.n-1) into the next slot, then
  // copied to the device record.
  void send(const StepHeader& h, const std::uint32_t* indices);

  StepHeader* header() const { return reinterpret_cast<StepHeader*>(device_.get()); }  // device
  const std::uint32_t* indices() const { return record_indices(device_.get()); }       // device

 private:
  cudaStream_t stream_;
  std::size_t record_bytes_;
  PinnedBuffer<char> slots_;  // slots x record_bytes_
  std::vector<Event> copied_;
  std::vector<bool> used_;
  std::size_t next_ = 0;
  DeviceBuffer<char> device_;  // StepHeader + indices
};

}  // namespace vae::gpu
