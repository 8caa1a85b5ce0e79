// Device selection and the backend factory.
#include <memory>

#include "internal.h"
#include "vae/backend.h"
#include "vae/error.h"

namespace vae {

bool cuda_usable(std::string* why) {
#if defined(VAE_HAVE_CUDA)
  return cuda_device_usable(why);
#else
  if (why) *why = "this libvae was built without the CUDA backend (VAE_CUDA=OFF or no nvcc at build time)";
  return false;
#endif
}

Device resolve_device(Device requested, std::string* note) {
  if (requested != Device::automatic) {
    if (note) *note = std::string("device: ") + to_string(requested) + " (as requested)";
    return requested;
  }
  std::string why;
  if (cuda_usable(&why)) {
    if (note) *note = "device: cuda (auto: a usable GPU was found)";
    return Device::cuda;
  }
  if (note) *note = "device: cpu (auto: no usable GPU: " + why + ")";
  return Device::cpu;
}

std::unique_ptr<Backend> make_backend(Device device, const ModelConfig& model, const TrainConfig& train) {
  switch (device) {
    case Device::cpu: return make_cpu_backend(model, train);
    case Device::cuda: {
      std::string why;
      if (!cuda_usable(&why)) throw_error("--device cuda: no usable GPU: ", why);
#if defined(VAE_HAVE_CUDA)
      return make_cuda_backend(model, train);
#else
      break;
#endif
    }
    case Device::automatic: return make_backend(resolve_device(device, nullptr), model, train);
  }
  throw_error("make_backend: unknown device");
}

}  // namespace vae
