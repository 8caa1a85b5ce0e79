// Host-side checks of the deterministic column-sum scratch (see column_sum.cuh).
#include "column_sum.cuh"
#include "cuda_check.cuh"
#include "vae/error.h"
#include "vae/options.h"

namespace vae::gpu {

void check_reduce_scratch(const ReduceScratch& s, int rows, int cols, int nv, bool row_sums, const char* who) {
  if (rows <= 0 || cols <= 0) throw_error(who, ": rows and cols must be positive, got ", rows, " x ", cols);
  if (row_chunks(rows) > 65535)
    throw_error(who, ": ", rows, " rows need ", row_chunks(rows), " row chunks of ", kChunkRows,
                "; the grid allows at most 65535 (reduce ", flag_of("batch"), " or ", flag_of("samples"), ")");
  const std::size_t need = reduce_partial_floats(rows, cols, nv, row_sums);
  if (s.partial == nullptr || s.partial_floats < need)
    throw_error(who, ": reduction scratch holds ", s.partial_floats, " floats, (", rows, " x ", cols, ") needs ", need);
  const std::size_t counters = reduce_counter_count(rows, cols);
  if (s.counters == nullptr || s.counter_count < counters)
    throw_error(who, ": reduction scratch holds ", s.counter_count, " counters, (", rows, " x ", cols, ") needs ",
                counters);
}

ReduceScratchBuffers::ReduceScratchBuffers(std::size_t partial_floats, int rows, int cols, cudaStream_t stream)
    : partial_(partial_floats, "reduction scratch"),
      counters_(reduce_counter_count(rows, cols), "reduction counters"),
      view_{partial_.get(), partial_.size(), counters_.get(), counters_.size()} {
  VAE_CUDA_CHECK(cudaMemsetAsync(counters_.get(), 0, counters_.bytes(), stream));
  VAE_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace vae::gpu
