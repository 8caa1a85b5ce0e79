// Declarations shared inside libvae, not part of the public API.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "vae/backend.h"
#include "vae/distributed.h"

namespace vae {

std::unique_ptr<Backend> make_cpu_backend(const ModelConfig&, const TrainConfig&);

// The machine's hardware threads (at least 1).
int cpu_cores();

// A std::bad_alloc while setting up `what` for this model, as a vae::Error with the sizes:
// the parameter count and what the parameters, gradients and two optimizer slots take.
[[noreturn]] void throw_out_of_host_memory(const ModelConfig& model, const TrainConfig& train, const char* what);

// Argument checks shared by the backends and the pictures (host/backend.cpp), besides
// check_data (backend.h). check_nonempty_data: check_data, and at least one item (`call`: set_train_data, evaluate,
// estimate_log_likelihood, which have nothing to train on or average over an empty set).
// check_encode_args: for Backend::encode also the item range; decode_rows:
// decode_means' codes' length (it returns the number of codes); decoder_input_rows: the
// same for the backends' rows [z, c] of decoder_input_dim values.
void check_nonempty_data(const ModelConfig& model, const Dataset& data, const char* call, const char* what = "data");
// The values a model's likelihood needs (Bernoulli: [0, 1]; the count likelihoods: counts),
// and their check: the first bad value (data.f32_values()[k]) as a vae::Error naming the file,
// the item, the feature and what was expected. check_data_values checks every value (each rank
// its share with comm: first_bad_value_across_ranks), a mapped file once.
ValueRule value_rule(const ModelConfig& model);
[[noreturn]] void throw_bad_value(const ModelConfig& model, const Dataset& data, std::int64_t k);
void check_data_values(const ModelConfig& model, const Dataset& data, ValueRule rule, Communicator* comm = nullptr);
void check_encode_args(const ModelConfig& model, const Dataset& data, std::int64_t begin, std::int64_t n);
std::int64_t decode_rows(const ModelConfig& model, const std::vector<float>& z);
std::int64_t decoder_input_rows(const ModelConfig& model, const std::vector<float>& codes);

#if defined(VAE_HAVE_CUDA)
// kernels/: cuda_backend.cu, cuda_device.cu, sgemm_rate.cu
std::unique_ptr<Backend> make_cuda_backend(const ModelConfig&, const TrainConfig&);
bool cuda_device_usable(std::string* why);
double cuda_sgemm_gflops(int m, int n, int k);
// Data parallel: this process's GPU, local rank r's device r % count (nothing with one device).
void use_cuda_device_of_local_rank(int local_rank);
#endif

}  // namespace vae
