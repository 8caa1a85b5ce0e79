// The CPU emulator of the CUDA subset the kernels use: what the prelude and translated
// sources call. Kernels run block after block; the threads of a block run as fibers on
// one OS thread, each until it reaches a barrier (__syncthreads, or a warp shuffle, which
// waits for its warp), in an order set by VAE_EMU_ORDER (forward, reverse or shuffle:
// a missing barrier then gives different results from one order to another).
// Stream work is deferred until the host waits for it (see runtime.cpp), so a missing
// synchronization shows up as stale data instead of passing by luck.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace vae_emu {

const uint3& cur_thread_idx();
const uint3& cur_block_idx();
const dim3& cur_block_dim();
const dim3& cur_grid_dim();

void sync_block();
// Warp exchange of up to 8 bytes: every live lane of the warp deposits `bits`, waits for
// the others, and gets the bits of lane (lane ^ lane_mask).
unsigned long long exchange_xor(unsigned long long bits, int lane_mask, int width);

template <class T>
T shfl_xor(unsigned /*mask*/, T v, int lane_mask, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of up to 8 bytes");
  unsigned long long bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = exchange_xor(bits, lane_mask, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

// Enqueues a kernel launch on `stream` (or records it into the stream's capture). Checks
// the configuration as CUDA does and sets the error cudaGetLastError returns.
void submit_kernel(const char* name, dim3 grid, dim3 block, std::size_t shmem, cudaStream_t stream,
                   std::function<void()> body);

template <class... P>
struct Launcher {
  void (*kernel)(P...);
  const char* name;
  dim3 grid, block;
  std::size_t shmem;
  cudaStream_t stream;
  template <class... A>
  void operator()(A&&... args) const {
    // The arguments are converted to the parameter types and copied at launch, as CUDA does.
    std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
    auto k = kernel;
    submit_kernel(name, grid, block, shmem, stream, [k, params]() { std::apply(k, params); });
  }
};

template <class... P>
Launcher<P...> launcher(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, std::size_t shmem = 0,
                        cudaStream_t stream = nullptr) {
  return Launcher<P...>{kernel, name, grid, block, shmem, stream};
}

// The name and message of a status the emulator returns (cudaError_t, cublasStatus_t).
template <class Code>
struct CodeText {
  Code code;
  const char* name;
  const char* text;
};
// The entry of `table` for `code`, or null.
template <class Code, std::size_t N>
const CodeText<Code>* find_code(const CodeText<Code> (&table)[N], Code code) {
  for (const CodeText<Code>& x : table)
    if (x.code == code) return &x;
  return nullptr;
}

// Stream-ordered host work (cuBLAS, cuRAND): runs when the stream reaches it, or is
// recorded into the stream's capture. Returns false if the stream is invalid.
bool submit_host_op(cudaStream_t stream, const char* what, std::function<void()> op);
// Whether `p` lies in memory from cudaHostAlloc.
bool is_pinned(const void* p);
// Whether `stream` is being captured into a graph (cudaStreamBeginCapture).
bool is_capturing(cudaStream_t stream);

}  // namespace vae_emu
