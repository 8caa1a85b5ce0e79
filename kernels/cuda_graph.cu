// CudaGraph: capture, instantiation, launch and release of a CUDA graph (cuda_graph.cuh).
#include <utility>

#include "cuda_check.cuh"
#include "cuda_graph.cuh"
#include "vae/error.h"

namespace vae::gpu {

CudaGraph::~CudaGraph() { reset(); }

CudaGraph::CudaGraph(CudaGraph&& o) noexcept
    : graph_(std::exchange(o.graph_, nullptr)), exec_(std::exchange(o.exec_, nullptr)) {}

CudaGraph& CudaGraph::operator=(CudaGraph&& o) noexcept {
  if (this != &o) {
    reset();
    graph_ = std::exchange(o.graph_, nullptr);
    exec_ = std::exchange(o.exec_, nullptr);
  }
  return *this;
}

void CudaGraph::reset() noexcept {
  if (exec_) VAE_CUDA_WARN(cudaGraphExecDestroy(exec_));
  if (graph_) VAE_CUDA_WARN(cudaGraphDestroy(graph_));
  exec_ = nullptr;
  graph_ = nullptr;
}

void CudaGraph::begin_capture(cudaStream_t stream) {
  reset();
  VAE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
}

void CudaGraph::abandon_capture(cudaStream_t stream) noexcept {
  cudaGraph_t graph = nullptr;
  VAE_CUDA_WARN(cudaStreamEndCapture(stream, &graph));
  if (graph) VAE_CUDA_WARN(cudaGraphDestroy(graph));
}

void CudaGraph::end_capture(cudaStream_t stream) {
  cudaGraph_t graph = nullptr;
  VAE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  if (status != cudaSuccess) VAE_CUDA_WARN(cudaGraphDestroy(graph));
  VAE_CUDA_CHECK(status);
  graph_ = graph;
  exec_ = exec;
}

void CudaGraph::launch(cudaStream_t stream) const {
  if (!exec_) throw_error("CudaGraph::launch: no graph captured");
  VAE_CUDA_CHECK(cudaGraphLaunch(exec_, stream));
}

}  // namespace vae::gpu
