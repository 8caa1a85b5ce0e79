// The host-side batch stream: a seeded shuffle each epoch, minibatches of indices in order,
// the last partial batch kept. Both backends consume the same stream.
#pragma once
#include <cstdint>
#include <vector>

namespace vae {

struct Batch {
  const std::uint32_t* indices = nullptr;  // (size) item indices into the training set
  int size = 0;
  int epoch = 0;
  std::int64_t step = 0;  // global step: the cuRAND offsets of this step derive from it
  // A shard of a data-parallel step (vae/distributed.h): its items are those at [offset,
  // offset + size) of a global batch of global_size items, whose noise rows they take and
  // whose mean gradient the ranks' sum is. global_size 0: the batch is the whole step.
  int offset = 0;
  int global_size = 0;
};

class BatchStream {
 public:
  BatchStream(std::int64_t count, int batch, std::uint64_t seed, bool shuffle = true);

  void start_epoch(int epoch);  // the permutation depends only on (seed, epoch)
  bool next(Batch& out);        // false at the end of the epoch
  void next_rolling(Batch& out);  // the next batch, starting the next epoch when this one ends
  void seek(int batch);         // the next call to next() returns this batch of the epoch
  int batches_per_epoch() const { return batches_; }
  const std::vector<std::uint32_t>& order() const { return order_; }

 private:
  std::int64_t count_;
  int batch_;
  int batches_;
  std::uint64_t seed_;
  bool shuffle_;
  int epoch_ = 0;
  int cursor_ = 0;  // next batch within the epoch
  std::vector<std::uint32_t> order_;
};

}  // namespace vae
