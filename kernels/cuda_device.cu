// Whether a CUDA device is usable by this libvae (host/internal.h): a device, a context on
// it, and kernels built for its architecture.
#include <cuda_runtime_api.h>

#include <string>

#include "internal.h"
#include "vae/error.h"

namespace vae {
namespace {
__global__ void probe_kernel() {}
}  // namespace

bool cuda_device_usable(std::string* why) {
  auto fail = [&](const std::string& reason) {
    (void)cudaGetLastError();
    if (why) *why = reason;
    return false;
  };
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return fail(std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e));
  if (count == 0) return fail("no CUDA device found");
  int device = 0;
  e = cudaGetDevice(&device);
  if (e != cudaSuccess) return fail(std::string("cudaGetDevice: ") + cudaGetErrorString(e));
  cudaDeviceProp prop{};
  e = cudaGetDeviceProperties(&prop, device);
  if (e != cudaSuccess) return fail(std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(e));
  e = cudaFree(nullptr);  // creates the context: fails on a busy or prohibited device
  if (e != cudaSuccess) return fail(std::string("cannot use ") + prop.name + ": " + cudaGetErrorString(e));
  cudaFuncAttributes attr{};
  e = cudaFuncGetAttributes(&attr, probe_kernel);
  if (e != cudaSuccess)
    return fail(std::string("this libvae has no kernels for ") + prop.name + " (sm_" + std::to_string(prop.major) +
                std::to_string(prop.minor) + "): " + cudaGetErrorString(e) + "; rebuild with -DVAE_CUDA_ARCHITECTURES=" +
                std::to_string(prop.major) + std::to_string(prop.minor));
  if (why) why->clear();
  return true;
}

void use_cuda_device_of_local_rank(int local_rank) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= 1) {
    (void)cudaGetLastError();
    return;  // one device (or none: the backend's own check says so)
  }
  const int device = local_rank % count;
  const cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw_error("cudaSetDevice(", device, ") for local rank ", local_rank, ": ", cudaGetErrorString(e));
  }
}

}  // namespace vae
