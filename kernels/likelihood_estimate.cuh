// Backend::estimate_log_likelihood on the device, as the CPU backend computes it. Data point
// i's k samples from q(z|x) and from p(z) sit at offset i * RngPlan::iw_stride(model, k) of
// the iw_q / iw_prior streams, drawn by device cuRAND generators (a NoiseBlock whose "step"
// is the data point, so a group of data points is one cuRAND call). Per group of data
// points (as many as fit 8192 sample rows and 4 M noise values per stream, at most
// max_batch) the rows are uploaded and gathered, then chunks of at most kIwChunk samples per
// data point run through a model of the estimate's own, sized for them (the parameters
// copied in): the forward pass for samples from q, the decoder only for samples from the
// prior. A running log-sum-exp per data point in double adds each chunk's samples in order
// and one thread adds the data points in order into the sums (importance.cuh):
// deterministic. Training state is not touched.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "cuda_model.cuh"
#include "record_ring.cuh"
#include "vae/backend.h"

namespace vae::gpu {

class LikelihoodEstimate {
 public:
  // Nothing is allocated before the first run. blas: bound to `stream`; lt: nullable.
  LikelihoodEstimate(const ModelConfig& model, std::uint64_t seed, int max_batch, cudaStream_t stream,
                     cublasHandle_t blas, LtBiasRelu* lt);
  ~LikelihoodEstimate();
  LikelihoodEstimate(const LikelihoodEstimate&) = delete;
  LikelihoodEstimate& operator=(const LikelihoodEstimate&) = delete;

  // The estimates with k >= 1 samples at the parameters of `trained`, over `data` (checked
  // by the caller); rows go through the device record of `ring`.
  LikelihoodSums run(const CudaModel& trained, const Dataset& data, int k, RecordRing& ring);

 private:
  struct Workspace;
  Workspace& workspace(int n_max, int chunk, std::size_t stride);  // kept while the sizes stay

  ModelConfig model_;
  std::uint64_t seed_;
  int max_batch_;
  cudaStream_t stream_;
  cublasHandle_t blas_;
  LtBiasRelu* lt_;
  std::unique_ptr<Workspace> w_;
};

}  // namespace vae::gpu
