// Per-step loss sums on the device: recon_b = -(1/L) sum_l log p(x_b|z_bl) per data point,
// then the step's sums over the batch, reduced deterministically (one block, fixed order)
// in double, into device memory. The host reads the running sums once per report
// (take_train_sums), not per step. The loss is recon + beta * kl (the ELBO, beta read from
// device memory: the step record's, so KL warm-up needs no new graph), or -sum_b bound_b
// for the IWAE objective (recon and kl are then the ELBO's parts, as the CPU reports them).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "device_memory.cuh"
#include "vae/backend.h"

namespace vae::gpu {

struct DeviceLossSums {
  double loss = 0;   // recon + beta * kl, or -sum bound (IWAE)
  double recon = 0;
  double kl = 0;
  long long count = 0;
};

// row_logp (n*L), kl (n) -> recon (n, nullable) and this batch's sums: added to *out
// (accumulate, as evaluation does), or written over it (a training step's sums, which the
// step guard adds to the running sums only when the step is finite). beta: device pointer
// to the KL weight (unused when bound is given). bound (n, nullable): the IWAE bound per
// data point; when given, loss = -sum_b bound_b.
void loss_accumulate(const float* row_logp, const float* kl, const float* bound, int n, int L, const double* beta,
                     float* recon, DeviceLossSums* out, bool accumulate, cudaStream_t stream);

// A backend's running sums: `slots` DeviceLossSums on the device, zeroed on `stream`, read
// and written through one pinned host slot.
class LossAccumulators {
 public:
  LossAccumulators(int slots, cudaStream_t stream);
  DeviceLossSums* slot(int i) const { return device_.get() + i; }
  void clear(int i);                        // on the stream
  LossSums take(int i);                     // slot i's sums, and the slot cleared: one sync
  void restore(int i, const LossSums& s);  // slot i = s (resuming mid-epoch); one sync

 private:
  cudaStream_t stream_;
  DeviceBuffer<DeviceLossSums> device_;
  PinnedBuffer<DeviceLossSums> host_;
};

}  // namespace vae::gpu
