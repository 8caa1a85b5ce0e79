// The trainer: data, backend, the epoch loop, metrics.csv, config.json and the checkpoint.
#pragma once
#include <iosfwd>
#include <string>
#include <vector>

#include "vae/config.h"

namespace vae {

struct EpochMetrics {
  int epoch = 0;  // 1-based
  double train_loss = 0, test_loss = 0, test_recon = 0, test_kl = 0;
  double seconds = 0, samples_per_sec = 0;
};

struct TrainResult {
  std::string out_dir;
  std::string device;  // the backend's name
  std::vector<EpochMetrics> epochs;
};

// Trains and writes OUT/{config.json, metrics.csv, model.safetensors, samples.png,
// reconstructions.png}. Progress lines go to `log`. model.input_dim is taken from the data.
TrainResult train(ModelConfig model, TrainConfig cfg, std::ostream& log);

}  // namespace vae
