// The CPU emulator's NCCL: the entry points kernels/allreduce.cu uses (nccl.h's), with the
// ranks of an mpirun launch as NCCL's ranks. An all-reduce is stream work like any other
// (runtime.cpp): it runs when the host waits, or is recorded into the stream's capture and
// runs at every launch of the graph, as MPI_Allreduce on the buffers (the emulator's device
// memory is host memory), on the communicator's own duplicate of MPI_COMM_WORLD. What it
// checks that a plain MPI test cannot: that every rank got rank 0's id (the broadcast), that
// no two ranks use one device (NCCL's "Duplicate GPU"), that the collectives are enqueued in
// the same order on every rank and inside the captured step, with the types and counts NCCL
// is given. What it cannot show: NCCL's own summation order, its transport, or its rules on
// capture. And a limit of its own: an all-reduce runs only when its rank's host waits for the
// stream, so a rank that waits while another sits in a host collective (MPI) deadlocks the
// emulated job where GPUs would go on; the suites keep the ranks' waits in step.
#include <nccl.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "emu.h"

#if defined(VAE_EMU_MPI)
#include <mpi.h>
#endif

struct ncclComm {
  int rank = 0, nranks = 1;
#if defined(VAE_EMU_MPI)
  MPI_Comm mpi = MPI_COMM_NULL;  // its own duplicate of MPI_COMM_WORLD, as NCCL has its own transport
#endif
};

namespace {

constexpr char kMagic[] = "vae_emu nccl id";
int g_group_depth = 0;  // ncclGroupStart calls not yet ended


// Why an NCCL call failed, for ncclGetErrorString's callers to print.
ncclResult_t refuse(ncclResult_t r, const std::string& why) {
  std::fprintf(stderr, "vae_emu: NCCL: %s\n", why.c_str());
  return r;
}

// Bytes per value of the types emulated (0: another type).
std::size_t type_size(ncclDataType_t t) {
  return t == ncclFloat32 ? 4 : t == ncclFloat64 || t == ncclInt64 ? 8 : 0;
}

#if defined(VAE_EMU_MPI)
MPI_Datatype mpi_type(ncclDataType_t t) { return t == ncclFloat32 ? MPI_FLOAT : t == ncclFloat64 ? MPI_DOUBLE : MPI_INT64_T; }

[[noreturn]] void fatal(const std::string& what) {
  std::fprintf(stderr, "vae_emu: %s\n", what.c_str());
  std::abort();
}

bool mpi_ready() {
  int ready = 0, done = 0;
  MPI_Initialized(&ready);
  MPI_Finalized(&done);
  return ready && !done;
}
#endif

}  // namespace

extern "C" {

ncclResult_t ncclGetVersion(int* version) {
  if (!version) return ncclInvalidArgument;
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (!id) return ncclInvalidArgument;
  std::memset(id->internal, 0, sizeof id->internal);
  std::memcpy(id->internal, kMagic, sizeof kMagic);
  std::random_device rd;  // a fresh id each time, as NCCL's are
  for (std::size_t i = sizeof kMagic; i < sizeof id->internal; ++i) id->internal[i] = static_cast<char>(rd());
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  if (!comm || nranks < 1 || rank < 0 || rank >= nranks) return refuse(ncclInvalidArgument, "ncclCommInitRank: bad rank or size");
  const bool made = std::memcmp(id.internal, kMagic, sizeof kMagic) == 0;
  auto c = std::make_unique<ncclComm>();
  c->rank = rank;
  c->nranks = nranks;
  if (nranks == 1) {
    if (!made) return refuse(ncclInvalidArgument, "ncclCommInitRank: the id was not made by ncclGetUniqueId");
    *comm = c.release();
    return ncclSuccess;
  }
#if defined(VAE_EMU_MPI)
  if (!mpi_ready()) return refuse(ncclInvalidUsage, "ncclCommInitRank: several ranks need MPI initialized");
  int world = 0, me = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  if (world != nranks || me != rank)
    return refuse(ncclInvalidUsage, "ncclCommInitRank: the emulator's ranks are MPI_COMM_WORLD's, rank " +
                                        std::to_string(me) + " of " + std::to_string(world));
  // Every rank must hold rank 0's id, as NCCL needs it to find its peers, and no two ranks
  // may use the same device, which NCCL refuses. One vote, so that every rank returns the
  // same answer and none waits for another.
  ncclUniqueId root = id;
  MPI_Bcast(root.internal, sizeof root.internal, MPI_BYTE, 0, MPI_COMM_WORLD);
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int host_len = 0;
  MPI_Get_processor_name(host, &host_len);
  int device = 0;
  cudaGetDevice(&device);
  std::vector<char> hosts(static_cast<std::size_t>(world) * MPI_MAX_PROCESSOR_NAME);
  std::vector<int> devices(static_cast<std::size_t>(world));
  MPI_Allgather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, hosts.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, MPI_COMM_WORLD);
  MPI_Allgather(&device, 1, MPI_INT, devices.data(), 1, MPI_INT, MPI_COMM_WORLD);
  int bad = (!made || std::memcmp(root.internal, id.internal, sizeof id.internal) != 0) ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (bad) return refuse(ncclInvalidArgument, "ncclCommInitRank: the ranks were not all given rank 0's id");
  for (int i = 0; i < world; ++i)
    for (int j = i + 1; j < world; ++j)
      if (devices[i] == devices[j] && std::strncmp(&hosts[i * MPI_MAX_PROCESSOR_NAME], &hosts[j * MPI_MAX_PROCESSOR_NAME],
                                                   MPI_MAX_PROCESSOR_NAME) == 0)
        return refuse(ncclInvalidUsage, "Duplicate GPU detected : rank " + std::to_string(i) + " and rank " +
                                            std::to_string(j) + " both on CUDA device " + std::to_string(devices[i]));
  MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
  *comm = c.release();
  return ncclSuccess;
#else
  (void)made;
  return refuse(ncclInvalidUsage, "ncclCommInitRank: this emulator was built without MPI: one rank only");
#endif
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (!comm) return ncclInvalidArgument;
#if defined(VAE_EMU_MPI)
  if (comm->mpi != MPI_COMM_NULL && mpi_ready()) MPI_Comm_free(&comm->mpi);
#endif
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclGroupStart() {
  ++g_group_depth;
  return ncclSuccess;
}
ncclResult_t ncclGroupEnd() {
  if (g_group_depth == 0) return refuse(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
  --g_group_depth;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  if (!comm || (count > 0 && (!send || !recv))) return refuse(ncclInvalidArgument, "ncclAllReduce: null argument");
  if (op != ncclSum) return refuse(ncclInvalidArgument, "ncclAllReduce: only ncclSum is emulated");
  const std::size_t size = type_size(type);
  if (size == 0) return refuse(ncclInvalidArgument, "ncclAllReduce: only float32, float64 and int64 are emulated");
  const int nranks = comm->nranks;
#if defined(VAE_EMU_MPI)
  const MPI_Comm on = comm->mpi;
#endif
  const bool queued = vae_emu::submit_host_op(stream, "ncclAllReduce", [=]() {
    if (send != recv) std::memmove(recv, send, count * size);
    if (nranks == 1) return;
#if defined(VAE_EMU_MPI)
    if (!mpi_ready()) fatal("ncclAllReduce ran after MPI_Finalize");
    auto* p = static_cast<char*>(recv);
    for (std::size_t done = 0; done < count;) {
      const int k = static_cast<int>(std::min<std::size_t>(count - done, std::size_t(1) << 30));
      if (MPI_Allreduce(MPI_IN_PLACE, p + done * size, k, mpi_type(type), MPI_SUM, on) != MPI_SUCCESS)
        fatal("ncclAllReduce: MPI_Allreduce failed");
      done += static_cast<std::size_t>(k);
    }
#endif
  });
  return queued ? ncclSuccess : refuse(ncclInvalidArgument, "ncclAllReduce: invalid stream");
}

}  // extern "C"
