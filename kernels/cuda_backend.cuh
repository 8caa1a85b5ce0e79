// The CUDA backend's knobs and counters, for the factory in host/internal.h and for tests.
// make_cuda_backend(model, train) uses the default options.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "allreduce.cuh"
#include "vae/backend.h"

namespace vae::gpu {

struct CudaBackendOptions {
  std::size_t noise_block_values = std::size_t(1) << 23;  // floats per noise block (eps, bin, eval each)
  int record_slots = 16;   // pinned step-record ring: the host runs at most this many steps ahead
  int stream_slots = 4;    // streamed data: batches whose rows are in flight at once
  bool use_graphs = true;  // false: launch each step's kernels directly (same kernels, for tests)
  // ReLU layers' forward through cuBLASLt's GEMM + bias + ReLU epilogue (one launch)
  // instead of cuBLAS GEMM + our bias_act kernel. Off until a GPU run of
  // bench/gpu_kernels shows the epilogue is faster at the sizes that matter.
  bool lt_bias_relu = false;
  double resident_headroom = 0.10;  // keep this fraction of device memory (and >= 1 GiB) free
  GradientSum gradient_sum = GradientSum::automatic;  // data parallel: NCCL or MPI on host buffers (allreduce.cuh)
};

struct CudaBackendStats {
  bool streamed = false;    // the training data is streamed from the host, not resident
  int graphs = 0;           // step graphs captured so far (one per batch size seen)
  std::int64_t eps_refills = 0, bin_refills = 0, eval_refills = 0;  // noise blocks drawn
  std::int64_t eps_steps_per_block = 0;
  int lt_plans = 0;  // GEMM shapes running through cuBLASLt's bias + ReLU epilogue (lt_bias_relu)
};

std::unique_ptr<Backend> make_cuda_backend(const ModelConfig&, const TrainConfig&, const CudaBackendOptions&);
// Throws vae::Error when `backend` is not a CUDA backend.
CudaBackendStats cuda_backend_stats(const Backend& backend);

}  // namespace vae::gpu
