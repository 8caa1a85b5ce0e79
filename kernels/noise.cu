// Device noise blocks from cuRAND's device Philox generator (see noise.cuh).
#include <algorithm>

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
  VAE_CURAND_CHECK(curandSetPseudoRandomGeneratorSeed(gen_.get(), seed));
  VAE_CURAND_CHECK(curandSetStream(gen_.get(), stream));
}

std::int64_t NoiseBlock::prepare(std::int64_t t) {
  if (t < 0) throw_error("NoiseBlock: negative step ", t);
  if (first_ < 0 || t < first_ || t >= first_ + steps_per_block_) {
    first_ = -1;  // stays empty if the fill fails
    VAE_CURAND_CHECK(curandSetGeneratorOffset(gen_.get(), static_cast<unsigned long long>(t) * stride_));
    if (kind_ == Kind::normal)
      VAE_CURAND_CHECK(curandGenerateNormal(gen_.get(), block_.get(), block_.size(), 0.0f, 1.0f));
    else
      VAE_CURAND_CHECK(curandGenerateUniform(gen_.get(), block_.get(), block_.size()));
    first_ = t;
    ++refills_;
  }
  return (t - first_) * static_cast<std::int64_t>(stride_);
}

}  // namespace vae::gpu
