// Session: a model being trained, epoch by epoch, in memory.
#include "vae/session.h"

#include <chrono>
#include <cmath>
#include <new>
#include <optional>

#include "internal.h"
#include "vae/batch_stream.h"
#include "vae/error.h"
#include "vae/layout.h"
#include "vae/options.h"

namespace vae {

Session::Session(const ModelConfig& model, const TrainConfig& train, Communicator* comm)
    : model_(model), train_(train), comm_(comm) {
  std::vector<float> params;
  try {
    params = init_parameters(ParamLayout(model_), model_, train_.seed);
  } catch (const std::bad_alloc&) {
    throw_out_of_host_memory(model_, train_, "the initial parameters");
  }
  start(std::move(params), nullptr);
}

Session::Session(const Checkpoint& ck, Communicator* comm)
    : model_(ck.model), train_(ck.train), comm_(comm), position_(ck.position) {
  check_scaling(ck.model, ck.scaling, "Session");
  start(ck.params, &ck.optimizer);
  backend_->set_standardization(ck.scaling);
}

void Session::start(std::vector<float> params, const OptimizerState* optimizer) {
  model_.validate();
  train_.validate();
  check_together(model_, train_);
  Device device = resolve_device(train_.device, &note_);
  if (comm_ && device == Device::cuda && train_.device == Device::automatic) {
    device = Device::cpu;
    note_ = "device: cpu (auto: data-parallel training on GPUs, through NCCL or MPI on host buffers, has run on "
            "the CPU emulator only; " + flag_of("device") + " cuda uses it)";
  }
#if defined(VAE_HAVE_CUDA)
  if (comm_ && device == Device::cuda) use_cuda_device_of_local_rank(local_rank());  // one GPU per local rank
#endif
  backend_ = make_backend(device, model_, train_);
  backend_->set_communicator(comm_);
  backend_->set_parameters(params);
  if (optimizer) backend_->set_optimizer_state(*optimizer);
  backend_->restore_train_sums(position_.partial);
}

void Session::set_train_data(std::shared_ptr<const Dataset> data) {
  if (!data) throw_error("Session::set_train_data: no dataset");
  if (model_.standardize && backend_->standardization().empty()) {  // a fresh model: its units are this set's
    check_data(model_, *data, "training data");
    backend_->set_standardization(Standardization::fit(*data));
  }
  auto stream = std::make_unique<BatchStream>(data->count, train_.batch, train_.seed);
  if (position_.batch > stream->batches_per_epoch())
    throw_error("training data '", data->source, "': the model stopped in the middle of an epoch, after batch ",
                position_.batch, ", but this data has ", stream->batches_per_epoch(), " batches of ", train_.batch,
                ": go on with the data it was trained on to the end of that epoch");
  backend_->set_train_data(data);  // checks it against the model
  stream_ = std::move(stream);
  data_ = std::move(data);
}

std::optional<EpochOutcome> Session::train_epoch(const Dataset* test, const AfterStep& after_step) {
  if (!data_) throw_error("Session::train_epoch: call set_train_data first");
  const int epoch = position_.epoch;
  BatchStream& stream = *stream_;
  stream.start_epoch(epoch);
  stream.seek(position_.batch);
  const auto t0 = std::chrono::steady_clock::now();
  Batch batch;
  std::int64_t samples = 0;
  while (stream.next(batch)) {
    backend_->train_step(comm_ ? shard_of(batch, comm_->rank(), comm_->size()) : batch);
    samples += batch.size;
    ++position_.batch;
    position_.step = batch.step + 1;
    bool stop = after_step && after_step(position_.batch, stream.batches_per_epoch(), samples);
    if (comm_) {  // every rank stops at the step any of them stops at
      double any = stop ? 1 : 0;
      comm_->sum(&any, 1);
      stop = any > 0;
    }
    if (stop && position_.batch < stream.batches_per_epoch()) {
      position_.partial = backend_->take_train_sums();
      backend_->restore_train_sums(position_.partial);  // the sums go on where they were
      return std::nullopt;
    }
  }
  const LossSums tr = backend_->take_train_sums();  // waits for the device
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EpochOutcome out;
  const StepHealth health = backend_->health();
  if (health.bad_steps > reported_dropped_) {
    out.dropped_steps = health.bad_steps - reported_dropped_;
    out.first_dropped = "a non-finite " +
                        std::string(health.first_bad_tensor == "loss" ? "loss" : "gradient of " + health.first_bad_tensor) +
                        " at step " + std::to_string(health.first_bad_step) + " (epoch " + std::to_string(epoch + 1) + ")";
    out.halted = health.halted;
    reported_dropped_ = health.bad_steps;
    if (out.halted) return out;
  }
  EpochMetrics& m = out.metrics;
  m.epoch = epoch + 1;
  m.train_loss = tr.mean_loss() + backend_->standardization().log_jacobian();  // in the data's units, as evaluate
  m.test_loss = m.test_recon = m.test_kl = NAN;
  if (test) {
    const LossSums te = backend_->evaluate(*test);
    m.test_loss = te.mean_loss();
    m.test_recon = te.mean_recon();
    m.test_kl = te.mean_kl();
  }
  m.seconds = seconds;
  m.samples_per_sec = double(samples) / seconds;  // the steps this call ran
  position_ = TrainPosition{};
  position_.epoch = epoch + 1;
  position_.step = static_cast<std::int64_t>(epoch + 1) * stream.batches_per_epoch();
  return out;
}

Checkpoint Session::checkpoint() {
  if (position_.batch > 0) {  // mid-epoch: the epoch's loss sums so far, as the backend holds them
    position_.partial = backend_->take_train_sums();
    backend_->restore_train_sums(position_.partial);
  }
  Checkpoint ck;
  ck.model = model_;
  ck.train = train_;
  ck.params = backend_->parameters();
  ck.optimizer = backend_->optimizer_state();
  ck.position = position_;
  ck.scaling = backend_->standardization();
  return ck;
}

void prepare_data(const TrainConfig& cfg, Dataset& train, Dataset* test) {
  if (cfg.binarize == Binarize::static_threshold) {
    binarize_static(train);
    if (test) binarize_static(*test);
  } else if (cfg.binarize == Binarize::dynamic && test) {
    binarize_fixed_draw(*test, cfg.seed);
  }
}

}  // namespace vae
