// NCCL's all-reduce for the data-parallel step (allreduce.cuh): the library opened at run
// time, the choice between it and the host fallback agreed by every rank, the communicator
// made from an id rank 0 broadcasts over MPI, and the shard's scaling kernel.
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

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
      if (lib && bind_all(lib, a)) {
        a.from = file;
        break;
      }
      const char* e = dlerror();
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
    a.why = "NCCL " + std::to_string(a.version) + " from " + a.from + " is older than 2.9, the first to run in CUDA graphs";
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

std::string version_text(int v) {
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

// Whether this rank can sum through NCCL; why not into *why.
bool usable_here(std::string* why) {
  if (!nccl_loadable(why)) return false;
  int devices = 0;
  VAE_CUDA_CHECK(cudaGetDeviceCount(&devices));
  if (local_processes() > devices) {
    *why = std::to_string(local_processes()) + " ranks on this machine share its " + std::to_string(devices) +
           (devices == 1 ? " GPU" : " GPUs") + ", which NCCL does not allow";
    return false;
  }
  return true;
}

}  // namespace

bool nccl_loadable(std::string* why) {
  if (why) *why = api().why;
  return api().why.empty();
}

std::unique_ptr<NcclSum> open_nccl_sum(Communicator& comm, GradientSum want) {
  if (want == GradientSum::host) return nullptr;
  std::string why;
  double unable = usable_here(&why) ? 0 : 1;
  comm.sum(&unable, 1);  // every rank makes the same choice
  if (unable > 0) {
    if (want == GradientSum::nccl)
      throw_error("the GPU gradient sum through NCCL was asked for, but ", unable, " of ", comm.size(),
                  " ranks cannot use it", why.empty() ? std::string() : " (this rank: " + why + ")");
    return nullptr;
  }
  std::string id(sizeof(ncclUniqueId), '\0');
  if (comm.rank() == 0) {
    ncclUniqueId u;
    check(api().get_unique_id(&u), "ncclGetUniqueId");
    id.assign(u.internal, sizeof u.internal);
  }
  comm.broadcast(id);
  ncclUniqueId u;
  id.copy(u.internal, sizeof u.internal);
  ncclComm_t c = nullptr;
  check(api().init_rank(&c, comm.size(), u, comm.rank()), "ncclCommInitRank");
  return std::unique_ptr<NcclSum>(new NcclSum(c, "NCCL " + version_text(api().version) + " (" + api().from + ")"));
}

NcclSum::~NcclSum() {
  const ncclResult_t r = api().destroy(static_cast<ncclComm_t>(comm_));
  if (r != ncclSuccess) std::fprintf(stderr, "vae: ncclCommDestroy failed: %s\n", api().error_string(r));
}

void NcclSum::sum_step(float* grads, std::size_t n, DeviceLossSums* sums, cudaStream_t stream) {
  auto c = static_cast<ncclComm_t>(comm_);
  check(api().group_start(), "ncclGroupStart");
  check(api().all_reduce(grads, grads, n, ncclFloat32, ncclSum, c, stream), "ncclAllReduce (gradients)");
  check(api().all_reduce(&sums->loss, &sums->loss, 3, ncclFloat64, ncclSum, c, stream), "ncclAllReduce (loss sums)");
  check(api().all_reduce(&sums->count, &sums->count, 1, ncclInt64, ncclSum, c, stream), "ncclAllReduce (count)");
  check(api().group_end(), "ncclGroupEnd");
}

#else  // built without nccl.h: the host fallback only

bool nccl_loadable(std::string* why) {
  if (why) *why = "this vae was built without NCCL (nccl.h not found at build time)";
  return false;
}

std::unique_ptr<NcclSum> open_nccl_sum(Communicator& comm, GradientSum want) {
  if (want == GradientSum::nccl) {
    std::string why;
    nccl_loadable(&why);
    throw_error("the GPU gradient sum through NCCL was asked for, but ", why);
  }
  (void)comm;
  return nullptr;
}

NcclSum::~NcclSum() = default;

void NcclSum::sum_step(float*, std::size_t, DeviceLossSums*, cudaStream_t) {
  throw_error("NcclSum::sum_step: built without NCCL");
}

#endif

}  // namespace vae::gpu
