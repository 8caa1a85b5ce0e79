// The CPU emulator's cuRAND device generators: a generator from curandCreateGenerator is
// cuRAND's own host generator of the same type (which draws the same numbers, per cuRAND's
// documentation), and its generate calls run in order on the stream it was given. The
// offset and seed a call uses are those set before it was enqueued, as with a device
// generator. The prelude renames the calls of the translated sources to these.
#include <curand.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "emu.h"

namespace {
// cuRAND's host generator, destroyed when the last reference goes.
using HostGenerator = std::shared_ptr<std::remove_pointer_t<curandGenerator_t>>;

struct EmuGenerator {
  // Shared with the generate calls still queued, so that destroying the generator before
  // they run is harmless, as it is with cuRAND.
  HostGenerator host;
  cudaStream_t stream = nullptr;
  // Set since the last generate call: the host generator takes them, in stream order,
  // just before the next one runs.
  std::optional<unsigned long long> seed, offset;
};
EmuGenerator* emu(curandGenerator_t g) { return reinterpret_cast<EmuGenerator*>(g); }

template <class Gen>
curandStatus_t enqueue(curandGenerator_t g, Gen gen) {
  if (!g) return CURAND_STATUS_NOT_INITIALIZED;
  EmuGenerator* e = emu(g);
  // Later calls continue the sequence, as on the device.
  const std::optional<unsigned long long> seed = std::exchange(e->seed, std::nullopt);
  const std::optional<unsigned long long> offset = std::exchange(e->offset, std::nullopt);
  const bool ok = vae_emu::submit_host_op(e->stream, "curandGenerate", [host = e->host, seed, offset, gen]() {
    if (seed && curandSetPseudoRandomGeneratorSeed(host.get(), *seed) != CURAND_STATUS_SUCCESS)
      std::fprintf(stderr, "vae_emu: curandSetPseudoRandomGeneratorSeed failed\n");
    if (offset && curandSetGeneratorOffset(host.get(), *offset) != CURAND_STATUS_SUCCESS)
      std::fprintf(stderr, "vae_emu: curandSetGeneratorOffset failed\n");
    if (gen(host.get()) != CURAND_STATUS_SUCCESS) std::fprintf(stderr, "vae_emu: curandGenerate failed\n");
  });
  return ok ? CURAND_STATUS_SUCCESS : CURAND_STATUS_LAUNCH_FAILURE;
}
}  // namespace

extern "C" {
curandStatus_t vae_emu_curandCreateGenerator(curandGenerator_t* g, curandRngType_t type) {
  if (!g) return CURAND_STATUS_NOT_INITIALIZED;
  curandGenerator_t host = nullptr;
  const curandStatus_t s = curandCreateGeneratorHost(&host, type);
  if (s != CURAND_STATUS_SUCCESS) return s;
  auto e = std::make_unique<EmuGenerator>();
  e->host = HostGenerator(host, [](curandGenerator_t h) {
    if (curandDestroyGenerator(h) != CURAND_STATUS_SUCCESS) std::fprintf(stderr, "vae_emu: curandDestroyGenerator failed\n");
  });
  *g = reinterpret_cast<curandGenerator_t>(e.release());
  return CURAND_STATUS_SUCCESS;
}
curandStatus_t vae_emu_curandDestroyGenerator(curandGenerator_t g) {
  if (!g) return CURAND_STATUS_NOT_INITIALIZED;
  delete emu(g);
  return CURAND_STATUS_SUCCESS;
}
curandStatus_t vae_emu_curandSetPseudoRandomGeneratorSeed(curandGenerator_t g, unsigned long long seed) {
  if (!g) return CURAND_STATUS_NOT_INITIALIZED;
  emu(g)->seed = seed;
  return CURAND_STATUS_SUCCESS;
}
curandStatus_t vae_emu_curandSetGeneratorOffset(curandGenerator_t g, unsigned long long offset) {
  if (!g) return CURAND_STATUS_NOT_INITIALIZED;
  emu(g)->offset = offset;
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
