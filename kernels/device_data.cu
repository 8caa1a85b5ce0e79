// The training set on the device, resident or streamed, and uploads of item ranges
// (device_data.cuh).
#include <algorithm>
#include <cstring>

#include "cuda_check.cuh"
#include "device_data.cuh"
#include "gather.cuh"

namespace vae::gpu {
namespace {
const unsigned char* bytes_of(const Dataset& d) {
  return d.is_u8() ? static_cast<const unsigned char*>(d.u8_values()) : reinterpret_cast<const unsigned char*>(d.f32_values());
}
}  // namespace

std::size_t row_bytes(const Dataset& d) {
  return static_cast<std::size_t>(d.dim) * (d.is_u8() ? sizeof(std::uint8_t) : sizeof(float));
}

TrainData::TrainData(int batch, int slots, double headroom, cudaStream_t compute)
    : batch_(batch), slots_(slots), headroom_(headroom), compute_(compute) {}

TrainData::~TrainData() { VAE_CUDA_WARN(cudaStreamSynchronize(copy_.get())); }

void TrainData::set(std::shared_ptr<const Dataset> data, bool stream) {
  // Steps in flight may still read the old rows.
  VAE_CUDA_CHECK(cudaStreamSynchronize(copy_.get()));
  VAE_CUDA_CHECK(cudaStreamSynchronize(compute_));
  data_.reset();
  resident_ = DeviceBuffer<unsigned char>();
  const std::size_t bytes = static_cast<std::size_t>(data->count) * row_bytes(*data);
  std::size_t free_bytes = 0, total_bytes = 0;
  VAE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const std::size_t headroom =
      std::max<std::size_t>(std::size_t(1) << 30, static_cast<std::size_t>(headroom_ * double(total_bytes)));
  streamed_ = stream || bytes + headroom > free_bytes;
  if (!streamed_) {
    resident_ = DeviceBuffer<unsigned char>(bytes, "the training set '" + data->source + "'");
    if (bytes) VAE_CUDA_CHECK(cudaMemcpyAsync(resident_.get(), bytes_of(*data), bytes, cudaMemcpyHostToDevice, compute_));
    VAE_CUDA_CHECK(cudaStreamSynchronize(compute_));
    data->note_read(bytes);  // a mapped file, now on the GPU: its pages may go
  } else {
    allocate_slots(data->dim);
  }
  data_ = std::move(data);
}

void TrainData::allocate_slots(int dim) {
  if (!d_slots_.empty()) return;
  const std::size_t bytes = static_cast<std::size_t>(batch_) * static_cast<std::size_t>(dim) * 4;
  const std::size_t k = static_cast<std::size_t>(slots_);
  for (std::size_t i = 0; i < k; ++i) {
    d_slots_.emplace_back(bytes, "a streamed batch (device)");
    h_slots_.emplace_back(bytes, "a streamed batch (pinned host)");
  }
  copy_done_ = std::vector<Event>(k);
  compute_done_ = std::vector<Event>(k);
  slot_copied_.assign(k, false);
  slot_computed_.assign(k, false);
}

// Streamed: the batch's rows gathered on the host into the next pinned slot and copied on the
// copy stream into the matching device slot; the compute stream waits for that copy.
TrainData::StepRows TrainData::stage(const Batch& batch) {
  if (!streamed_) return {resident_.get(), batch.indices, -1};
  const std::size_t s = next_;
  next_ = (next_ + 1) % d_slots_.size();
  if (slot_copied_[s]) VAE_CUDA_CHECK(cudaEventSynchronize(copy_done_[s].get()));  // pinned slot free
  const std::size_t rb = row_bytes(*data_);
  unsigned char* dst = h_slots_[s].get();
  data_->read_rows(batch.indices, batch.size, dst);  // a mapped file's with pread
  if (slot_computed_[s]) VAE_CUDA_CHECK(cudaStreamWaitEvent(copy_.get(), compute_done_[s].get(), 0));  // device slot free
  VAE_CUDA_CHECK(cudaMemcpyAsync(d_slots_[s].get(), dst, static_cast<std::size_t>(batch.size) * rb,
                                 cudaMemcpyHostToDevice, copy_.get()));
  VAE_CUDA_CHECK(cudaEventRecord(copy_done_[s].get(), copy_.get()));
  slot_copied_[s] = true;
  VAE_CUDA_CHECK(cudaStreamWaitEvent(compute_, copy_done_[s].get(), 0));
  return {d_slots_[s].get(), nullptr, static_cast<int>(s)};
}

void TrainData::step_enqueued(int slot) {
  if (slot < 0) return;
  VAE_CUDA_CHECK(cudaEventRecord(compute_done_[static_cast<std::size_t>(slot)].get(), compute_));
  slot_computed_[static_cast<std::size_t>(slot)] = true;
}

void upload_rows(const Dataset& data, std::int64_t begin, int n, StepHeader h, unsigned char* stage, float* x,
                 RecordRing& ring, cudaStream_t stream) {
  const std::size_t rb = row_bytes(data);
  h.rows = reinterpret_cast<std::uint64_t>(stage);
  h.rows_u8 = data.is_u8() ? 1 : 0;
  h.n = n;
  // Pageable source: the copy is staged before the call returns and runs in stream order.
  VAE_CUDA_CHECK(cudaMemcpyAsync(stage, bytes_of(data) + static_cast<std::size_t>(begin) * rb,
                                 static_cast<std::size_t>(n) * rb, cudaMemcpyHostToDevice, stream));
  data.note_read(static_cast<std::size_t>(n) * rb);
  ring.send(h, nullptr);
  gather_rows(ring.header(), ring.indices(), n, data.dim, nullptr, x, stream);
}

}  // namespace vae::gpu
