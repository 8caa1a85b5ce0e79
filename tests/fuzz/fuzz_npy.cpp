// libFuzzer target: the NPY reader (and the by-content dispatch of read_dataset), and the
// condition reader on the same bytes.
#include <cmath>

#include "fuzz_input.h"
#include "vae/data.h"
#include "vae/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static FuzzFile file;
  const std::string& path = file.write(data, size);
  try {
    const vae::Dataset d = vae::read_dataset(path);
    const std::size_t n = static_cast<std::size_t>(d.count) * d.dim;
    if (d.count <= 0 || d.dim <= 0 || (d.u8.size() != n && d.f32.size() != n)) std::abort();
    for (float v : d.f32)
      if (!std::isfinite(v)) std::abort();  // NaN, Inf and what float32 cannot hold are rejected
  } catch (const vae::Error&) {
  }
  check_condition(path, 0);  // conditions: labels or covariates
  check_condition(path, 7);
  return 0;
}
