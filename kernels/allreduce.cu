// NCCL's all-reduce for the data-parallel step (allreduce.cuh): the library opened at run
// time, the choice between it and the host fallback agreed by every rank, the communicator
// made from an id rank 0 broadcasts over MPI, and the shard's scaling kernel.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "allreduce.cuh"
#include "cuda_check.cuh"
#include "vae/distributed.h"
#include "vae/error.h"

#if defined(VAE_HAVE_NCCL)
#include <dlfcn.h>
#include <nccl.h>
#endif

namespace vae::gpu {
namespace {

constexpr int kScaleThreads = 256;

__global__ void scale_kernel(float* __restrict__ v, std::size_t n, float s) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(kScaleThreads) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * kScaleThreads)
    v[i] = v[i] * s;
}

}  // namespace

void scale_values(float* v, std::size_t n, float s, cudaStream_t stream) {
  if (n == 0) return;
  const std::size_t blocks = std::min<std::size_t>((n + kScaleThreads - 1) / kScaleThreads, 1024);
  scale_kernel<<<static_cast<unsigned>(blocks), kScaleThreads, 0, stream>>>(v, n, s);
  VAE_LAUNCH_CHECK("scale_kernel");
}

#if defined(VAE_HAVE_NCCL)
namespace {

// The entry points used, from whichever library serves (allreduce.cuh says which).
struct NcclApi {
  decltype(&ncclGetVersion) get_version = nullptr;
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) init_rank = nullptr;
  decltype(&ncclCommDestroy) destroy = nullptr;
  decltype(&ncclAllReduce) all_reduce = nullptr;
  decltype(&ncclGroupStart) group_start = nullptr;
  decltype(&ncclGroupEnd) group_end = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
  std::string from;  // the library's file, or "in the process"
  std::string why;   // why there is none (empty when loaded)
  int version = 0;   // NCCL_VERSION_CODE of the library: 22809 is 2.28.9
};

// "2.28.9" of NCCL_VERSION_CODE 22809 (before 2.9: 2804 is 2.8.4).
std::string version_text(int v) {
  if (v < 10000) return std::to_string(v / 1000) + "." + std::to_string(v / 100 % 10) + "." + std::to_string(v % 100);
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

template <class F>
bool bind(void* lib, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  return f != nullptr;
}

bool bind_all(void* lib, NcclApi& a) {
  return bind(lib, "ncclGetVersion", a.get_version) && bind(lib, "ncclGetUniqueId", a.get_unique_id) &&
         bind(lib, "ncclCommInitRank", a.init_rank) && bind(lib, "ncclCommDestroy", a.destroy) &&
         bind(lib, "ncclAllReduce", a.all_reduce) && bind(lib, "ncclGroupStart", a.group_start) &&
         bind(lib, "ncclGroupEnd", a.group_end) && bind(lib, "ncclGetErrorString", a.error_string);
}

NcclApi load() {
  NcclApi a;
  if (bind_all(RTLD_DEFAULT, a)) {
    a.from = "in the process";
  } else {
    const char* env = std::getenv("VAE_NCCL_LIBRARY");
    const bool named = env && *env;
    std::string tried;
    for (const char* file : {named ? env : "libnccl.so.2", named ? nullptr : VAE_NCCL_BUILD_LIBRARY}) {
      if (!file || !*file) continue;
      void* lib = dlopen(file, RTLD_NOW | RTLD_LOCAL);
      const char* e = lib ? nullptr : dlerror();
      if (lib && bind_all(lib, a)) {
        a.from = file;
        break;
      }
      if (lib) dlclose(lib);
      tried += std::string(tried.empty() ? "" : "; ") + (lib ? std::string(file) + " lacks an NCCL entry point" : e ? e : file);
      a = NcclApi{};
    }
    if (a.from.empty()) {
      a.why = "NCCL not found (" + tried + "); name libnccl.so.2 in VAE_NCCL_LIBRARY or put its folder on LD_LIBRARY_PATH";
      return a;
    }
  }
  if (a.get_version(&a.version) != ncclSuccess) a.version = 0;
  if (a.version < 20900) {
    a.why = "NCCL " + version_text(a.version) + " from " + a.from + " is older than 2.9, the first to run in CUDA graphs";
    a.from.clear();
  }
  return a;
}

static_assert(offsetof(DeviceLossSums, recon) == sizeof(double) && offsetof(DeviceLossSums, kl) == 2 * sizeof(double),
              "sum_step sums the three loss sums as one array of doubles");

const NcclApi& api() {
  static const NcclApi a = load();
  return a;
}

void check(ncclResult_t r, const char* call) {
  if (r != ncclSuccess) throw_error(call, " failed: ", api().error_string(r), " (NCCL ", r, ")");
}


// The communicator of `comm`'s ranks (every rank calls it): rank 0 makes the id and
// broadcasts it over MPI. A rank whose ncclCommInitRank fails throws; the others may wait
// inside NCCL until mpirun ends the job when that rank exits.
void* connect(Communicator& comm) {
  std::string id, failed;
  if (comm.rank() == 0) {
    ncclUniqueId u;
    const ncclResult_t r = api().get_unique_id(&u);
    if (r == ncclSuccess) id.assign(u.internal, sizeof u.internal);
    else failed = api().error_string(r);
  }
  comm.broadcast(id);  // empty: rank 0 could not make one, and every rank says so
  if (id.size() != sizeof(ncclUniqueId))
    throw_error("ncclGetUniqueId failed on rank 0", failed.empty() ? std::string() : ": " + failed);
  ncclUniqueId u;
  id.copy(u.internal, sizeof u.internal);
  ncclComm_t c = nullptr;
  check(api().init_rank(&c, comm.size(), u, comm.rank()), "ncclCommInitRank");
  return c;
}

std::string describe() { return "NCCL " + version_text(api().version) + " (" + api().from + ")"; }

}  // namespace

bool nccl_loadable(std::string* why) {
  if (why) *why = api().why;
  return api().why.empty();
}

NcclSum::~NcclSum() {
  const ncclResult_t r = api().destroy(static_cast<ncclComm_t>(comm_));
  if (r != ncclSuccess) std::fprintf(stderr, "vae: ncclCommDestroy failed: %s\n", api().error_string(r));
}

void NcclSum::sum_step(float* grads, std::size_t n, DeviceLossSums* sums, cudaStream_t stream) {
  auto c = static_cast<ncclComm_t>(comm_);
  check(api().group_start(), "ncclGroupStart");
  // The group is always closed, whatever a call in it says; the first failure is thrown.
  const ncclResult_t r[3] = {api().all_reduce(grads, grads, n, ncclFloat32, ncclSum, c, stream),
                             api().all_reduce(&sums->loss, &sums->loss, 3, ncclFloat64, ncclSum, c, stream),
                             api().all_reduce(&sums->count, &sums->count, 1, ncclInt64, ncclSum, c, stream)};
  const ncclResult_t end = api().group_end();
  check(r[0], "ncclAllReduce (gradients)");
  check(r[1], "ncclAllReduce (loss sums)");
  check(r[2], "ncclAllReduce (count)");
  check(end, "ncclGroupEnd");
}

#else  // built without nccl.h: the host path only (nccl_loadable says so, and open_nccl_sum never connects)

namespace {
void* connect(Communicator&) { throw_error("the CUDA backend was built without NCCL"); }
std::string describe() { return {}; }
}  // namespace

bool nccl_loadable(std::string* why) {
  if (why) *why = "this vae was built without NCCL (nccl.h not found at build time)";
  return false;
}

NcclSum::~NcclSum() = default;

void NcclSum::sum_step(float*, std::size_t, DeviceLossSums*, cudaStream_t) {
  throw_error("NcclSum::sum_step: built without NCCL");
}

#endif

namespace {
// A number for the GPU this rank uses, the same on every rank that uses that GPU: a hash of
// the host's name and the device's PCI bus id, in [1, 2^52) (exact in a double).
double device_identity() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  int d = 0;
  VAE_CUDA_CHECK(cudaGetDevice(&d));
  char bus[64] = {};
  VAE_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof bus - 1, d));
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (const char* part : {static_cast<const char*>(host), "/", static_cast<const char*>(bus)})
    for (const char* p = part; *p; ++p) h = (h ^ static_cast<unsigned char>(*p)) * 1099511628211ull;
  return static_cast<double>((h >> 12) | 1);
}
}  // namespace

std::unique_ptr<NcclSum> open_nccl_sum(Communicator& comm, GradientSum want) {
  // One sum tells every rank the same: each rank's GPU ([r]; 0: it cannot or will not use
  // NCCL) and how many cannot ([n]). Nothing on a rank throws before it has voted.
  const int n = comm.size(), me = comm.rank();
  std::vector<double> v(static_cast<std::size_t>(n) + 1, 0.0);
  std::string why;
  try {
    if (want == GradientSum::host) why = "the host path was asked for";
    else if (nccl_loadable(&why)) v[static_cast<std::size_t>(me)] = device_identity();
  } catch (const std::exception& e) {
    why = e.what();
  }
  if (v[static_cast<std::size_t>(me)] == 0) v[static_cast<std::size_t>(n)] = 1;
  comm.sum(v.data(), v.size());
  std::string refused;
  if (v[static_cast<std::size_t>(n)] > 0) {
    refused = std::to_string(static_cast<int>(v[static_cast<std::size_t>(n)])) + " of " + std::to_string(n) +
              " ranks cannot use it" + (why.empty() ? std::string() : " (this rank: " + why + ")");
  } else {
    for (int i = 0; i < n && refused.empty(); ++i)
      for (int j = i + 1; j < n && refused.empty(); ++j)
        if (v[static_cast<std::size_t>(i)] == v[static_cast<std::size_t>(j)])
          refused = "ranks " + std::to_string(i) + " and " + std::to_string(j) +
                    " share a GPU (the same host and PCI bus id), which NCCL does not allow; give each rank a GPU "
                    "of its own (local rank r runs on device r mod the machine's devices)";
  }
  if (!refused.empty()) {
    if (want == GradientSum::nccl) throw_error("the GPU gradient sum through NCCL was asked for, but ", refused);
    return nullptr;
  }
  return std::unique_ptr<NcclSum>(new NcclSum(connect(comm), describe()));
}

}  // namespace vae::gpu
