// Deterministic column (and row) sums without float atomics, shared by the fused backward
// kernels (activation backward + bias gradient, latent backward + head-bias gradient,
// likelihood + output-bias / log-variance gradients).
//
// Grid: (column tiles of kTileCols, row chunks of kChunkRows); block (kTileCols, kLanes).
// Thread (tx, ty) of block (bx, by) owns column bx*kTileCols + tx and rows
// by*kChunkRows + ty + kLanes*k, k = 0..kChunkRows/kLanes-1, summed in that order. The
// block adds its kLanes lanes in order into partial[v][by][col]; then the last block of
// the column tile (an integer ticket, atomicAdd on an unsigned counter, no float atomics)
// adds the chunks' partials in a fixed order and writes the column sum. The order of
// every addition depends only on (rows, cols), never on which block finished last, so the
// same inputs give the same bits. The counters are reset to zero by the block that
// finishes, ready for the next launch (and for graph replays).
//
// The host part (scratch sizes, checks) is plain C++; the device part needs nvcc.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "device_memory.cuh"

namespace vae::gpu {

constexpr int kTileCols = 32;   // columns per block: blockDim.x, one warp per lane
constexpr int kLanes = 8;       // blockDim.y
constexpr int kChunkRows = 32;  // rows per block
static_assert(kChunkRows % kLanes == 0, "each lane owns the same number of rows");

// Scratch of one reduction launch: kernels run one after another on a stream, so every
// fused kernel of a model shares one scratch.
struct ReduceScratch {
  float* partial = nullptr;  // partial sums
  std::size_t partial_floats = 0;
  unsigned* counters = nullptr;  // zero between launches
  std::size_t counter_count = 0;
};

inline int column_tiles(int cols) { return (cols + kTileCols - 1) / kTileCols; }
inline int row_chunks(int rows) { return (rows + kChunkRows - 1) / kChunkRows; }
// Floats of scratch a launch over (rows, cols) needs for nv column sums, plus row sums.
inline std::size_t reduce_partial_floats(int rows, int cols, int nv, bool row_sums) {
  return static_cast<std::size_t>(nv) * static_cast<std::size_t>(row_chunks(rows)) * static_cast<std::size_t>(cols) +
         (row_sums ? static_cast<std::size_t>(rows) * static_cast<std::size_t>(column_tiles(cols)) : 0);
}
inline std::size_t reduce_counter_count(int rows, int cols) {
  return static_cast<std::size_t>(column_tiles(cols)) + static_cast<std::size_t>(row_chunks(rows));
}
// Throws vae::Error naming `who` when the scratch is too small or the grid too tall.
void check_reduce_scratch(const ReduceScratch& s, int rows, int cols, int nv, bool row_sums, const char* who);

// Owns the memory of a ReduceScratch: `partial_floats` floats of partial sums and the
// counters of launches over up to (rows, cols), zeroed on `stream` before the constructor
// returns (the host waits, so work on any stream sees them zero).
class ReduceScratchBuffers {
 public:
  ReduceScratchBuffers() = default;
  ReduceScratchBuffers(std::size_t partial_floats, int rows, int cols, cudaStream_t stream);
  const ReduceScratch& view() const { return view_; }

 private:
  DeviceBuffer<float> partial_;
  DeviceBuffer<unsigned> counters_;  // tickets, zero between launches
  ReduceScratch view_;
};

#if defined(__CUDACC__) || defined(VAE_CUDA_EMU)  // nvcc, or the CPU emulator (tests/emu)

// Every thread of the block calls this; true in every thread of the block that took the
// last of `expected` tickets from *counter (and that block resets the counter).
__device__ __forceinline__ bool last_block_ticket(unsigned* counter, unsigned expected) {
  __shared__ bool last;
  __threadfence();  // this thread's partial sums are visible before the ticket is taken
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    const unsigned ticket = atomicAdd(counter, 1u);
    last = ticket == expected - 1;
    if (last) *counter = 0;  // every other block has taken its ticket already
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

// Every thread of the block passes its NV values; for each column of the tile, thread
// (tx, 0) gets the sum over the kLanes lanes in lane order and stores it with
// store(v, col, sum). Every thread must call it. (The callers run it at most twice per
// block, with __syncthreads in between, so they may share the one shared array.)
template <int NV, class Store>
__device__ __forceinline__ void sum_lanes(const float (&mine)[NV], int cols, Store store) {
  __shared__ float lanes[NV][kLanes][kTileCols];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int col = blockIdx.x * kTileCols + tx;
#pragma unroll
  for (int v = 0; v < NV; ++v) lanes[v][ty][tx] = mine[v];
  __syncthreads();
  if (ty == 0 && col < cols) {
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      float s = lanes[v][0][tx];
#pragma unroll
      for (int k = 1; k < kLanes; ++k) s += lanes[v][k][tx];
      store(v, col, s);
    }
  }
}

// Block partial of NV column sums: acc[v] is this thread's sum over its lane's rows.
// Writes partial[(v*nchunks + blockIdx.y)*cols + col]. Every thread must call it.
template <int NV>
__device__ __forceinline__ void write_column_partials(const float (&acc)[NV], int cols, float* partial) {
  sum_lanes<NV>(acc, cols, [&](int v, int col, float sum) {
    partial[(static_cast<std::size_t>(v) * gridDim.y + blockIdx.y) * cols + col] = sum;
  });
}

// In the last block of a column tile: out[v][col] = sum over chunks, in chunk order
// (lane ty adds chunks ty, ty+kLanes, ...; then lanes 0..kLanes-1 in order).
template <int NV>
__device__ __forceinline__ void finish_column_sums(int cols, const float* partial, float* const* out) {
  const int col = blockIdx.x * kTileCols + static_cast<int>(threadIdx.x);
  const int nchunks = static_cast<int>(gridDim.y);
  float mine[NV];
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    mine[v] = 0.0f;
    if (col < cols)
      for (int k = threadIdx.y; k < nchunks; k += kLanes)
        mine[v] += __ldcg(partial + (static_cast<std::size_t>(v) * nchunks + k) * cols + col);
  }
  sum_lanes<NV>(mine, cols, [&](int v, int c, float sum) { out[v][c] = sum; });
}

// Sum over the 32 lanes of a warp in a fixed butterfly order; every lane gets the total.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

#endif  // __CUDACC__ || VAE_CUDA_EMU

}  // namespace vae::gpu
