// A model being trained, in memory: the backend that holds its parameters and optimizer
// state, its configuration, and where in the data it stands. vae::train() runs one over
// files and writes OUT (trainer.h); the Python layer runs one over arrays. Both take the
// same steps in the same order, so they give the same numbers.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "vae/backend.h"
#include "vae/distributed.h"
#include "vae/batch_stream.h"
#include "vae/checkpoint.h"
#include "vae/config.h"
#include "vae/data.h"
#include "vae/trainer.h"

namespace vae {

// A finished epoch: its metrics, and the steps dropped since the last epoch because their
// loss or gradient was not finite (none, with NanPolicy::stop, unless halted).
struct EpochOutcome {
  EpochMetrics metrics;
  std::int64_t dropped_steps = 0;
  std::string first_dropped;  // "a non-finite gradient of decoder.0.weight at step 12 (epoch 1)"
  bool halted = false;        // NanPolicy::stop: training must stop; metrics are not set
};

class Session {
 public:
  // Fresh parameters (init_parameters at train.seed), on the device train.device resolves to.
  // comm (vae/distributed.h; null: alone): the ranks this session trains one model with,
  // every rank a Session of the same configuration and data, each training its shard of
  // every batch.
  Session(const ModelConfig& model, const TrainConfig& train, Communicator* comm = nullptr);
  // A checkpoint's parameters, optimizer state and position, with train's device, threads,
  // epochs and checkpoint interval (a resumed run may change those; see trainer.h).
  explicit Session(const Checkpoint& ck, Communicator* comm = nullptr);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const ModelConfig& model() const { return model_; }
  const TrainConfig& config() const { return train_; }
  const TrainPosition& position() const { return position_; }
  Backend& backend() { return *backend_; }
  const std::string& device_note() const { return note_; }  // which device was chosen, and why

  // The training set; the backend checks it (Backend::set_train_data). Binarize it first
  // as the configuration says (prepare_data).
  void set_train_data(std::shared_ptr<const Dataset> data);

  // One epoch, from the position on: its steps, then (when it completes) its training
  // sums, the dropped-step report and the loss on `test` (NaN without one). after_step(done, total, samples)
  // runs after every step (done of total batches of the epoch, samples this call) and
  // returns true to stop there: then nothing is returned and the position (with the epoch's
  // loss sums so far) points at the next step, as a checkpoint records it. Data parallel,
  // the ranks stop at the same step when any of them asks.
  using AfterStep = std::function<bool(int done, int total, std::int64_t samples)>;
  std::optional<EpochOutcome> train_epoch(const Dataset* test, const AfterStep& after_step);

  // Everything to continue bit for bit (save_checkpoint writes it).
  Checkpoint checkpoint();

 private:
  void start(std::vector<float> params, const OptimizerState* optimizer);

  ModelConfig model_;
  TrainConfig train_;
  Communicator* comm_ = nullptr;
  std::string note_;
  std::unique_ptr<Backend> backend_;
  std::shared_ptr<const Dataset> data_;
  std::unique_ptr<BatchStream> stream_;
  TrainPosition position_;
  std::int64_t reported_dropped_ = 0;  // the backend's dropped steps already in an outcome
};

// The data as a run trains on it: --binarize static thresholds both sets; dynamic gives the
// test set (when there is one) one fixed draw (the training set gets a fresh draw at every step).
void prepare_data(const TrainConfig& cfg, Dataset& train, Dataset* test);

}  // namespace vae
