// The CPU emulator's NCCL: the entry points kernels/allreduce.cu uses (nccl.h's), with the
// ranks of an mpirun launch as NCCL's ranks. An all-reduce is stream work like any other
// (runtime.cpp): it runs when the host waits, or is recorded into the stream's capture and
// runs at every launch of the graph, as MPI_Allreduce on the buffers (the emulator's device
// memory is host memory). What it checks that a plain MPI test cannot: that every rank got
// rank 0's id (the broadcast), that the collectives are enqueued in the same order on every
// rank and inside the captured step, with the types and counts NCCL is given. What it cannot
// show: NCCL's own summation order, its transport, or its rules on capture.
#include <nccl.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "emu.h"

#if defined(VAE_EMU_MPI)
#include <mpi.h>
#endif

struct ncclComm {
  int rank = 0, nranks = 1;
};

namespace {

constexpr char kMagic[] = "vae_emu nccl id";

[[noreturn]] void fatal(const std::string& what) {
  std::fprintf(stderr, "vae_emu: %s\n", what.c_str());
  std::abort();
}

// Why an NCCL call failed, for ncclGetErrorString's callers to print.
ncclResult_t refuse(ncclResult_t r, const std::string& why) {
  std::fprintf(stderr, "vae_emu: NCCL: %s\n", why.c_str());
  return r;
}

#if defined(VAE_EMU_MPI)
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
  if (std::memcmp(id.internal, kMagic, sizeof kMagic) != 0)
    return refuse(ncclInvalidArgument, "ncclCommInitRank: the id was not made by ncclGetUniqueId");
  if (nranks > 1) {
#if defined(VAE_EMU_MPI)
    if (!mpi_ready()) return refuse(ncclInvalidUsage, "ncclCommInitRank: several ranks need MPI initialized");
    int world = 0, me = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (world != nranks || me != rank)
      return refuse(ncclInvalidUsage, "ncclCommInitRank: the emulator's ranks are MPI_COMM_WORLD's, rank " +
                                          std::to_string(me) + " of " + std::to_string(world));
    // Every rank must hold rank 0's id, as NCCL needs to find its peers.
    ncclUniqueId root = id;
    MPI_Bcast(root.internal, sizeof root.internal, MPI_BYTE, 0, MPI_COMM_WORLD);
    int differs = std::memcmp(root.internal, id.internal, sizeof id.internal) != 0 ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &differs, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (differs) return refuse(ncclInvalidArgument, "ncclCommInitRank: the ranks were given different ids");
#else
    return refuse(ncclInvalidUsage, "ncclCommInitRank: this emulator was built without MPI: one rank only");
#endif
  }
  *comm = new ncclComm{rank, nranks};
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclGroupStart() { return ncclSuccess; }
ncclResult_t ncclGroupEnd() { return ncclSuccess; }

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  if (!comm || (count > 0 && (!send || !recv))) return refuse(ncclInvalidArgument, "ncclAllReduce: null argument");
  if (op != ncclSum) return refuse(ncclInvalidArgument, "ncclAllReduce: only ncclSum is emulated");
  std::size_t size = 0;
#if defined(VAE_EMU_MPI)
  MPI_Datatype mpi = MPI_DATATYPE_NULL;
#endif
  switch (type) {
    case ncclFloat32:
      size = 4;
#if defined(VAE_EMU_MPI)
      mpi = MPI_FLOAT;
#endif
      break;
    case ncclFloat64:
      size = 8;
#if defined(VAE_EMU_MPI)
      mpi = MPI_DOUBLE;
#endif
      break;
    case ncclInt64:
      size = 8;
#if defined(VAE_EMU_MPI)
      mpi = MPI_INT64_T;
#endif
      break;
    default:
      return refuse(ncclInvalidArgument, "ncclAllReduce: only float32, float64 and int64 are emulated");
  }
  const int nranks = comm->nranks;
  const bool queued = vae_emu::submit_host_op(stream, "ncclAllReduce", [=]() {
    if (send != recv) std::memmove(recv, send, count * size);
    if (nranks == 1) return;
#if defined(VAE_EMU_MPI)
    if (!mpi_ready()) fatal("ncclAllReduce ran after MPI_Finalize");
    auto* p = static_cast<char*>(recv);
    for (std::size_t done = 0; done < count;) {
      const int k = static_cast<int>(std::min<std::size_t>(count - done, std::size_t(1) << 30));
      if (MPI_Allreduce(MPI_IN_PLACE, p + done * size, k, mpi, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        fatal("ncclAllReduce: MPI_Allreduce failed");
      done += static_cast<std::size_t>(k);
    }
#endif
  });
  return queued ? ncclSuccess : refuse(ncclInvalidArgument, "ncclAllReduce: invalid stream");
}

}  // extern "C"
