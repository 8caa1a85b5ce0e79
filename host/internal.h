// Declarations shared inside libvae, not part of the public API.
#pragma once
#include <memory>
#include <string>

#include "vae/backend.h"

namespace vae {

std::unique_ptr<Backend> make_cpu_backend(const ModelConfig&, const TrainConfig&);

#if defined(VAE_HAVE_CUDA)
// kernels/cuda_backend.cu
std::unique_ptr<Backend> make_cuda_backend(const ModelConfig&, const TrainConfig&);
bool cuda_device_usable(std::string* why);
double cuda_sgemm_gflops(int m, int n, int k);
#endif

}  // namespace vae
