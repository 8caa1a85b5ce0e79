// Inputs shared by the kernel-level benchmarks (CPU and GPU).
#pragma once
#include <cstddef>
#include <random>
#include <vector>

namespace vae::bench {

// n floats uniform in [lo, hi), fixed by the seed.
inline std::vector<float> random_vec(std::size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

}  // namespace vae::bench
