// Batch gather: the step's rows, picked by index from the dataset on the device (or from a
// streamed chunk with identity indices), to floats in [0,1]: uint8 pixels as x/255 exactly
// as Dataset::row_as computes it, float datasets as they are. With dynamic binarization,
// x = (u <= x) ? 1 : 0 with u the step's uniforms from the `bin` noise block, as the CPU
// backend does. Where the rows are and which indices to take come from the step record,
// so a captured graph gathers a new batch at every replay.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "step_record.cuh"

namespace vae::gpu {

// x (n, D) <- rows[indices[i]] of the record's rows (hdr->rows, uint8 or float by
// hdr->rows_u8). bin_block (nullable): the uniforms of the binarization block; this step's
// slice starts at hdr->bin_offset, (n, D) row-major.
void gather_rows(const StepHeader* hdr, const std::uint32_t* indices, int n, int D, const float* bin_block, float* x,
                 cudaStream_t stream);

}  // namespace vae::gpu
