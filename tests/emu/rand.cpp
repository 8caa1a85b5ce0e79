// The CPU emulator's cuRAND device generators: a generator from curandCreateGenerator is
// cuRAND's own host generator of the same type (which draws the same numbers, per cuRAND's
// documentation), and its generate calls run in order on the stream it was given. The
// offset and seed a call uses are those set when it was enqueued, as with a device
// generator. The prelude renames the calls of the translated sources to these.
#include <curand.h>

#include <cstdint>
#include <cstdio>
#include <memory>

#include "emu.h"

namespace {
struct EmuGenerator {
  curandGenerator_t host = nullptr;
  cudaStream_t stream = nullptr;
  unsigned long long offset = 0;
  bool offset_set = false;
};
EmuGenerator* emu(curandGenerator_t g) { return reinterpret_cast<EmuGenerator*>(g); }

template <class Gen>
curandStatus_t enqueue(curandGenerator_t g, Gen gen) {
  if (!g) return CURAND_STATUS_NOT_INITIALIZED;
  EmuGenerator* e = emu(g);
  const bool set = e->offset_set;
  const unsigned long long offset = e->offset;
  e->offset_set = false;  // later calls continue the sequence, as on the device
  curandGenerator_t host = e->host;
  const bool ok = vae_emu::submit_host_op(e->stream, "curandGenerate", [host, set, offset, gen]() {
    if (set && curandSetGeneratorOffset(host, offset) != CURAND_STATUS_SUCCESS)
      std::fprintf(stderr, "vae_emu: curandSetGeneratorOffset failed\n");
    if (gen(host) != CURAND_STATUS_SUCCESS) std::fprintf(stderr, "vae_emu: curandGenerate failed\n");
  });
  return ok ? CURAND_STATUS_SUCCESS : CURAND_STATUS_LAUNCH_FAILURE;
}
}  // namespace

extern "C" {
curandStatus_t vae_emu_curandCreateGenerator(curandGenerator_t* g, curandRngType_t type) {
  if (!g) return CURAND_STATUS_NOT_INITIALIZED;
  auto e = std::make_unique<EmuGenerator>();
  const curandStatus_t s = curandCreateGeneratorHost(&e->host, type);
  if (s != CURAND_STATUS_SUCCESS) return s;
  *g = reinterpret_cast<curandGenerator_t>(e.release());
  return CURAND_STATUS_SUCCESS;
}
curandStatus_t vae_emu_curandDestroyGenerator(curandGenerator_t g) {
  if (!g) return CURAND_STATUS_NOT_INITIALIZED;
  EmuGenerator* e = emu(g);
  const curandStatus_t s = curandDestroyGenerator(e->host);
  delete e;
  return s;
}
curandStatus_t vae_emu_curandSetPseudoRandomGeneratorSeed(curandGenerator_t g, unsigned long long seed) {
  if (!g) return CURAND_STATUS_NOT_INITIALIZED;
  return curandSetPseudoRandomGeneratorSeed(emu(g)->host, seed);
}
curandStatus_t vae_emu_curandSetGeneratorOffset(curandGenerator_t g, unsigned long long offset) {
  if (!g) return CURAND_STATUS_NOT_INITIALIZED;
  emu(g)->offset = offset;
  emu(g)->offset_set = true;
  return CURAND_STATUS_SUCCESS;
}
curandStatus_t vae_emu_curandSetStream(curandGenerator_t g, cudaStream_t stream) {
  if (!g) return CURAND_STATUS_NOT_INITIALIZED;
  emu(g)->stream = stream;
  return CURAND_STATUS_SUCCESS;
}
curandStatus_t vae_emu_curandGenerateNormal(curandGenerator_t g, float* out, size_t n, float mean, float stddev) {
  if (n % 2 != 0) return CURAND_STATUS_LENGTH_NOT_MULTIPLE;
  return enqueue(g, [out, n, mean, stddev](curandGenerator_t h) { return curandGenerateNormal(h, out, n, mean, stddev); });
}
curandStatus_t vae_emu_curandGenerateUniform(curandGenerator_t g, float* out, size_t n) {
  return enqueue(g, [out, n](curandGenerator_t h) { return curandGenerateUniform(h, out, n); });
}
}
