// Seeded per-epoch shuffle and minibatches of indices.
#include "vae/batch_stream.h"

#include <algorithm>
#include <limits>

#include "rng.h"
#include "vae/error.h"

namespace vae {
namespace {
// SplitMix64 with a portable bounded draw (Lemire), so the shuffle is
// the same on every platform and standard library.
struct SplitMix {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) {  // uniform in [0, n)
    const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % n;
    std::uint64_t r;
    do r = next();
    while (r >= limit);
    return r % n;
  }
};
}  // namespace

BatchStream::BatchStream(std::int64_t count, int batch, std::uint64_t seed, bool shuffle)
    : count_(count), batch_(batch), seed_(derive_seed(seed, RngStream::shuffle)), shuffle_(shuffle) {
  if (count <= 0) throw_error("batch stream: the dataset is empty");
  if (count > std::numeric_limits<std::uint32_t>::max()) throw_error("batch stream: more than 2^32-1 items is not supported");
  if (batch <= 0) throw_error("batch stream: batch size must be positive, got ", batch);
  batches_ = static_cast<int>((count + batch - 1) / batch);
  order_.resize(static_cast<std::size_t>(count));
  start_epoch(0);
}

void BatchStream::start_epoch(int epoch) {
  epoch_ = epoch;
  cursor_ = 0;
  for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<std::uint32_t>(i);
  if (!shuffle_) return;
  SplitMix rng{seed_ ^ (0x632BE59BD9B4E019ull * static_cast<std::uint64_t>(epoch + 1))};
  for (std::size_t i = order_.size() - 1; i > 0; --i) std::swap(order_[i], order_[rng.below(i + 1)]);
}

void BatchStream::next_rolling(Batch& out) {
  if (next(out)) return;
  start_epoch(epoch_ + 1);
  next(out);
}

void BatchStream::seek(int batch) {
  if (batch < 0 || batch > batches_) throw_error("batch stream: cannot seek to batch ", batch, " of ", batches_);
  cursor_ = batch;
}

bool BatchStream::next(Batch& out) {
  if (cursor_ >= batches_) return false;
  const std::int64_t begin = static_cast<std::int64_t>(cursor_) * batch_;
  out.indices = order_.data() + begin;
  out.size = static_cast<int>(std::min<std::int64_t>(batch_, count_ - begin));
  out.epoch = epoch_;
  out.step = static_cast<std::int64_t>(epoch_) * batches_ + cursor_;
  ++cursor_;
  return true;
}

}  // namespace vae
