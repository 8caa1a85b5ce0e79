// Device noise in blocks of steps: cuRAND's device Philox4x32-10 generator with the same
// seed and offsets as the CPU path's host generator (host/rng.h): step t's slice of `stride`
// values sits at offset t*stride of the stream. A block holds many steps and is refilled
// (curandSetGeneratorOffset + curandGenerate*) on the compute stream, outside any graph,
// when a step falls outside it; the step's slice offset inside the block goes into the step
// record, from which the graph's kernels read it. cuRAND calls are never captured: a
// captured host-API call would replay the same offset at every launch.
#pragma once
#include <cuda_runtime_api.h>
#include <curand.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda_handles.cuh"
#include "device_memory.cuh"

namespace vae::gpu {

class NoiseBlock {
 public:
  enum class Kind { normal, uniform };
  // stride: values per step (even, > 0); the block holds max(1, max_values / stride) steps.
  NoiseBlock(std::uint64_t seed, Kind kind, std::size_t stride, std::size_t max_values, cudaStream_t stream,
             const std::string& what);

  // Makes step t's slice resident (refilling the block on the stream if t is outside it)
  // and returns its offset in floats from data().
  std::int64_t prepare(std::int64_t t);
  const float* data() const { return block_.get(); }
  std::size_t stride() const { return stride_; }
  std::int64_t steps_per_block() const { return steps_per_block_; }
  std::int64_t refills() const { return refills_; }  // blocks drawn so far

 private:
  PhiloxGenerator gen_;
  Kind kind_;
  std::size_t stride_;
  std::int64_t steps_per_block_;
  std::int64_t first_ = -1;  // first step in the block; -1 while empty
  std::int64_t refills_ = 0;
  DeviceBuffer<float> block_;
};

}  // namespace vae::gpu
