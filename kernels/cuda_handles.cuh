// Owners of CUDA objects, one template for every kind: the runtime's streams and events and
// the libraries' handles (cuBLAS, cuBLASLt, cuRAND generators). A Handle creates its object
// in its constructor (a failure throws vae::Error naming the call) and destroys it in its
// destructor (a failure only prints); it moves, never copies. Plain C++: no nvcc needed.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <curand.h>

#include <cstddef>
#include <utility>

namespace vae::gpu {

// Kind: struct { using Type = <a pointer-like handle>; static void create(Type*);
//                static void destroy(Type) noexcept; }
template <class Kind>
class Handle {
 public:
  using Type = typename Kind::Type;

  Handle() { Kind::create(&h_); }
  ~Handle() { release(); }
  Handle(Handle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      release();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  Type get() const { return h_; }

 private:
  void release() noexcept {
    if (h_) Kind::destroy(h_);
  }
  Type h_ = nullptr;
};

// The kinds: what each is, and the flags or generator type it is created with.
struct StreamKind {  // a non-blocking stream (no implicit sync with the legacy default stream)
  using Type = cudaStream_t;
  static void create(Type* s);
  static void destroy(Type s) noexcept;
};
template <bool Timing>
struct EventKind {  // Timing: cudaEventElapsedTime can read it; else for ordering only
  using Type = cudaEvent_t;
  static void create(Type* e);
  static void destroy(Type e) noexcept;
};
struct BlasKind {
  using Type = cublasHandle_t;
  static void create(Type* h);
  static void destroy(Type h) noexcept;
};
struct BlasLtKind {
  using Type = cublasLtHandle_t;
  static void create(Type* h);
  static void destroy(Type h) noexcept;
};
struct PhiloxKind {  // cuRAND's device Philox4x32-10 generator
  using Type = curandGenerator_t;
  static void create(Type* g);
  static void destroy(Type g) noexcept;
};

using Stream = Handle<StreamKind>;
using Event = Handle<EventKind<false>>;
using TimingEvent = Handle<EventKind<true>>;
using BlasHandle = Handle<BlasKind>;
using BlasLtHandle = Handle<BlasLtKind>;
using PhiloxGenerator = Handle<PhiloxKind>;

// Binds a cuBLAS handle to `stream` with a fixed workspace, FP32 without TF32 (so results
// match the CPU's), host pointer mode and no atomics (deterministic); returns it.
cublasHandle_t configure_blas(cublasHandle_t h, cudaStream_t stream, void* workspace, std::size_t bytes);

}  // namespace vae::gpu
