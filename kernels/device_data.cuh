// Host datasets onto the device. TrainData: the training set for the steps, resident or
// streamed. upload_rows: a range of items of any set, for evaluation and the estimates.
//
// Resident: the set is uploaded once (uint8 stays uint8) when it fits with headroom; a step's
// record then indexes it. Streamed (it does not fit, or TrainConfig::stream_data): each
// step's rows are gathered on the host into a pinned slot and copied on a copy stream of
// their own into a device slot, `slots` batches in flight; events order each copy after the
// steps that last read its slot and before the step that reads it, so the copy of step t
// overlaps the compute of the steps before it. The record then holds identity indices.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cuda_handles.cuh"
#include "device_memory.cuh"
#include "record_ring.cuh"
#include "vae/batch_stream.h"
#include "vae/data.h"

namespace vae::gpu {

std::size_t row_bytes(const Dataset& d);  // one item's bytes: dim uint8 or floats

class TrainData {
 public:
  // batch: the most items a step takes; compute: the stream the steps run on.
  TrainData(int batch, int slots, double headroom, cudaStream_t compute);
  ~TrainData();  // waits for the copies in flight

  // The set (already checked): resident if it fits and !stream, else streamed. Waits first
  // for the steps in flight, which may still read the old rows.
  void set(std::shared_ptr<const Dataset> data, bool stream);
  const Dataset* data() const { return data_.get(); }
  bool streamed() const { return streamed_; }

  // Where a step's rows are for its record: `rows` (device) and the indices into them (null:
  // identity, the batch's rows staged in stream slot `slot`; resident: the batch's own
  // indices and slot -1). Pass `slot` to step_enqueued once the step is enqueued.
  struct StepRows {
    const void* rows;
    const std::uint32_t* indices;
    int slot;
  };
  StepRows stage(const Batch& batch);
  void step_enqueued(int slot);  // the step's kernels are on the compute stream

 private:
  void allocate_slots(int dim);

  int batch_, slots_;
  double headroom_;
  cudaStream_t compute_;
  Stream copy_;
  std::shared_ptr<const Dataset> data_;
  bool streamed_ = false;
  DeviceBuffer<unsigned char> resident_;          // the whole set
  std::vector<DeviceBuffer<unsigned char>> d_slots_;  // streamed batches, (batch, D) each
  std::vector<PinnedBuffer<unsigned char>> h_slots_;
  std::vector<Event> copy_done_, compute_done_;
  std::vector<bool> slot_copied_, slot_computed_;
  std::size_t next_ = 0;
};

// Items [begin, begin + n) of `data` into x (n, D) on `stream`: copied into the device
// staging buffer `stage` (room for n rows), then converted by gather_rows through the device
// record: header h with the rows filled in here, identity indices.
void upload_rows(const Dataset& data, std::int64_t begin, int n, StepHeader h, unsigned char* stage, float* x,
                 RecordRing& ring, cudaStream_t stream);

}  // namespace vae::gpu
