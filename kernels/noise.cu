// Device noise blocks from cuRAND's device Philox generator (see noise.cuh).
#include <algorithm>
#include <cstdio>

#include "cuda_check.cuh"
#include "noise.cuh"
#include "vae/error.h"

namespace vae::gpu {

NoiseBlock::NoiseBlock(std::uint64_t seed, Kind kind, std::size_t stride, std::size_t max_values, cudaStream_t stream,
                       const std::string& what)
    : kind_(kind), stride_(stride) {
  if (stride == 0 || stride % 4 != 0)
    throw_error("NoiseBlock (", what, "): stride must be a positive multiple of 4 (a Philox counter), got ", stride);
  steps_per_block_ = static_cast<std::int64_t>(std::max<std::size_t>(1, max_values / stride));
  block_ = DeviceBuffer<float>(static_cast<std::size_t>(steps_per_block_) * stride, what);
  VAE_CURAND_CHECK(curandCreateGenerator(&gen_, CURAND_RNG_PSEUDO_PHILOX4_32_10));
  try {
    VAE_CURAND_CHECK(curandSetPseudoRandomGeneratorSeed(gen_, seed));
    VAE_CURAND_CHECK(curandSetStream(gen_, stream));
  } catch (...) {
    curandDestroyGenerator(gen_);
    throw;
  }
}

NoiseBlock::~NoiseBlock() {
  if (gen_) {
    const curandStatus_t s = curandDestroyGenerator(gen_);
    if (s != CURAND_STATUS_SUCCESS)
      std::fprintf(stderr, "vae: warning: curandDestroyGenerator failed: %s\n", curand_status_name(s));
  }
}

std::int64_t NoiseBlock::prepare(std::int64_t t) {
  if (t < 0) throw_error("NoiseBlock: negative step ", t);
  if (first_ < 0 || t < first_ || t >= first_ + steps_per_block_) {
    first_ = -1;  // stays empty if the fill fails
    VAE_CURAND_CHECK(curandSetGeneratorOffset(gen_, static_cast<unsigned long long>(t) * stride_));
    if (kind_ == Kind::normal)
      VAE_CURAND_CHECK(curandGenerateNormal(gen_, block_.get(), block_.size(), 0.0f, 1.0f));
    else
      VAE_CURAND_CHECK(curandGenerateUniform(gen_, block_.get(), block_.size()));
    first_ = t;
    ++refills_;
  }
  return (t - first_) * static_cast<std::int64_t>(stride_);
}

}  // namespace vae::gpu
