// The CPU training step allocates nothing: operator new is counted around many steps.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>

#include "vae/vae.h"

namespace {
std::atomic<long> g_allocations{0};
}

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace vae {
namespace {

TEST(Allocation, CpuTrainStepAllocatesNothing) {
  auto data = std::make_shared<Dataset>();
  data->source = "synthetic";
  data->count = 300;
  data->dim = 50;
  data->u8.resize(300 * 50);
  for (std::size_t i = 0; i < data->u8.size(); ++i) data->u8[i] = static_cast<std::uint8_t>(i * 7919 % 256);
  ModelConfig m;
  m.input_dim = 50;
  m.encoder_hidden = {32, 16};
  m.decoder_hidden = {16, 32};
  m.latent = 5;
  m.samples = 2;
  for (Binarize bin : {Binarize::none, Binarize::dynamic}) {
    TrainConfig t;
    t.batch = 32;
    t.binarize = bin;
    const long at_start = g_allocations.load();
    auto backend = make_backend(Device::cpu, m, t);
    ASSERT_GT(g_allocations.load(), at_start) << "the counter must see libvae's allocations";
    backend->set_parameters(init_parameters(backend->layout(), m, 1));
    backend->set_train_data(data);
    BatchStream stream(data->count, t.batch, 1);
    Batch b;
    stream.next(b);
    backend->train_step(b);  // warm-up
    const long before = g_allocations.load();
    for (int epoch = 0; epoch < 3; ++epoch) {
      stream.start_epoch(epoch);
      while (stream.next(b)) backend->train_step(b);
    }
    const long during = g_allocations.load() - before;
    EXPECT_EQ(during, 0) << "allocations in " << 3 * stream.batches_per_epoch() << " training steps";
    EXPECT_TRUE(std::isfinite(backend->take_train_sums().loss));
  }
}

}  // namespace
}  // namespace vae
