// Declarations shared inside libvae, not part of the public API.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "vae/backend.h"

namespace vae {

std::unique_ptr<Backend> make_cpu_backend(const ModelConfig&, const TrainConfig&);

// Backend::encode_means / decode_means argument checks (host/backend.cpp): the data's
// feature count and the item range; the codes' length. decode_codes returns the rows.
void check_encode_args(const ModelConfig& model, const Dataset& data, std::int64_t begin, std::int64_t n);
std::int64_t decode_rows(const ModelConfig& model, const std::vector<float>& z);

#if defined(VAE_HAVE_CUDA)
// kernels/cuda_backend.cu
std::unique_ptr<Backend> make_cuda_backend(const ModelConfig&, const TrainConfig&);
bool cuda_device_usable(std::string* why);
double cuda_sgemm_gflops(int m, int n, int k);
#endif

}  // namespace vae
