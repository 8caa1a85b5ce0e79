// Where every random number comes from. Noise is drawn from cuRAND's Philox4x32-10
// generator: on the CPU path by cuRAND's host generator, on the CUDA path by its device
// generator, with the same seed and offsets, so both draw the same numbers.
//
//   eps for training step t:        stream `eps`,  offset t * eps_stride  (normals, (B*L, Z))
//   binarization uniforms, step t:  stream `bin`,  offset t * bin_stride  (uniforms, (B, D))
//   eps for evaluation batch k:     stream `eval`, offset k * eval_stride
//   log p(x) estimates, item i:     streams `iw_q` and `iw_prior`, offset i * iw_stride
//
// A block of steps drawn at once equals the same steps drawn one by one (tested), so the
// CUDA path may fill many steps' noise in one call. Internal to libvae, its tests and
// benchmarks (not installed): a library user gives a seed, nothing more.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "vae/config.h"

namespace vae {

inline std::size_t round_up_even(std::size_t n) { return (n + 1) & ~static_cast<std::size_t>(1); }
// Strides between the steps' noise are multiples of 4: every step starts on a Philox
// counter (4 values per counter), so no generator has to start mid-counter.
inline std::size_t round_up_4(std::size_t n) { return (n + 3) & ~static_cast<std::size_t>(3); }

enum class RngStream : std::uint64_t {
  eps = 1, bin = 2, eval = 3, init = 4, shuffle = 5, test_binarize = 6,
  iw_q = 7,      // estimate_log_likelihood: samples from q(z|x)
  iw_prior = 8,  // estimate_log_likelihood: samples from p(z)
  pictures = 9,
};

// A well-mixed 64-bit seed for one purpose, derived from the run's seed.
std::uint64_t derive_seed(std::uint64_t seed, RngStream stream);

struct RngPlan {
  std::uint64_t eps_seed = 0, bin_seed = 0, eval_seed = 0;
  std::size_t eps_stride = 0;  // normals per step: B*L*Z rounded up to a multiple of 4
  std::size_t bin_stride = 0;  // uniforms per step: B*D rounded up to a multiple of 4

  // samples: z per data point in a training step (train_samples()); 0 means model.samples.
  static RngPlan make(std::uint64_t seed, const ModelConfig&, int max_batch, int samples = 0);
  std::uint64_t eps_offset(std::int64_t step) const { return static_cast<std::uint64_t>(step) * eps_stride; }
  std::uint64_t bin_offset(std::int64_t step) const { return static_cast<std::uint64_t>(step) * bin_stride; }
  // Evaluation draws its own noise, batch k at offset k * eval_stride(batch).
  static std::size_t eval_stride(const ModelConfig&, int batch);
  // estimate_log_likelihood: data point i's k samples (k, Z) sit at offset i * iw_stride in
  // the iw_q and iw_prior streams.
  static std::size_t iw_stride(const ModelConfig& m, int k) {
    return round_up_4(static_cast<std::size_t>(k) * static_cast<std::size_t>(m.latent));
  }
};

// cuRAND host generator (Philox4x32-10) with explicit offsets. Counts n are rounded up to
// even internally where cuRAND requires it; `out` must hold round_up_even(n) values.
class HostPhilox {
 public:
  explicit HostPhilox(std::uint64_t seed);
  ~HostPhilox();
  HostPhilox(const HostPhilox&) = delete;
  HostPhilox& operator=(const HostPhilox&) = delete;

  void normal(float* out, std::size_t n, std::uint64_t offset);
  void uniform(float* out, std::size_t n, std::uint64_t offset);  // (0, 1]

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Serves the noise of step t (a slice of `stride` values at offset t*stride) from a block
// of many steps drawn in one cuRAND call: each call costs a fixed few milliseconds on the
// host, and a block equals its steps drawn one by one. The block holds at most
// `max_values` numbers (at least one step).
class StepNoise {
 public:
  enum class Kind { normal, uniform };
  StepNoise(std::uint64_t seed, Kind kind, std::size_t stride, std::size_t max_values);
  const float* step(std::int64_t t);  // stride values for step t

 private:
  HostPhilox rng_;
  Kind kind_;
  std::size_t stride_;
  std::int64_t steps_per_block_;
  std::int64_t first_ = -1;  // first step in the block, -1 when empty
  std::vector<float> block_;
};

}  // namespace vae
