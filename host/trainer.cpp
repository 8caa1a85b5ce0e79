// The trainer: loads data, picks the backend, runs the epoch loop and writes OUT.
#include "vae/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <memory>
#include <new>
#include <ostream>

#include "cpu_model.h"
#include "internal.h"
#include "run_output.h"
#include "vae/backend.h"
#include "vae/batch_stream.h"
#include "vae/checkpoint.h"
#include "vae/data.h"
#include "vae/error.h"
#include "vae/io.h"
#include "vae/layout.h"
#include "vae/pictures.h"
#include "vae/rng.h"
#include "vae/options.h"

namespace fs = std::filesystem;

namespace vae {
namespace {

// Data of a run: both sets read, checked against each other, binarized as configured.
struct RunData {
  std::shared_ptr<Dataset> train;
  Dataset test;
  std::vector<std::uint8_t> test_labels;  // for the latent scatter of a 2-D latent space; may be empty
  std::vector<std::string> class_names;   // the labels' names (Fashion-MNIST's test set), or none
};

// The run's pictures: samples, reconstructions, the ELBO curve, and for a 2-D latent space
// with labels, the scatter of the test set's posterior means. Returns the files written.
std::vector<std::string> write_pictures(const std::string& out, const ModelConfig& model, const TrainConfig& cfg,
                                        Backend& backend, const RunData& data, std::ostream& log) {
  const Dataset& test = data.test;
  std::vector<std::string> files = {"samples.png", "reconstructions.png"};
  write_samples_png(out + "/samples.png", backend, model, 64, test.height, test.width, cfg.seed);
  write_reconstructions_png(out + "/reconstructions.png", backend, model, test, 32);
  if (cfg.epochs > 0) {  // a curve needs at least one epoch
    write_elbo_curve_png(out + "/elbo.png", out + "/metrics.csv");
    files.push_back("elbo.png");
  }
  if (model.latent == 2) {
    if (data.test_labels.empty()) {
      log << "no " << flag_of("test_labels") << ": skipping the latent scatter\n";
    } else {
      write_latent_scatter_png(out + "/latent.png", backend, model, test, data.test_labels, 5000, data.class_names);
      files.push_back("latent.png");
    }
  }
  return files;
}

// A path as an absolute one, so that config.json and the checkpoint name the data wherever
// the tools are run from later.
std::string absolute_path(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

// Reads everything the run needs before it trains, so a bad file fails the run at once:
// the two sets, and with a 2-D latent space the test labels (--test-labels, or
// Fashion-MNIST's beside its default test set), one per test item.
RunData load_data(TrainConfig& cfg, const ModelConfig& model) {
  resolve_run_paths(cfg);
  RunData d;
  d.train = std::make_shared<Dataset>(read_dataset(cfg.train_path));
  d.test = read_dataset(cfg.test_path);
  if (d.test.dim != d.train->dim)
    throw_error(flag_of("test"), " '", cfg.test_path, "' has ", d.test.dim, " features per item but ", flag_of("train"),
                " '", cfg.train_path, "' has ", d.train->dim);
  if (model.latent == 2) {
    std::string labels = cfg.test_labels_path;
    const bool fashion = cfg.test_path.find("fashion-mnist/t10k-images-idx3-ubyte") != std::string::npos;
    if (labels.empty() && fashion) labels = default_fashion_mnist_labels(false);
    if (fashion) d.class_names = fashion_mnist_classes();
    if (!labels.empty()) {
      try {
        d.test_labels = read_idx_labels(labels);
      } catch (const Error& e) {
        throw_error(flag_of("test_labels"), ": ", e.what());
      }
      if (static_cast<std::int64_t>(d.test_labels.size()) != d.test.count)
        throw_error(flag_of("test_labels"), " '", labels, "' holds ", d.test_labels.size(), " labels but ",
                    flag_of("test"), " '", cfg.test_path, "' holds ", d.test.count, " items");
    }
  }
  if (cfg.binarize == Binarize::static_threshold) {
    binarize_static(*d.train);
    binarize_static(d.test);
  } else if (cfg.binarize == Binarize::dynamic) {
    binarize_fixed_draw(d.test, cfg.seed);
  }
  return d;
}

std::atomic<bool> g_stop{false};

// Everything a run starts from: fresh, or from a checkpoint.
struct RunStart {
  ModelConfig model;
  TrainConfig cfg;
  std::string out;
  std::vector<float> params;
  OptimizerState optimizer;  // empty when fresh
  TrainPosition position;
  bool resumed = false;
};

// What the losses are: the negative ELBO only with beta = 1 (and, in training, no KL warm-up
// and the ELBO objective); otherwise recon + beta KL, or the negative IWAE bound.
struct LossLabels {
  std::string train, test;
  LossLabels(const ModelConfig& model, const TrainConfig& cfg) {
    char beta_text[64];
    std::snprintf(beta_text, sizeof beta_text, "recon+%g*KL", model.beta);
    test = model.beta == 1.0 ? "-ELBO" : beta_text;
    train = cfg.objective == Objective::iwae                     ? "-IWAE"
            : model.beta == 1.0 && cfg.kl_warmup_steps == 0 ? "-ELBO"
            : cfg.kl_warmup_steps > 0                        ? "recon+beta_t*KL"
                                                             : beta_text;
  }
};

// A run from its start to its pictures: the backend set up and OUT opened (the constructor),
// then epoch by epoch, each trained, checked, evaluated, reported and checkpointed.
class Run {
 public:
  Run(RunStart s, RunData data, std::ostream& log)
      : s_(std::move(s)), data_(std::move(data)), log_(log), labels_(s_.model, s_.cfg), progress_(log, s_.cfg.progress),
        stream_(data_.train->count, s_.cfg.batch, s_.cfg.seed) {
    if (data_.train->dim != s_.model.input_dim)
      throw_error("the data has ", data_.train->dim, " features per item but the model expects ", s_.model.input_dim);
    std::string note;
    backend_ = make_backend(resolve_device(s_.cfg.device, &note), s_.model, s_.cfg);
    log_ << note << "\n";
    result_.out_dir = s_.out;
    result_.device = backend_->name();
    backend_->set_parameters(s_.params);
    if (s_.resumed) backend_->set_optimizer_state(s_.optimizer);
    backend_->restore_train_sums(s_.position.partial);
    backend_->set_train_data(data_.train);
    open_out();
  }

  TrainResult train() {
    for (int epoch = s_.position.epoch; epoch < s_.cfg.epochs; ++epoch)
      if (!train_epoch(epoch)) return result_;
    if (s_.cfg.epochs <= s_.position.epoch && !s_.resumed) save(s_.position);  // --epochs 0: the initial state
    finish();
    return result_;
  }

 private:
  // OUT's config.json, and metrics.csv started (or, on resume, cut to the checkpoint's epochs).
  void open_out() {
    const std::string& out = s_.out;
    config_json_ = config_to_json(s_.model, s_.cfg, backend_->name());
    const std::string metrics_path = out + "/metrics.csv";
    if (s_.resumed) {
      trim_metrics(metrics_path, s_.position.epoch);
    } else {
      create_out_dir(out);
      write_file_atomic(metrics_path, kCsvHeader);
    }
    write_file_atomic(out + "/config.json", config_json_);  // on resume: the epochs or device may have changed
    csv_.open(metrics_path, std::ios::app);
    if (!csv_) throw_error("cannot write '", metrics_path, "'");
    log_ << (s_.resumed ? "resuming" : "training") << " on " << backend_->name() << ": " << data_.train->count
         << " items of " << s_.model.input_dim << " from " << s_.cfg.train_path << ", " << backend_->layout().total()
         << " parameters, writing to " << out;
    if (s_.resumed) log_ << ", from epoch " << s_.position.epoch + 1 << " batch " << s_.position.batch + 1;
    log_ << "\n";
  }

  void save(const TrainPosition& pos) {
    Checkpoint ck;
    ck.model = s_.model;
    ck.train = s_.cfg;
    ck.params = backend_->parameters();
    ck.optimizer = backend_->optimizer_state();
    ck.position = pos;
    save_checkpoint(s_.out + "/model.safetensors", ck, config_json_);
  }

  // One epoch; false when a stop was requested (a checkpoint then holds the position).
  bool train_epoch(int epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    stream_.start_epoch(epoch);
    if (epoch == s_.position.epoch) stream_.seek(s_.position.batch);
    Batch batch;
    int done = epoch == s_.position.epoch ? s_.position.batch : 0;
    std::int64_t samples = 0;
    while (stream_.next(batch)) {
      backend_->train_step(batch);
      ++done;
      samples += batch.size;
      progress_.update(epoch + 1, s_.cfg.epochs, done, stream_.batches_per_epoch(), seconds(), samples);
      if (g_stop.load() && done < stream_.batches_per_epoch()) {
        interrupt(epoch, done, batch.step + 1);
        return false;
      }
    }
    const LossSums tr = backend_->take_train_sums();  // waits for the device
    const double train_seconds = seconds();
    check_health(epoch);
    const LossSums te = backend_->evaluate(data_.test);
    progress_.clear();
    EpochMetrics m;
    m.epoch = epoch + 1;
    m.train_loss = tr.mean_loss();
    m.test_loss = te.mean_loss();
    m.test_recon = te.mean_recon();
    m.test_kl = te.mean_kl();
    m.seconds = train_seconds;
    m.samples_per_sec = double(samples) / train_seconds;  // the steps this call ran
    report(m);
    return true;
  }

  void interrupt(int epoch, int done, std::int64_t next_step) {
    progress_.clear();
    TrainPosition pos;
    pos.epoch = epoch;
    pos.batch = done;
    pos.step = next_step;
    pos.partial = backend_->take_train_sums();
    save(pos);
    log_ << "interrupted at epoch " << epoch + 1 << ", batch " << done << " of " << stream_.batches_per_epoch()
         << "; the checkpoint is in " << s_.out << "/model.safetensors; continue with: vae train --resume " << s_.out
         << std::endl;
    result_.interrupted = true;
    g_stop = false;
  }

  // Steps dropped for a non-finite loss or gradient: stop (NanPolicy::stop) or say so.
  void check_health(int epoch) {
    const StepHealth health = backend_->health();
    if (health.bad_steps <= reported_bad_steps_) return;
    progress_.clear();
    const std::string what =
        "a non-finite " + std::string(health.first_bad_tensor == "loss" ? "loss" : "gradient of " + health.first_bad_tensor) +
        " at step " + std::to_string(health.first_bad_step) + " (epoch " + std::to_string(epoch + 1) + ")";
    if (health.halted)
      throw_error("training stopped: ", what, "; ", kept_checkpoint(s_.out), "; try a smaller ", flag_of("lr"), ", or ",
                  flag_of("on_nan"), " skip to drop such steps");
    log_ << "skipped " << health.bad_steps - reported_bad_steps_
         << " step(s) with a non-finite loss or gradient; first: " << what << "\n";
    reported_bad_steps_ = health.bad_steps;
  }

  // The epoch's line and metrics.csv row; its checkpoint when one is due.
  void report(const EpochMetrics& m) {
    result_.epochs.push_back(m);
    char line[320];
    std::snprintf(line, sizeof line,
                  "epoch %d/%d  train %s %.4f  test %s %.4f (recon %.4f, KL %.4f)  %.2f s  %.0f samples/s", m.epoch,
                  s_.cfg.epochs, labels_.train.c_str(), m.train_loss, labels_.test.c_str(), m.test_loss, m.test_recon,
                  m.test_kl, m.seconds, m.samples_per_sec);
    log_ << line << std::endl;
    csv_ << csv_row(m) << std::flush;
    if (!std::isfinite(m.train_loss) || !std::isfinite(m.test_loss))
      throw_error("training diverged at epoch ", m.epoch, ": the loss is not finite (train ", m.train_loss, ", test ",
                  m.test_loss, "); ", kept_checkpoint(s_.out), "; try a smaller ", flag_of("lr"));
    if (m.epoch % s_.cfg.checkpoint_every == 0 || m.epoch == s_.cfg.epochs) {
      TrainPosition pos;
      pos.epoch = m.epoch;
      pos.step = static_cast<std::int64_t>(m.epoch) * stream_.batches_per_epoch();
      save(pos);
    }
  }

  void finish() {
    const std::string& out = s_.out;
    const auto pictures = write_pictures(out, s_.model, s_.cfg, *backend_, data_, log_);
    for (const char* stale : {"elbo.png", "latent.png"}) {  // an --overwrite'n earlier run's, this run did not redraw
      std::error_code ignored;
      if (std::find(pictures.begin(), pictures.end(), stale) == pictures.end()) fs::remove(out + "/" + stale, ignored);
    }
    log_ << "wrote " << out << "/{config.json, metrics.csv, model.safetensors";
    for (const auto& p : pictures) log_ << ", " << p;
    log_ << "}\n";
  }

  RunStart s_;
  RunData data_;
  std::ostream& log_;
  LossLabels labels_;
  Progress progress_;
  BatchStream stream_;
  std::unique_ptr<Backend> backend_;
  std::string config_json_;
  std::ofstream csv_;
  TrainResult result_;
  std::int64_t reported_bad_steps_ = 0;
};

TrainResult run(RunStart s, RunData data, std::ostream& log) { return Run(std::move(s), std::move(data), log).train(); }

}  // namespace

void request_stop() { g_stop = true; }

void resolve_run_paths(TrainConfig& cfg) {
  resolve_data_paths(cfg.train_path, cfg.test_path);
  cfg.train_path = absolute_path(cfg.train_path);
  cfg.test_path = absolute_path(cfg.test_path);
  cfg.test_labels_path = absolute_path(cfg.test_labels_path);
}

TrainResult train(ModelConfig model, TrainConfig cfg, std::ostream& log) {
  cfg.validate();
  RunStart s;
  s.out = choose_out_dir(cfg);  // fail early, before loading data
  RunData data = load_data(cfg, model);
  model.input_dim = data.train->dim;
  model.validate();
  cfg.out = s.out;
  s.model = model;
  s.cfg = cfg;
  try {
    s.params = init_parameters(ParamLayout(model), model, cfg.seed);
  } catch (const std::bad_alloc&) {
    throw_out_of_host_memory(model, cfg, "the initial parameters");
  }
  return run(std::move(s), std::move(data), log);
}

TrainResult resume(const std::string& run_path, const ResumeOptions& o, std::ostream& log) {
  // The run's OUT, or its model.safetensors (as every tool's --model takes either).
  std::error_code ec;
  const std::string out_dir =
      fs::is_regular_file(run_path, ec) && fs::path(run_path).filename() == "model.safetensors"
          ? (fs::path(run_path).has_parent_path() ? fs::path(run_path).parent_path().string() : std::string("."))
          : run_path;
  const std::string path = out_dir + "/model.safetensors";
  if (!fs::exists(path)) throw_error("--resume '", out_dir, "': no checkpoint ", path, " (is it the OUT of a vae train run?)");
  Checkpoint ck = load_checkpoint(path);
  RunStart s;
  s.model = ck.model;
  s.cfg = ck.train;
  s.out = out_dir;
  s.cfg.out = out_dir;
  if (o.epochs >= 0) s.cfg.epochs = o.epochs;
  if (o.device_given) s.cfg.device = o.device;
  if (o.threads >= 0) s.cfg.threads = o.threads;
  if (o.checkpoint_every > 0) s.cfg.checkpoint_every = o.checkpoint_every;
  s.cfg.progress = o.progress;
  s.cfg.validate();
  if (ck.position.epoch >= s.cfg.epochs && ck.position.batch == 0)
    throw_error("--resume '", out_dir, "': the run has finished its ", ck.position.epoch,
                " epochs; pass ", flag_of("epochs"), " N with N > ", ck.position.epoch, " to train on");
  s.params = std::move(ck.params);
  s.optimizer = std::move(ck.optimizer);
  s.position = ck.position;
  s.resumed = true;
  RunData data = load_data(s.cfg, s.model);
  return run(std::move(s), std::move(data), log);
}

}  // namespace vae
