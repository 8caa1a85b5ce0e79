// Force-included (-include) into every CUDA source of the emulated build: the CUDA
// language's keywords, built-in variables and the device intrinsics our kernels use,
// mapped onto the CPU emulator (emu.h). Nothing here is used by the real CUDA build.
//
// Mapping:
//   __global__/__device__/__host__/__constant__  -> nothing (plain C++ functions/objects)
//   __shared__                                    -> static: one copy, shared by the fibers
//                                                    of a block (blocks run one at a time)
//   threadIdx/blockIdx/blockDim/gridDim           -> the emulator's current fiber's values
//   __syncthreads, __shfl_xor_sync                -> block / warp barriers of the scheduler
//   atomics, __threadfence, __ldcg                -> plain operations (fibers are cooperative)
//   kernel<<<grid, block, shmem, stream>>>(args)  -> rewritten by translate.py into
//                                                    vae_emu::launcher(kernel, grid, ...)(args)
#pragma once
#define VAE_CUDA_EMU 1
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)

#include <cuda_runtime.h>  // its host-side templates (cudaMalloc(T**), ...) too
#include <math.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "emu.h"

#define threadIdx (::vae_emu::cur_thread_idx())
#define blockIdx (::vae_emu::cur_block_idx())
#define blockDim (::vae_emu::cur_block_dim())
#define gridDim (::vae_emu::cur_grid_dim())

inline void __syncthreads() { ::vae_emu::sync_block(); }
inline void __threadfence() {}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::vae_emu::shfl_xor(mask, v, lane_mask, width);
}
template <class T>
inline T __ldcg(const T* p) {
  return *p;
}
// Integer atomics (the project has no float atomics); the value converts to *p's type, as
// with CUDA's overloads.
template <class T>
using vae_emu_integral = std::enable_if_t<std::is_integral<T>::value, T>;
template <class T>
inline T atomicAdd(T* p, vae_emu_integral<T> v) {
  const T old = *p;
  *p = old + v;
  return old;
}
template <class T>
inline T atomicMin(T* p, vae_emu_integral<T> v) {
  const T old = *p;
  if (v < old) *p = v;
  return old;
}
template <class T>
inline T atomicExch(T* p, vae_emu_integral<T> v) {
  const T old = *p;
  *p = v;
  return old;
}
// Device-side min/max overloads of the CUDA math library.
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// cuda_runtime.h declares this template for nvcc only.
template <class T>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, T* entry) {
  return cudaFuncGetAttributes(attr, reinterpret_cast<const void*>(entry));
}

// cuRAND's device generators, emulated by its host generators (rand.cpp); the host
// generators themselves (curandCreateGeneratorHost) stay cuRAND's own.
#include <curand.h>
extern "C" {
curandStatus_t vae_emu_curandCreateGenerator(curandGenerator_t*, curandRngType_t);
curandStatus_t vae_emu_curandDestroyGenerator(curandGenerator_t);
curandStatus_t vae_emu_curandSetPseudoRandomGeneratorSeed(curandGenerator_t, unsigned long long);
curandStatus_t vae_emu_curandSetGeneratorOffset(curandGenerator_t, unsigned long long);
curandStatus_t vae_emu_curandSetStream(curandGenerator_t, cudaStream_t);
curandStatus_t vae_emu_curandGenerateNormal(curandGenerator_t, float*, size_t, float, float);
curandStatus_t vae_emu_curandGenerateUniform(curandGenerator_t, float*, size_t);
}
#define curandCreateGenerator vae_emu_curandCreateGenerator
#define curandDestroyGenerator vae_emu_curandDestroyGenerator
#define curandSetPseudoRandomGeneratorSeed vae_emu_curandSetPseudoRandomGeneratorSeed
#define curandSetGeneratorOffset vae_emu_curandSetGeneratorOffset
#define curandSetStream vae_emu_curandSetStream
#define curandGenerateNormal vae_emu_curandGenerateNormal
#define curandGenerateUniform vae_emu_curandGenerateUniform
