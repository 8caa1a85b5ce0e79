// Trains a few steps through libvae's public API on synthetic data and checks that the
// loss went down. Exits non-zero if it did not.
#include <vae/vae.h>

#include <cmath>
#include <cstdio>
#include <memory>

int main() {
  // 256 items of 64 pixels: two stripes patterns.
  auto data = std::make_shared<vae::Dataset>();
  data->source = "synthetic stripes";
  data->count = 256;
  data->dim = 64;
  data->height = data->width = 8;
  data->u8.resize(256 * 64);
  for (int i = 0; i < 256; ++i)
    for (int p = 0; p < 64; ++p) data->u8[i * 64 + p] = ((i % 2 ? p / 8 : p % 8) % 2) ? 240 : 10;

  vae::ModelConfig model;
  model.input_dim = 64;
  model.encoder_hidden = {32};
  model.decoder_hidden = {32};
  model.latent = 2;
  vae::TrainConfig train;
  train.batch = 32;
  train.optimizer.lr = 3e-3;
  train.eval_batch = 256;

  std::string note;
  const vae::Device device = vae::resolve_device(vae::Device::automatic, &note);
  std::printf("%s\n", note.c_str());
  auto backend = vae::make_backend(device, model, train);
  backend->set_parameters(vae::init_parameters(backend->layout(), model, train.seed));
  backend->set_train_data(data);
  const double before = backend->evaluate(*data).mean_loss();
  vae::BatchStream stream(data->count, train.batch, train.seed);
  for (int epoch = 0; epoch < 10; ++epoch) {
    stream.start_epoch(epoch);
    vae::Batch b;
    while (stream.next(b)) backend->train_step(b);
  }
  const double after = backend->evaluate(*data).mean_loss();
  std::printf("%s: test -ELBO %.3f -> %.3f after %d steps\n", backend->name().c_str(), before, after,
              10 * stream.batches_per_epoch());
  return std::isfinite(after) && after < before ? 0 : 1;
}
