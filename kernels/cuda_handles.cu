// How each kind of CUDA object in cuda_handles.cuh is created and destroyed, and the
// cuBLAS handle's configuration.
#include "cuda_check.cuh"
#include "cuda_handles.cuh"

namespace vae::gpu {

void StreamKind::create(cudaStream_t* s) { VAE_CUDA_CHECK(cudaStreamCreateWithFlags(s, cudaStreamNonBlocking)); }
void StreamKind::destroy(cudaStream_t s) noexcept { VAE_CUDA_WARN(cudaStreamDestroy(s)); }

template <bool Timing>
void EventKind<Timing>::create(cudaEvent_t* e) {
  VAE_CUDA_CHECK(cudaEventCreateWithFlags(e, Timing ? cudaEventDefault : cudaEventDisableTiming));
}
template <bool Timing>
void EventKind<Timing>::destroy(cudaEvent_t e) noexcept {
  VAE_CUDA_WARN(cudaEventDestroy(e));
}
template struct EventKind<false>;
template struct EventKind<true>;

void BlasKind::create(cublasHandle_t* h) { VAE_CUBLAS_CHECK(cublasCreate(h)); }
void BlasKind::destroy(cublasHandle_t h) noexcept { VAE_CUBLAS_WARN(cublasDestroy(h)); }

void BlasLtKind::create(cublasLtHandle_t* h) { VAE_CUBLAS_CHECK(cublasLtCreate(h)); }
void BlasLtKind::destroy(cublasLtHandle_t h) noexcept { VAE_CUBLAS_WARN(cublasLtDestroy(h)); }

void PhiloxKind::create(curandGenerator_t* g) {
  VAE_CURAND_CHECK(curandCreateGenerator(g, CURAND_RNG_PSEUDO_PHILOX4_32_10));
}
void PhiloxKind::destroy(curandGenerator_t g) noexcept { VAE_CURAND_WARN(curandDestroyGenerator(g)); }

cublasHandle_t configure_blas(cublasHandle_t h, cudaStream_t stream, void* workspace, std::size_t bytes) {
  VAE_CUBLAS_CHECK(cublasSetStream(h, stream));
  VAE_CUBLAS_CHECK(cublasSetWorkspace(h, workspace, bytes));
  VAE_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));  // no TF32: FP32 results match the CPU
  VAE_CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
  VAE_CUBLAS_CHECK(cublasSetAtomicsMode(h, CUBLAS_ATOMICS_NOT_ALLOWED));  // deterministic
  return h;
}

}  // namespace vae::gpu
