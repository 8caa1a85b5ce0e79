// Data-parallel training over processes: `mpirun -np N vae train ...` trains one model on N
// processes (ranks). Every global batch (TrainConfig::batch) is split into N contiguous
// shards, one per rank (shard_of); each rank computes its shard's gradient with the noise of
// its items' places in the global batch, the gradients are summed across the ranks, and every
// rank applies the same optimizer step, so the parameters stay the same on every rank.
// MPI is Open MPI's (an optional build dependency, VAE_MPI); this header is there either way.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "vae/batch_stream.h"
#include "vae/data.h"

namespace vae {

// What the backends and the trainer need of the ranks. Every rank makes the same calls in the
// same order (collectives).
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In-place sums across every rank, in an order that depends only on the number of ranks.
  virtual void sum(double* values, std::size_t n) = 0;
  virtual void sum(float* values, std::size_t n) = 0;
  // Rank 0's text on every rank.
  virtual void broadcast(std::string& text) = 0;
  virtual std::string name() const = 0;  // "MPI (Open MPI v4.1.4), 2 processes"
};

// Whether this process was started by mpirun (Open MPI's, or a PMI launcher), and with how
// many processes (0 when it was not).
int launched_processes();
// Processes of the launch on this machine (1 when started alone): the CPU backend's default
// thread count divides the cores among them.
int local_processes();
// This process's rank in the launch (0 when started alone).
int launched_rank();
// This process's rank among those of the launch on this machine (0 when started alone): a
// GPU rank uses device local_rank() % the machine's devices.
int local_rank();
// Whether this libvae was built with MPI.
bool mpi_built();
// The processes of an mpirun launch (MPI_COMM_WORLD, MPI initialized on first use and
// finalized at exit), or null when this process was started alone. Throws vae::Error when
// started by mpirun with several processes but built without MPI.
Communicator* world();
// After an error on this process, when MPI runs with several processes: MPI_Abort ends every
// process of the launch with `code` (the others may be waiting for this one in a collective,
// and MPI_Finalize at exit would wait for them: the job would hang). Returns otherwise. `vae`
// calls it after printing its error; a program that catches vae::Error under mpirun and
// cannot go on calls it likewise.
void abort_world(int code);

// Dataset::first_bad_value over all the items, split among the ranks: each reads only its
// share (a mapped file's pages: its own). The flat index of the first value that breaks
// `rule`, the same on every rank, or -1; then a mapped file is marked checked for `rule`.
// Without ranks (comm null): all of it here, and nothing for a mapped file checked before.
// Every rank must call it (a collective).
std::int64_t first_bad_value_across_ranks(const Dataset& data, ValueRule rule, Communicator* comm);

// Rank `rank`'s shard of a global batch among `size` ranks: contiguous, the first
// (batch % size) ranks one item more; empty when the batch has fewer items than ranks. Its
// offset and global_size say where it lies in the global batch.
Batch shard_of(const Batch& global, int rank, int size);

}  // namespace vae
