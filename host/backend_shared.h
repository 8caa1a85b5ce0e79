// What the CPU backend (host/cpu_backend.cpp) and the CUDA backend (kernels/cuda_backend.cu)
// share besides the Backend interface: the passes their models run, the pass a training
// step runs, the log-likelihood estimate's chunk and the check of a batch. Plain C++.
#pragma once
#include <cstddef>
#include <cstdint>

#include "vae/backend.h"
#include "vae/distributed.h"
#include "vae/error.h"

namespace vae {

// What one pass of a model (CpuModel, gpu::CudaModel) computes besides the forward pass.
enum class Pass {
  forward,       // losses only (row log p, log p(z) - log q(z|x) per row, KL)
  elbo_reparam,  // gradient of the ELBO loss, reparameterization gradient (the default)
  elbo_score,    // gradient of the ELBO loss, score-function gradient for the encoder
  iwae,          // gradient of the IWAE loss -(log mean_k exp(log w_k)), reparameterized
};

// The training pass of the configuration, with the given encoder estimator.
inline Pass training_pass(const TrainConfig& t, Estimator estimator) {
  if (t.objective == Objective::iwae) return Pass::iwae;
  return estimator == Estimator::score ? Pass::elbo_score : Pass::elbo_reparam;
}

// estimate_log_likelihood: samples per pass and data point.
constexpr int kIwChunk = 128;

// The batch a step of `call` ("train_step", "compute_gradient") is given, against the
// training set (null: none set yet), the configured batch size and the step its noise
// comes from. Both backends throw the same message for the same bad batch.
inline void check_batch(const Batch& batch, std::int64_t step, int max_batch, const Dataset* data, const char* call) {
  if (!data) throw_error(call, ": call set_train_data first");
  const int n = batch.size;
  const bool shard = batch.global_size > 0;  // a data-parallel shard may be empty
  if (n < (shard ? 0 : 1) || n > max_batch) throw_error(call, ": batch of ", n, " items, expected 1..", max_batch);
  if (shard && (batch.global_size > max_batch || batch.offset < 0 || batch.offset > batch.global_size - n))
    throw_error(call, ": a shard of ", n, " items at ", batch.offset, " of a global batch of ", batch.global_size,
                " (at most ", max_batch, ")");
  if (!batch.indices && n > 0) throw_error(call, ": batch.indices is null");
  if (step < 0) throw_error(call, ": the step must be >= 0, got ", step);
  for (int i = 0; i < n; ++i)
    if (batch.indices[i] >= static_cast<std::uint64_t>(data->count))
      throw_error(call, ": index ", batch.indices[i], " is out of range for ", data->count, " items");
}

// The items of the global batch `batch` is a shard of (its own when it is a whole batch).
inline int global_size(const Batch& batch) { return batch.global_size > 0 ? batch.global_size : batch.size; }
// A shard of n items' share of a global batch of `global`: what its gradient (the mean over
// its items) is multiplied by before the ranks' gradients are summed, on the host
// (sum_shard_gradients) and on the GPU (the CUDA backend's NCCL step), in the same arithmetic.
template <class T>
T shard_share(int n, int global) {
  return T(n) / T(global);
}

// Data parallel: a shard's gradient times its share, summed across the ranks, is the global
// batch's mean gradient (both backends, the same float arithmetic).
template <class T>
void sum_shard_gradients(Communicator& comm, const Batch& shard, T* grads, std::size_t n) {
  const T share = shard_share<T>(shard.size, global_size(shard));
  for (std::size_t i = 0; i < n; ++i) grads[i] *= share;
  comm.sum(grads, n);
}
// Data parallel evaluation: the test set's batch k is rank k % N's (every batch is ours
// without ranks); the ranks' sums are then added up (sum_across_ranks).
inline bool evaluates_batch(const Communicator* comm, std::int64_t k) {
  return !comm || k % comm->size() == comm->rank();
}
// The ranks' loss sums added up.
inline void sum_across_ranks(Communicator& comm, LossSums& s) {
  double v[4] = {s.loss, s.recon, s.kl, double(s.count)};
  comm.sum(v, 4);
  s.loss = v[0], s.recon = v[1], s.kl = v[2], s.count = static_cast<std::int64_t>(v[3]);
}

}  // namespace vae
