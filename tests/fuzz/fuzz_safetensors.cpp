// libFuzzer target: the safetensors reader and the model loader on top of it.
#include <cmath>

#include "fuzz_input.h"
#include "vae/error.h"
#include "vae/io.h"
#include "vae/layout.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static FuzzFile file;
  const std::string& path = file.write(data, size);
  try {
    vae::read_safetensors(path);
  } catch (const vae::Error&) {
  }
  try {
    const vae::SavedModel m = vae::load_model(path);
    if (m.params.size() != vae::ParamLayout(m.model).total()) std::abort();
    for (float v : m.params)
      if (!std::isfinite(v)) std::abort();
    // --standardize: the scaling is there exactly when the configuration says so, and usable
    if (m.model.standardize != !m.scaling.empty()) std::abort();
    if (!m.scaling.empty() && (m.scaling.dim() != m.model.input_dim || m.scaling.std.size() != m.scaling.mean.size()))
      std::abort();
    for (float s : m.scaling.std)
      if (!(s > 0) || !std::isfinite(s)) std::abort();
  } catch (const vae::Error&) {
  }
  return 0;
}
