// libFuzzer target: the IDX readers (images and labels, gzip or raw; labels as conditions too).
#include "fuzz_input.h"
#include "vae/data.h"
#include "vae/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static FuzzFile file;
  const std::string& path = file.write(data, size);
  try {
    const vae::Dataset d = vae::read_idx_images(path);
    if (d.count <= 0 || d.dim <= 0 || d.u8.size() != static_cast<std::size_t>(d.count) * d.dim) std::abort();
  } catch (const vae::Error&) {
  }
  try {
    const auto labels = vae::read_idx_labels(path);
    if (labels.empty()) std::abort();
  } catch (const vae::Error&) {
  }
  check_condition(path, 0);  // conditions: labels or covariates
  check_condition(path, 7);
  return 0;
}
