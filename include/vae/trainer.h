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
  std::vector<EpochMetrics> epochs;  // the epochs this call ran
  bool interrupted = false;          // stopped by request_stop(); OUT holds a checkpoint to resume
};

// Trains and writes OUT/{config.json, metrics.csv, model.safetensors (a complete checkpoint,
// see checkpoint.h), samples.png, reconstructions.png}. Progress goes to `log`.
// model.input_dim is taken from the data. The data are read from cfg.train_path and
// cfg.test_path (an empty one: Fashion-MNIST's set; a train_path of one's own needs a
// test_path too, see resolve_data_paths in data.h). OUT is cfg.out
// (empty: runs/<timestamp>); an OUT that already holds files is refused unless cfg.overwrite.
// Throws vae::Error (bad configuration, unreadable data, a diverged run).
TrainResult train(ModelConfig model, TrainConfig cfg, std::ostream& log);

// Continues the run in OUT from its checkpoint, bit for bit as if it had not stopped.
// Only these may change: the number of epochs (to extend a run), the device, the threads,
// the checkpoint interval and the progress bar.
struct ResumeOptions {
  int epochs = -1;  // -1: as configured
  Device device = Device::automatic;
  bool device_given = false;
  int threads = -1;  // -1: as configured
  int checkpoint_every = -1;
  bool progress = false;
};
TrainResult resume(const std::string& out_dir, const ResumeOptions& options, std::ostream& log);

// The data paths as a run records them in config.json: the default sets filled in
// (resolve_data_paths in data.h), every path absolute. Throws vae::Error as resolve_data_paths.
void resolve_run_paths(TrainConfig& cfg);

// Asks a running train() or resume() to stop after the current step, write a checkpoint
// and return with interrupted = true. Async-signal-safe: call it from a SIGINT handler.
void request_stop();

}  // namespace vae
