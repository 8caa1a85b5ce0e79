// The CPU emulator's CUDA runtime: the entry points of cuda_runtime_api.h the project calls,
// over host memory, with
//   - kernels run block by block, the threads of a block as fibers (Boost.Context) switched
//     at barriers only, in the order VAE_EMU_ORDER says (forward | reverse | shuffle);
//   - streams as queues of deferred work, run when the host waits (stream, event or device
//     synchronization, a blocking copy), so that a missing wait reads stale data;
//   - pageable copies with CUDA's semantics (host-to-device staged at the call,
//     device-to-host complete when the call returns);
//   - stream capture recording the work into a graph that every launch replays, and
//     refusing what capture refuses (synchronous calls, cudaMalloc, waits on the capturing
//     stream);
//   - cudaMalloc memory filled with 0xFF bytes (NaN floats), so reads of memory nobody
//     wrote show up.
// Violations of CUDA's rules the emulator can see (a deadlocked barrier, a shuffle that
// reads an exited lane) abort with a message naming the kernel.
#include <boost/context/fiber.hpp>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "emu.h"

// Under AddressSanitizer the fiber switches are announced to it, so that it checks each
// fiber's stack as a stack and the device buffers (malloc'd) for overruns.
#if defined(__SANITIZE_ADDRESS__)
#define VAE_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VAE_EMU_ASAN 1
#endif
#endif
#ifdef VAE_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// ---- opaque handles ------------------------------------------------------------------------
struct CUstream_st {
  std::deque<std::pair<std::string, std::function<void()>>> queue;
  std::uint64_t submitted = 0, executed = 0;  // ops enqueued and run so far
  bool running = false;  // executing one of its ops
  bool blocking = true;
  struct CUgraph_st* capture = nullptr;
  bool capture_broken = false;
};
struct CUevent_st {
  CUstream_st* stream = nullptr;
  std::uint64_t target = 0;  // the stream's op count at the record
  bool recorded = false;
  bool timing = true;
  // When the last record ran; held by that record's queued op too, so that destroying the
  // event before the op runs is harmless, as it is with CUDA.
  std::shared_ptr<std::optional<std::chrono::steady_clock::time_point>> stamp;
};
struct CUgraph_st {
  std::vector<std::pair<std::string, std::function<void()>>> ops;
};
struct CUgraphExec_st {
  std::vector<std::pair<std::string, std::function<void()>>> ops;
};

namespace vae_emu {
namespace {

[[noreturn]] void fatal(const std::string& what) {
  std::fprintf(stderr, "vae_emu: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// ---- fiber contexts -------------------------------------------------------------------------
// The threads of a block are Boost.Context fibers (its fcontext back end: a switch saves and
// loads registers, with no system call, unlike ucontext's swapcontext, which sets the signal
// mask at every switch). Each runs on a stack the scheduler owns and reuses block after block.
namespace bctx = boost::context;

// The stack allocator of a fiber: lends it [base, base + bytes), and leaves it in place
// when the fiber ends.
struct LentStack {
  char* base = nullptr;
  std::size_t bytes = 0;
  bctx::stack_context allocate() const {
#ifdef VAE_EMU_ASAN
    __asan_unpoison_memory_region(base, bytes);  // what the stack's last fiber left poisoned
#endif
    bctx::stack_context sc;
    sc.size = bytes;
    sc.sp = base + bytes;
    return sc;
  }
  void deallocate(bctx::stack_context& /*sc*/) const noexcept {}
};

// AddressSanitizer is told of every switch between the host thread's stack and a fiber's
// (start before the switch, finish after it on the other stack), so that it checks each
// fiber's stack as a stack. Without AddressSanitizer these do nothing.
void asan_start_switch(void** fake_stack_save, const void* bottom, std::size_t bytes) {
#ifdef VAE_EMU_ASAN
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, bytes);
#else
  (void)fake_stack_save, (void)bottom, (void)bytes;
#endif
}
void asan_finish_switch(void* fake_stack_save, const void** bottom_old, std::size_t* bytes_old) {
#ifdef VAE_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_save, bottom_old, bytes_old);
#else
  (void)fake_stack_save, (void)bottom_old, (void)bytes_old;
#endif
}

// ---- the fiber scheduler ------------------------------------------------------------------
enum class State { runnable, at_block, at_warp, done };

struct Fiber {
  bctx::fiber ctx;  // where the thread resumes; empty once it has returned
  State state = State::runnable;
  uint3 tid{};
};

constexpr std::size_t kStackBytes = 256 * 1024;

struct Scheduler {
  std::vector<Fiber> fibers;
  std::vector<std::unique_ptr<char[]>> stacks;
  std::vector<unsigned long long> slots;
  std::vector<int> order;
  bctx::fiber sched;  // where the running thread goes back to at a barrier
  const std::function<void()>* body = nullptr;
  const char* kernel = "";
  int current = -1;
  uint3 block_idx{};
  dim3 block_dim{1, 1, 1}, grid_dim{1, 1, 1};
  std::uint64_t launches = 0;
  enum class Order { forward, reverse, shuffle } order_mode = Order::forward;
};

// The thread order VAE_EMU_ORDER asks for, read at every launch.
Scheduler::Order order_from_env() {
  const char* o = std::getenv("VAE_EMU_ORDER");
  const std::string name = o && *o ? o : "forward";
  if (name == "forward") return Scheduler::Order::forward;
  if (name == "reverse") return Scheduler::Order::reverse;
  if (name == "shuffle") return Scheduler::Order::shuffle;
  fatal("VAE_EMU_ORDER must be forward, reverse or shuffle, got '" + name + "'");
}

Scheduler& sch() {
  static Scheduler s;
  return s;
}

uint3 g_idle_tid{0, 0, 0};
const void* g_sched_bottom = nullptr;  // the scheduler's (host thread's) stack, for AddressSanitizer
std::size_t g_sched_size = 0;

// The body of every fiber: one CUDA thread of the current block.
bctx::fiber thread_main(bctx::fiber&& scheduler) {
  asan_finish_switch(nullptr, &g_sched_bottom, &g_sched_size);
  Scheduler& s = sch();
  s.sched = std::move(scheduler);
  const int me = s.current;
  (*s.body)();
  s.fibers[static_cast<std::size_t>(me)].state = State::done;
  asan_start_switch(nullptr, g_sched_bottom, g_sched_size);  // this fiber ends
  return std::move(s.sched);
}

void yield_as(State st) {
  Scheduler& s = sch();
  if (s.current < 0) fatal("a barrier outside a kernel");
  s.fibers[static_cast<std::size_t>(s.current)].state = st;
  void* fake = nullptr;
  asan_start_switch(&fake, g_sched_bottom, g_sched_size);
  s.sched = std::move(s.sched).resume();
  asan_finish_switch(fake, &g_sched_bottom, &g_sched_size);
}

void resume(Scheduler& s, int i) {
  s.current = i;
  void* fake = nullptr;
  asan_start_switch(&fake, s.stacks[static_cast<std::size_t>(i)].get(), kStackBytes);
  Fiber& f = s.fibers[static_cast<std::size_t>(i)];
  f.ctx = std::move(f.ctx).resume();
  asan_finish_switch(fake, nullptr, nullptr);
}

std::string block_name(const Scheduler& s) {
  return std::string(s.kernel) + " block (" + std::to_string(s.block_idx.x) + "," + std::to_string(s.block_idx.y) +
         "," + std::to_string(s.block_idx.z) + ")";
}

void run_block(Scheduler& s, int n) {
  if (s.stacks.size() < static_cast<std::size_t>(n)) {
    s.stacks.resize(static_cast<std::size_t>(n));
    s.fibers.resize(static_cast<std::size_t>(n));
  }
  s.slots.assign(static_cast<std::size_t>(n), 0);
  for (int i = 0; i < n; ++i) {
    auto& stack = s.stacks[static_cast<std::size_t>(i)];
    if (!stack) stack.reset(new char[kStackBytes]);
    Fiber& f = s.fibers[static_cast<std::size_t>(i)];
    f.ctx = bctx::fiber(std::allocator_arg, LentStack{stack.get(), kStackBytes}, thread_main);
    f.state = State::runnable;
    const unsigned bx = s.block_dim.x, by = s.block_dim.y;
    f.tid = uint3{static_cast<unsigned>(i) % bx, (static_cast<unsigned>(i) / bx) % by, static_cast<unsigned>(i) / (bx * by)};
  }
  s.order.resize(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) s.order[static_cast<std::size_t>(i)] = i;
  if (s.order_mode == Scheduler::Order::reverse) std::reverse(s.order.begin(), s.order.end());
  std::optional<std::mt19937> rng;  // seeded by launch and block: the same run, the same orders
  if (s.order_mode == Scheduler::Order::shuffle)
    rng.emplace(static_cast<unsigned>(s.launches * 7919u + s.block_idx.x * 131u + s.block_idx.y));
  for (;;) {
    if (rng) std::shuffle(s.order.begin(), s.order.end(), *rng);
    for (int i : s.order) {
      Fiber& f = s.fibers[static_cast<std::size_t>(i)];
      if (f.state != State::runnable) continue;
      resume(s, i);
    }
    s.current = -1;
    // Everyone is now waiting or done: release complete warps first, then the block.
    bool all_done = true, released = false, any_warp = false, all_block = true;
    for (int w = 0; w * 32 < n; ++w) {
      const int lo = w * 32, hi = std::min(n, lo + 32);
      bool live = false, all_at_warp = true;
      for (int i = lo; i < hi; ++i) {
        const State st = s.fibers[static_cast<std::size_t>(i)].state;
        if (st == State::done) continue;
        live = true;
        all_done = false;
        if (st != State::at_warp) all_at_warp = false;
        if (st == State::at_warp) any_warp = true;
        if (st != State::at_block) all_block = false;
      }
      if (live && all_at_warp) {
        for (int i = lo; i < hi; ++i)
          if (s.fibers[static_cast<std::size_t>(i)].state == State::at_warp)
            s.fibers[static_cast<std::size_t>(i)].state = State::runnable;
        released = true;
      }
    }
    if (all_done) return;
    if (released) continue;
    if (all_block && !any_warp) {
      for (int i = 0; i < n; ++i)
        if (s.fibers[static_cast<std::size_t>(i)].state == State::at_block)
          s.fibers[static_cast<std::size_t>(i)].state = State::runnable;
      continue;
    }
    fatal(block_name(s) + ": deadlock: some threads wait at __syncthreads while others of the block are at a warp "
                          "shuffle (divergent barrier)");
  }
}

void run_kernel(const char* name, dim3 grid, dim3 block, const std::function<void()>& body) {
  Scheduler& s = sch();
  if (s.current >= 0) fatal(std::string("kernel ") + name + " launched from inside a kernel");
  s.body = &body;
  s.kernel = name;
  s.grid_dim = grid;
  s.block_dim = block;
  s.order_mode = order_from_env();
  ++s.launches;
  const int n = static_cast<int>(block.x * block.y * block.z);
  const std::uint64_t blocks = std::uint64_t(grid.x) * grid.y * grid.z;
  for (std::uint64_t b = 0; b < blocks; ++b) {
    const std::uint64_t k = s.order_mode == Scheduler::Order::reverse ? blocks - 1 - b : b;
    s.block_idx = uint3{static_cast<unsigned>(k % grid.x), static_cast<unsigned>((k / grid.x) % grid.y),
                        static_cast<unsigned>(k / (std::uint64_t(grid.x) * grid.y))};
    run_block(s, n);
  }
  s.body = nullptr;
}

// ---- errors ---------------------------------------------------------------------------------
cudaError_t g_last_error = cudaSuccess;
cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) g_last_error = e;
  return e;
}

// The errors the emulator returns: CUDA's name and message of each.
constexpr vae_emu::CodeText<cudaError_t> kErrors[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration", "invalid configuration argument"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported",
     "operation not permitted when stream is capturing"},
    {cudaErrorStreamCaptureInvalidated, "cudaErrorStreamCaptureInvalidated",
     "operation failed due to a previous error during capture"},
    {cudaErrorStreamCaptureIsolation, "cudaErrorStreamCaptureIsolation",
     "dependency created on uncaptured work in another stream"},
    {cudaErrorStreamCaptureImplicit, "cudaErrorStreamCaptureImplicit",
     "operation would make the legacy stream depend on a capturing blocking stream"},
    {cudaErrorIllegalState, "cudaErrorIllegalState", "the operation is not permitted in the current state"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
};

// ---- memory ---------------------------------------------------------------------------------
constexpr std::size_t kDeviceBytes = std::size_t(80) << 30;  // an H100's 80 GiB
std::map<std::uintptr_t, std::size_t>& device_allocs() {
  static std::map<std::uintptr_t, std::size_t> m;
  return m;
}
std::map<std::uintptr_t, std::size_t>& pinned_allocs() {
  static std::map<std::uintptr_t, std::size_t> m;
  return m;
}
std::size_t g_device_used = 0;

// The allocation of `m` (start, bytes) that holds address p, or null.
const std::pair<const std::uintptr_t, std::size_t>* allocation_of(const std::map<std::uintptr_t, std::size_t>& m,
                                                                  const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = m.upper_bound(a);
  if (it == m.begin()) return nullptr;
  --it;
  return a < it->first + std::max<std::size_t>(it->second, 1) ? &*it : nullptr;
}
bool in_allocs(const std::map<std::uintptr_t, std::size_t>& m, const void* p) { return allocation_of(m, p) != nullptr; }
bool is_device(const void* p) { return in_allocs(device_allocs(), p); }

// ---- streams ---------------------------------------------------------------------------------
CUstream_st& legacy() {
  static CUstream_st s;
  return s;
}
std::set<CUstream_st*>& streams() {
  static std::set<CUstream_st*> s;
  return s;
}
bool g_capturing_thread = false;  // a capture (global or thread-local mode) is under way

CUstream_st* resolve(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return &legacy();
  if (!streams().count(s)) return nullptr;
  return s;
}

void flush_to(CUstream_st* s, std::uint64_t target) {
  while (s->executed < target) {
    if (s->running) fatal("a stream waits for its own later work (an event recorded after the wait): deadlock");
    if (s->queue.empty()) fatal("internal: stream queue shorter than its count");
    auto op = std::move(s->queue.front());
    s->queue.pop_front();
    s->running = true;
    op.second();
    s->running = false;
    ++s->executed;
  }
}
void flush(CUstream_st* s) { flush_to(s, s->submitted); }
// What a synchronous call waits for first: the legacy stream and the blocking streams.
void flush_legacy_order() {
  flush(&legacy());
  for (CUstream_st* s : streams())
    if (s->blocking) flush(s);
}
void flush_all() {
  bool again = true;
  while (again) {
    again = false;
    flush(&legacy());
    for (CUstream_st* s : streams())
      if (!s->queue.empty()) {
        flush(s);
        again = true;
      }
  }
}

// Appends an op to a stream's queue, or to the graph the stream is capturing.
cudaError_t submit(cudaStream_t stream, std::string what, std::function<void()> fn) {
  CUstream_st* s = resolve(stream);
  if (!s) return set_error(cudaErrorInvalidResourceHandle);
  if (s->capture) {
    s->capture->ops.emplace_back(std::move(what), std::move(fn));
    return cudaSuccess;
  }
  if (g_capturing_thread && s == &legacy()) return set_error(cudaErrorStreamCaptureImplicit);
  s->queue.emplace_back(std::move(what), std::move(fn));
  ++s->submitted;
  return cudaSuccess;
}

// Calls that capture forbids in its global and thread-local modes.
cudaError_t refuse_if_capturing() {
  if (!g_capturing_thread) return cudaSuccess;
  for (CUstream_st* s : streams())
    if (s->capture) s->capture_broken = true;
  return set_error(cudaErrorStreamCaptureUnsupported);
}

}  // namespace

// ---- the emulator API (emu.h) ---------------------------------------------------------------
const uint3& cur_thread_idx() {
  Scheduler& s = sch();
  if (s.current < 0) return g_idle_tid;
  return s.fibers[static_cast<std::size_t>(s.current)].tid;
}
const uint3& cur_block_idx() { return sch().block_idx; }
const dim3& cur_block_dim() { return sch().block_dim; }
const dim3& cur_grid_dim() { return sch().grid_dim; }

void sync_block() { yield_as(State::at_block); }

unsigned long long exchange_xor(unsigned long long bits, int lane_mask, int width) {
  Scheduler& s = sch();
  const int me = s.current;
  if (me < 0) fatal("a shuffle outside a kernel");
  if (width != 32) fatal(block_name(s) + ": shuffle width other than 32 is not emulated");
  const int n = static_cast<int>(s.slots.size());
  const int warp0 = me / 32 * 32;
  if (warp0 + 32 > n) fatal(block_name(s) + ": a full-mask shuffle in a partial warp (block size not a multiple of 32)");
  s.slots[static_cast<std::size_t>(me)] = bits;
  yield_as(State::at_warp);
  const int src = warp0 + ((me - warp0) ^ (lane_mask & 31));
  if (s.fibers[static_cast<std::size_t>(src)].state == State::done)
    fatal(block_name(s) + ": a shuffle reads lane " + std::to_string(src - warp0) + ", which has exited");
  const unsigned long long out = s.slots[static_cast<std::size_t>(src)];
  yield_as(State::at_warp);  // nobody deposits again before every lane has read
  return out;
}

void submit_kernel(const char* name, dim3 grid, dim3 block, std::size_t shmem, cudaStream_t stream,
                   std::function<void()> body) {
  const unsigned long long threads = static_cast<unsigned long long>(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535 || shmem > 48 * 1024) {
    set_error(cudaErrorInvalidConfiguration);
    return;
  }
  const std::string what = name;
  auto shared_body = std::make_shared<std::function<void()>>(std::move(body));
  submit(stream, what, [name, grid, block, shared_body]() { run_kernel(name, grid, block, *shared_body); });
}

bool submit_host_op(cudaStream_t stream, const char* what, std::function<void()> op) {
  return submit(stream, what, std::move(op)) == cudaSuccess;
}

bool is_pinned(const void* p) { return in_allocs(pinned_allocs(), p); }

bool is_capturing(cudaStream_t stream) {
  const CUstream_st* s = resolve(stream);
  return s && s->capture;
}

}  // namespace vae_emu

using namespace vae_emu;

extern "C" {

// ---- errors ---------------------------------------------------------------------------------
cudaError_t cudaGetLastError(void) {
  const cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return g_last_error; }

const char* cudaGetErrorName(cudaError_t e) {
  const auto* x = vae_emu::find_code(kErrors, e);
  return x ? x->name : "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  const auto* x = vae_emu::find_code(kErrors, e);
  return x ? x->text : "unknown error (emulator)";
}

// ---- device ---------------------------------------------------------------------------------
// VAE_EMU_DEVICES (1..8, default 1) devices, all of them this one emulator (the same memory
// and streams): for the choices that depend on the count, such as one GPU per local rank.
namespace {
int emulated_devices() {
  static const int n = [] {
    const char* v = std::getenv("VAE_EMU_DEVICES");
    if (!v || !*v) return 1;
    char* end = nullptr;
    const long k = std::strtol(v, &end, 10);
    if (*end != '\0' || k < 1 || k > 8) fatal(std::string("VAE_EMU_DEVICES must be 1..8, got '") + v + "'");
    return static_cast<int>(k);
  }();
  return n;
}
thread_local int g_device = 0;  // the calling thread's current device, as CUDA keeps it
}  // namespace
cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return set_error(cudaErrorInvalidValue);
  *count = emulated_devices();
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  if (!device) return set_error(cudaErrorInvalidValue);
  *device = g_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= emulated_devices()) return set_error(cudaErrorInvalidDevice);
  g_device = device;
  return cudaSuccess;
}
// "0000:0d:00.0" for device d - 1: one bus id per emulated device.
cudaError_t cudaDeviceGetPCIBusId(char* id, int len, int device) {
  if (!id || len < 13) return set_error(cudaErrorInvalidValue);
  if (device < 0 || device >= emulated_devices()) return set_error(cudaErrorInvalidDevice);
  std::snprintf(id, static_cast<std::size_t>(len), "0000:%02x:00.0", device + 1);
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!prop) return set_error(cudaErrorInvalidValue);
  if (device < 0 || device >= emulated_devices()) return set_error(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "CPU emulator (vae_emu)");
  prop->major = 9;
  prop->minor = 0;
  prop->totalGlobalMem = kDeviceBytes;
  prop->multiProcessorCount = 132;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->warpSize = 32;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->l2CacheSize = 50 * 1024 * 1024;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  if (!v) return set_error(cudaErrorInvalidValue);
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  if (!v) return set_error(cudaErrorInvalidValue);
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  if (!attr || !func) return set_error(cudaErrorInvalidValue);
  std::memset(attr, 0, sizeof *attr);
  attr->maxThreadsPerBlock = 1024;
  attr->numRegs = 32;
  attr->binaryVersion = 90;
  attr->ptxVersion = 90;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  if (g_capturing_thread) return refuse_if_capturing();
  flush_all();
  return cudaSuccess;
}

// ---- memory ---------------------------------------------------------------------------------
namespace {
// 256-byte aligned, as cudaMalloc's memory, and exactly `bytes` long (no rounding), so that
// AddressSanitizer sees an access one past the end.
void* alloc256(std::size_t bytes) {
  void* mem = nullptr;
  return posix_memalign(&mem, 256, std::max<std::size_t>(bytes, 1)) == 0 ? mem : nullptr;
}
}  // namespace

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (!p) return set_error(cudaErrorInvalidValue);
  *p = nullptr;
  if (refuse_if_capturing() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  if (bytes > kDeviceBytes - g_device_used) return set_error(cudaErrorMemoryAllocation);
  void* mem = alloc256(bytes);
  if (!mem) return set_error(cudaErrorMemoryAllocation);
  std::memset(mem, 0xFF, bytes);  // what nobody writes reads as NaN
  device_allocs()[reinterpret_cast<std::uintptr_t>(mem)] = bytes;
  g_device_used += bytes;
  *p = mem;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  if (refuse_if_capturing() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  auto it = device_allocs().find(reinterpret_cast<std::uintptr_t>(p));
  if (it == device_allocs().end()) return set_error(cudaErrorInvalidValue);
  flush_all();  // cudaFree waits for the device
  g_device_used -= it->second;
  device_allocs().erase(it);
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned int /*flags*/) {
  if (!p) return set_error(cudaErrorInvalidValue);
  *p = nullptr;
  if (refuse_if_capturing() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  void* mem = alloc256(bytes);
  if (!mem) return set_error(cudaErrorMemoryAllocation);
  pinned_allocs()[reinterpret_cast<std::uintptr_t>(mem)] = bytes;
  *p = mem;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) { return cudaHostAlloc(p, bytes, 0); }
cudaError_t cudaFreeHost(void* p) {
  if (!p) return cudaSuccess;
  if (refuse_if_capturing() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  auto it = pinned_allocs().find(reinterpret_cast<std::uintptr_t>(p));
  if (it == pinned_allocs().end()) return set_error(cudaErrorInvalidValue);
  flush_all();
  pinned_allocs().erase(it);
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (!free_bytes || !total_bytes) return set_error(cudaErrorInvalidValue);
  *total_bytes = kDeviceBytes;
  *free_bytes = kDeviceBytes - g_device_used;
  return cudaSuccess;
}

namespace {
bool range_ok(const void* p, std::size_t bytes, bool device) {
  if (bytes == 0) return true;
  if (!p) return false;
  if (!device) return true;
  const auto* alloc = allocation_of(device_allocs(), p);
  return alloc && reinterpret_cast<std::uintptr_t>(p) + bytes <= alloc->first + alloc->second;
}

// The direction implied by the pointers (cudaMemcpyDefault) or checked against them.
cudaError_t check_copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  const bool dd = is_device(dst), sd = is_device(src);
  bool want_dd = false, want_sd = false;
  switch (kind) {
    case cudaMemcpyHostToDevice: want_dd = true; break;
    case cudaMemcpyDeviceToHost: want_sd = true; break;
    case cudaMemcpyDeviceToDevice: want_dd = want_sd = true; break;
    case cudaMemcpyHostToHost: break;
    case cudaMemcpyDefault: want_dd = dd; want_sd = sd; break;
    default: return set_error(cudaErrorInvalidValue);
  }
  if (dd != want_dd || sd != want_sd) {
    std::fprintf(stderr, "vae_emu: cudaMemcpy kind %d does not match the pointers (dst %s, src %s)\n", int(kind),
                 dd ? "device" : "host", sd ? "device" : "host");
    return set_error(cudaErrorInvalidValue);
  }
  if (!range_ok(dst, bytes, dd) || !range_ok(src, bytes, sd)) {
    std::fprintf(stderr, "vae_emu: cudaMemcpy of %zu bytes runs past a device allocation\n", bytes);
    return set_error(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
}  // namespace

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (refuse_if_capturing() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  if (cudaError_t e = check_copy(dst, src, bytes, kind); e != cudaSuccess) return e;
  flush_legacy_order();
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (refuse_if_capturing() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  if (!range_ok(dst, bytes, true)) return set_error(cudaErrorInvalidValue);
  flush_legacy_order();
  if (bytes) std::memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (cudaError_t e = check_copy(dst, src, bytes, kind); e != cudaSuccess) return e;
  CUstream_st* s = resolve(stream);
  if (!s) return set_error(cudaErrorInvalidResourceHandle);
  const bool src_pageable = !is_device(src) && !is_pinned(src);
  const bool dst_pageable = !is_device(dst) && !is_pinned(dst);
  if (s->capture && (src_pageable || dst_pageable)) {
    s->capture_broken = true;
    return set_error(cudaErrorStreamCaptureUnsupported);
  }
  if (bytes == 0) return cudaSuccess;
  if (dst_pageable && is_device(src)) {
    // To pageable memory: the call returns when the copy is done.
    flush(s);
    std::memmove(dst, src, bytes);
    return cudaSuccess;
  }
  if (src_pageable) {
    // From pageable memory: staged at the call; the copy runs in stream order.
    auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                               static_cast<const unsigned char*>(src) + bytes);
    return submit(stream, "cudaMemcpyAsync (pageable source)",
                  [dst, staged]() { std::memcpy(dst, staged->data(), staged->size()); });
  }
  return submit(stream, "cudaMemcpyAsync", [dst, src, bytes]() { std::memmove(dst, src, bytes); });
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (!range_ok(dst, bytes, true)) return set_error(cudaErrorInvalidValue);
  if (bytes == 0) return cudaSuccess;
  return submit(stream, "cudaMemsetAsync", [dst, value, bytes]() { std::memset(dst, value, bytes); });
}

// ---- streams and events ----------------------------------------------------------------------
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (!stream) return set_error(cudaErrorInvalidValue);
  auto* s = new CUstream_st;
  s->blocking = (flags & cudaStreamNonBlocking) == 0;
  streams().insert(s);
  *stream = s;
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  CUstream_st* s = resolve(stream);
  if (!s || s == &legacy()) return set_error(cudaErrorInvalidResourceHandle);
  flush(s);  // work already enqueued still completes
  streams().erase(s);
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  CUstream_st* s = resolve(stream);
  if (!s) return set_error(cudaErrorInvalidResourceHandle);
  if (s->capture) {
    s->capture_broken = true;
    return set_error(cudaErrorStreamCaptureUnsupported);
  }
  if (refuse_if_capturing() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  flush(s);
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t stream) { return cudaStreamSynchronize(stream); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (!event) return set_error(cudaErrorInvalidValue);
  auto* e = new CUevent_st;
  e->timing = (flags & cudaEventDisableTiming) == 0;
  *event = e;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!event) return set_error(cudaErrorInvalidResourceHandle);
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event) return set_error(cudaErrorInvalidResourceHandle);
  CUstream_st* s = resolve(stream);
  if (!s) return set_error(cudaErrorInvalidResourceHandle);
  if (s->capture) {
    std::fprintf(stderr, "vae_emu: cudaEventRecord inside a stream capture is not emulated\n");
    s->capture_broken = true;
    return set_error(cudaErrorStreamCaptureUnsupported);
  }
  auto stamp = std::make_shared<std::optional<std::chrono::steady_clock::time_point>>();
  if (cudaError_t err = submit(stream, "cudaEventRecord", [stamp]() { *stamp = std::chrono::steady_clock::now(); });
      err != cudaSuccess)
    return err;
  event->stamp = stamp;
  event->stream = s;
  event->target = s->submitted;
  event->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventRecordWithFlags(cudaEvent_t event, cudaStream_t stream, unsigned int /*flags*/) {
  return cudaEventRecord(event, stream);
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!event) return set_error(cudaErrorInvalidResourceHandle);
  if (refuse_if_capturing() != cudaSuccess) return cudaErrorStreamCaptureUnsupported;
  if (event->recorded && streams().count(event->stream) + (event->stream == &legacy()) > 0)
    flush_to(event->stream, event->target);
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms || !start || !end) return set_error(cudaErrorInvalidValue);
  if (!start->timing || !end->timing) return set_error(cudaErrorInvalidResourceHandle);
  if (!start->recorded || !end->recorded) return set_error(cudaErrorInvalidResourceHandle);
  if (!*start->stamp || !*end->stamp) return set_error(cudaErrorNotReady);
  *ms = std::chrono::duration<float, std::milli>(**end->stamp - **start->stamp).count();
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int /*flags*/) {
  if (!event) return set_error(cudaErrorInvalidResourceHandle);
  CUstream_st* s = resolve(stream);
  if (!s) return set_error(cudaErrorInvalidResourceHandle);
  if (!event->recorded) return cudaSuccess;  // a never-recorded event is complete
  if (s->capture) {
    std::fprintf(stderr, "vae_emu: cudaStreamWaitEvent inside a stream capture is not emulated\n");
    s->capture_broken = true;
    return set_error(cudaErrorStreamCaptureIsolation);
  }
  CUstream_st* other = event->stream;
  const std::uint64_t target = event->target;
  if (other == s) return cudaSuccess;  // stream order already implies it
  return submit(stream, "cudaStreamWaitEvent", [other, target]() {
    if (streams().count(other) || other == &legacy()) flush_to(other, target);
  });
}

// ---- graphs ----------------------------------------------------------------------------------
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  CUstream_st* s = resolve(stream);
  if (!s || s == &legacy()) return set_error(cudaErrorStreamCaptureUnsupported);
  if (s->capture) return set_error(cudaErrorIllegalState);
  s->capture = new CUgraph_st;
  s->capture_broken = false;
  if (mode != cudaStreamCaptureModeRelaxed) g_capturing_thread = true;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  CUstream_st* s = resolve(stream);
  if (!s || !graph) return set_error(cudaErrorInvalidValue);
  if (!s->capture) return set_error(cudaErrorIllegalState);
  CUgraph_st* g = s->capture;
  s->capture = nullptr;
  g_capturing_thread = false;
  for (CUstream_st* o : streams())
    if (o->capture) g_capturing_thread = true;
  if (s->capture_broken) {
    delete g;
    *graph = nullptr;
    return set_error(cudaErrorStreamCaptureInvalidated);
  }
  *graph = g;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long /*flags*/) {
  if (!exec || !graph) return set_error(cudaErrorInvalidValue);
  auto* x = new CUgraphExec_st;
  x->ops = graph->ops;
  *exec = x;
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return set_error(cudaErrorInvalidValue);
  CUstream_st* s = resolve(stream);
  if (!s) return set_error(cudaErrorInvalidResourceHandle);
  if (s->capture) return set_error(cudaErrorStreamCaptureUnsupported);
  return submit(stream, "cudaGraphLaunch", [exec]() {
    for (auto& op : exec->ops) op.second();
  });
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  flush_all();  // launches of it may be pending
  delete exec;
  return cudaSuccess;
}

}  // extern "C"
