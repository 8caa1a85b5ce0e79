// cuRAND host generator wrapper and the derivation of per-purpose seeds and offsets.
#include "rng.h"

#include <curand.h>

#include <algorithm>

#include "vae/error.h"

namespace vae {
namespace {
void check(curandStatus_t status, const char* call) {
  if (status != CURAND_STATUS_SUCCESS) throw_error("cuRAND host generator: ", call, " failed with status ", int(status));
}
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

std::uint64_t derive_seed(std::uint64_t seed, RngStream stream) {
  return splitmix64(splitmix64(seed) ^ (static_cast<std::uint64_t>(stream) * 0xD1B54A32D192ED03ull));
}

RngPlan RngPlan::make(std::uint64_t seed, const ModelConfig& m, int max_batch, int samples) {
  if (samples <= 0) samples = m.samples;
  RngPlan p;
  p.eps_seed = derive_seed(seed, RngStream::eps);
  p.bin_seed = derive_seed(seed, RngStream::bin);
  p.eval_seed = derive_seed(seed, RngStream::eval);
  p.eps_stride = round_up_4(static_cast<std::size_t>(max_batch) * samples * m.latent);
  p.bin_stride = round_up_4(static_cast<std::size_t>(max_batch) * data_width(m));  // a one-hot condition stays as it is
  return p;
}

std::size_t RngPlan::eval_stride(const ModelConfig& m, int batch) {
  return round_up_4(static_cast<std::size_t>(batch) * m.samples * m.latent);
}

struct HostPhilox::Impl {
  curandGenerator_t gen = nullptr;
};

HostPhilox::HostPhilox(std::uint64_t seed) : impl_(new Impl) {
  check(curandCreateGeneratorHost(&impl_->gen, CURAND_RNG_PSEUDO_PHILOX4_32_10), "curandCreateGeneratorHost");
  check(curandSetPseudoRandomGeneratorSeed(impl_->gen, seed), "curandSetPseudoRandomGeneratorSeed");
}

HostPhilox::~HostPhilox() {
  if (impl_ && impl_->gen) curandDestroyGenerator(impl_->gen);
}

void HostPhilox::normal(float* out, std::size_t n, std::uint64_t offset) {
  if (n == 0) return;
  check(curandSetGeneratorOffset(impl_->gen, offset), "curandSetGeneratorOffset");
  check(curandGenerateNormal(impl_->gen, out, round_up_even(n), 0.0f, 1.0f), "curandGenerateNormal");
}

void HostPhilox::uniform(float* out, std::size_t n, std::uint64_t offset) {
  if (n == 0) return;
  check(curandSetGeneratorOffset(impl_->gen, offset), "curandSetGeneratorOffset");
  check(curandGenerateUniform(impl_->gen, out, n), "curandGenerateUniform");
}

StepNoise::StepNoise(std::uint64_t seed, Kind kind, std::size_t stride, std::size_t max_values)
    : rng_(seed), kind_(kind), stride_(stride) {
  if (stride == 0 || stride % 4 != 0)
    throw_error("StepNoise: stride must be a positive multiple of 4 (a Philox counter), got ", stride);
  steps_per_block_ = static_cast<std::int64_t>(std::max<std::size_t>(1, max_values / stride));
  block_.resize(static_cast<std::size_t>(steps_per_block_) * stride);
}

const float* StepNoise::step(std::int64_t t) {
  if (t < 0) throw_error("StepNoise: negative step ", t);
  if (first_ < 0 || t < first_ || t >= first_ + steps_per_block_) {
    first_ = t;
    const std::uint64_t offset = static_cast<std::uint64_t>(t) * stride_;
    if (kind_ == Kind::normal) rng_.normal(block_.data(), block_.size(), offset);
    else rng_.uniform(block_.data(), block_.size(), offset);
  }
  return block_.data() + static_cast<std::size_t>(t - first_) * stride_;
}

}  // namespace vae
