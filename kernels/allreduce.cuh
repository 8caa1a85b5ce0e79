// The CUDA backend's data-parallel gradient sum on the GPU: NCCL's all-reduce on the compute
// stream, inside the step graph with the rest of the step. libnccl.so.2 is opened at run time
// (a vae built with nccl.h still runs where NCCL is absent); where no NCCL serves every rank,
// the backend sums through MPI on host buffers instead (cuda_backend.cu, train_shard).
//
// Which library: one already in the process (the CPU emulator's, tests/emu/nccl.cpp, or one
// the host program linked), else $VAE_NCCL_LIBRARY when set, else libnccl.so.2 on the loader's
// path, else the one CMake found at build time. PyTorch's environments carry one
// (site-packages/nvidia/nccl/lib): put its folder on LD_LIBRARY_PATH or name the file in
// $VAE_NCCL_LIBRARY.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <string>

#include "loss_sums.cuh"

namespace vae {
class Communicator;
}

namespace vae::gpu {

// How GPU ranks sum their gradients (CudaBackendOptions::gradient_sum).
enum class GradientSum {
  automatic,  // NCCL when every rank loads it and no two ranks use the same GPU; else host
  nccl,       // NCCL, or vae::Error on every rank when that cannot be
  host,       // MPI through host buffers, outside the step graph: slow but correct
};

// v[i] *= s for i < n on `stream`: a shard's gradient times its share of the global batch.
void scale_values(float* v, std::size_t n, float s, cudaStream_t stream);

class NcclSum {
 public:
  NcclSum(const NcclSum&) = delete;
  NcclSum& operator=(const NcclSum&) = delete;
  ~NcclSum();
  // Enqueues on `stream`, in one NCCL group, the in-place sums across the ranks of the n
  // gradients and of the step's loss sums. Capturable.
  void sum_step(float* grads, std::size_t n, DeviceLossSums* sums, cudaStream_t stream);
  // "NCCL 2.28.9 (libnccl.so.2)"
  const std::string& description() const { return description_; }

 private:
  friend std::unique_ptr<NcclSum> open_nccl_sum(Communicator& comm, GradientSum want);
  NcclSum(void* comm, std::string description) : comm_(comm), description_(std::move(description)) {}
  void* comm_;  // ncclComm_t
  std::string description_;
};

// Collective over `comm`'s ranks (every rank calls it at the same point, whatever its `want`):
// an NCCL communicator when `want` allows, every rank loads NCCL and no two ranks use the same
// GPU (by host name and PCI bus id), else null (the host fallback). The ranks agree with one
// Communicator::sum before anything can throw, so GradientSum::nccl where that cannot be
// throws the same vae::Error on every rank; so does a failing ncclGetUniqueId on rank 0. A
// failing ncclCommInitRank throws on its rank; the others may wait inside NCCL until mpirun
// ends the job. The current CUDA device must be the backend's.
std::unique_ptr<NcclSum> open_nccl_sum(Communicator& comm, GradientSum want);

// Whether NCCL loads in this process; if not, why into *why.
bool nccl_loadable(std::string* why = nullptr);

}  // namespace vae::gpu
