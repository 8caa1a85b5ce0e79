// libFuzzer target: the configuration reader (`vae train --config`, and the configuration a
// checkpoint carries). Bad input must be a vae::Error; a configuration that is read and
// validates must write back to JSON that reads back to the same configuration.
#include <cstdlib>
#include <string>

#include "vae/config.h"
#include "vae/error.h"
#include "vae/layout.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  vae::ModelConfig m;
  vae::TrainConfig t;
  try {
    vae::config_from_json(text, m, t);
    m.validate();
    t.validate();
  } catch (const vae::Error&) {
    return 0;
  }
  (void)vae::ParamLayout(m).total();
  const std::string once = vae::config_to_json(m, t);
  vae::ModelConfig m2;
  vae::TrainConfig t2;
  vae::config_from_json(once, m2, t2);  // a throw here is a finding
  if (vae::config_to_json(m2, t2) != once) std::abort();
  return 0;
}
