// A CUDA graph of what a function enqueues on a stream: captured once (stream capture in
// thread-local mode: nothing runs while it is recorded), instantiated, then launched as
// often as wanted. It owns the graph and its executable; moves, never copies.
#pragma once
#include <cuda_runtime_api.h>

namespace vae::gpu {

class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(CudaGraph&& o) noexcept;
  CudaGraph& operator=(CudaGraph&& o) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Records what enqueue() puts on `stream` and instantiates it, in place of any graph held.
  // If enqueue throws, the capture is ended and dropped and the exception goes on; the
  // graph is then empty.
  template <class F>
  void capture(cudaStream_t stream, F&& enqueue) {
    begin_capture(stream);
    try {
      enqueue();
    } catch (...) {
      abandon_capture(stream);
      throw;
    }
    end_capture(stream);
  }
  void launch(cudaStream_t stream) const;  // one replay on `stream`; vae::Error when empty
  bool empty() const { return exec_ == nullptr; }

 private:
  void begin_capture(cudaStream_t stream);
  void end_capture(cudaStream_t stream);               // and instantiate
  void abandon_capture(cudaStream_t stream) noexcept;  // end the capture, drop what it recorded
  void reset() noexcept;

  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace vae::gpu
