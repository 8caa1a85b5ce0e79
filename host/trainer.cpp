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
#include "rng.h"
#include "run_output.h"
#include "vae/session.h"
#include "vae/backend.h"
#include "vae/batch_stream.h"
#include "vae/checkpoint.h"
#include "vae/data.h"
#include "vae/error.h"
#include "vae/io.h"
#include "vae/layout.h"
#include "vae/pictures.h"
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
  std::vector<std::string> files;
  if (const std::string why = why_no_pictures(model); !why.empty()) {
    log << "samples.png, reconstructions.png: " << why << "\n";
  } else {
    if (model.condition == ConditionKind::classes) {  // a row of each class
      const int per_class = std::max(1, std::min(8, 4096 / model.condition_dim));
      const Condition grid = class_grid_condition(model, per_class);
      const int n = static_cast<int>(std::min<std::int64_t>(grid.count(), 4096));
      write_samples_png(out + "/samples.png", backend, model, n, test.height, test.width, cfg.seed, grid.rows(0, n),
                        per_class);
    } else if (model.condition == ConditionKind::covariates) {  // the first test items' covariates
      const int n = static_cast<int>(std::min<std::int64_t>(64, test.count));
      write_samples_png(out + "/samples.png", backend, model, n, test.height, test.width, cfg.seed,
                        test.condition.rows(0, n));
    } else {
      write_samples_png(out + "/samples.png", backend, model, 64, test.height, test.width, cfg.seed);
    }
    write_reconstructions_png(out + "/reconstructions.png", backend, model, test, 32);
    files = {"samples.png", "reconstructions.png"};
  }
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
  // --mmap: raw files mapped, a .gz read whole (it cannot be mapped)
  const auto access = [&](const std::string& path) {
    return cfg.mmap && !is_gzip(path) ? DataAccess::map : DataAccess::automatic;
  };
  d.train = std::make_shared<Dataset>(read_dataset(cfg.train_path, access(cfg.train_path)));
  d.test = read_dataset(cfg.test_path, access(cfg.test_path));
  // The values, each file once (each rank reads its share): finite, and what the likelihood
  // needs of them unless static binarization replaces them with 0 and 1.
  const ValueRule rule = cfg.binarize == Binarize::static_threshold ? ValueRule::finite : value_rule(model);
  check_data_values(model, *d.train, rule, world());
  check_data_values(model, d.test, rule, world());
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
  if (!cfg.condition_path.empty()) {  // resolve_run_paths named both files
    // A resumed or loaded model keeps its classes; a new one takes --condition-classes (0: from the labels).
    const int classes = model.condition == ConditionKind::classes ? model.condition_dim : cfg.condition_classes;
    Condition train_c = read_condition(cfg.condition_path, classes);
    if (train_c.kind == ConditionKind::covariates && cfg.condition_classes > 0)
      throw_error(flag_of("condition_classes"), " is for class labels; ", flag_of("condition"), " '", cfg.condition_path,
                  "' holds covariates");
    Condition test_c = read_condition(cfg.test_condition_path,
                                      train_c.kind == ConditionKind::classes ? train_c.dim : 0);
    if (test_c.kind != train_c.kind || test_c.dim != train_c.dim)
      throw_error(flag_of("test_condition"), " '", cfg.test_condition_path, "' holds ", test_c.describe(),
                  " per item but ", flag_of("condition"), " '", cfg.condition_path, "' holds ", train_c.describe());
    attach_condition(*d.train, std::move(train_c));
    attach_condition(d.test, std::move(test_c));
  }
  prepare_data(cfg, *d.train, &d.test);
  return d;
}

std::atomic<bool> g_stop{false};

// Everything a run starts from: fresh (a configuration), or a checkpoint (its state, with
// the configuration as the resumed run has it).
struct RunStart {
  Checkpoint ck;  // ck.model and ck.train are the run's configuration
  std::string out;
  bool resumed = false;
  Communicator* comm = nullptr;  // data parallel (mpirun): the ranks; rank 0 writes OUT and talks
};

// Where ranks other than 0 say what rank 0 says already: nowhere.
std::ostream& quiet() {
  static std::ostream nowhere(nullptr);
  return nowhere;
}

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
      : s_(std::move(s)), model_(s_.ck.model), cfg_(s_.ck.train), data_(std::move(data)),
        writer_(!s_.comm || s_.comm->rank() == 0), log_(writer_ ? log : quiet()), labels_(model_, cfg_),
        progress_(log_, cfg_.progress && writer_) {
    if (data_.train->dim != model_.input_dim)
      throw_error("the data has ", data_.train->dim, " features per item but the model expects ", model_.input_dim);
    session_ = s_.resumed ? std::make_unique<Session>(s_.ck, s_.comm) : std::make_unique<Session>(model_, cfg_, s_.comm);
    log_ << session_->device_note() << "\n";
    if (s_.comm)
      log_ << "data parallel: " << s_.comm->name() << ", each a shard of every batch of " << cfg_.batch
           << ", gradients summed by " << session_->backend().gradient_sum() << "\n";
    result_.out_dir = s_.out;
    result_.device = session_->backend().name();
    session_->set_train_data(data_.train);
    open_out();
  }

  TrainResult train() {
    while (session_->position().epoch < cfg_.epochs)
      if (!train_epoch()) return result_;
    if (cfg_.epochs <= s_.ck.position.epoch && !s_.resumed) save();  // --epochs 0: the initial state
    finish();
    return result_;
  }

 private:
  // OUT's config.json, and metrics.csv started (or, on resume, cut to the checkpoint's epochs).
  void open_out() {
    const std::string& out = s_.out;
    config_json_ = config_to_json(model_, cfg_, session_->backend().name());
    if (!writer_) return;
    const std::string metrics_path = out + "/metrics.csv";
    if (s_.resumed) {
      trim_metrics(metrics_path, s_.ck.position.epoch);
    } else {
      create_out_dir(out);
      write_file_atomic(metrics_path, kCsvHeader);
    }
    write_file_atomic(out + "/config.json", config_json_);  // on resume: the epochs or device may have changed
    csv_.open(metrics_path, std::ios::app);
    if (!csv_) throw_error("cannot write '", metrics_path, "'");
    log_ << (s_.resumed ? "resuming" : "training") << " on " << session_->backend().name() << ": "
         << data_.train->count << " items of " << model_.input_dim << " from " << cfg_.train_path
         << (data_.train->is_mapped()            ? " (memory-mapped)"
             : cfg_.mmap && is_gzip(cfg_.train_path) ? " (compressed: read whole, not memory-mapped)"
                                                     : "")
         << ", "
         << session_->backend().layout().total() << " parameters, writing to " << out;
    if (s_.resumed) log_ << ", from epoch " << s_.ck.position.epoch + 1 << " batch " << s_.ck.position.batch + 1;
    log_ << "\n";
  }

  void save() {
    if (writer_) save_checkpoint(s_.out + "/model.safetensors", session_->checkpoint(), config_json_);
  }

  // One epoch; false when a stop was requested (a checkpoint then holds the position).
  bool train_epoch() {
    const int epoch = session_->position().epoch;
    const auto t0 = std::chrono::steady_clock::now();
    const auto outcome = session_->train_epoch(&data_.test, [&](int done, int total, std::int64_t samples) {
      progress_.update(epoch + 1, cfg_.epochs, done, total,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), samples);
      return g_stop.load();
    });
    progress_.clear();
    if (!outcome) {
      interrupt();
      return false;
    }
    if (outcome->dropped_steps > 0) {
      if (outcome->halted)
        throw_error("training stopped: ", outcome->first_dropped, "; ", kept_checkpoint(s_.out), "; ", remedy(), ", or ",
                    flag_of("on_nan"), " skip to drop such steps");
      log_ << "skipped " << outcome->dropped_steps << " step(s) with a non-finite loss or gradient; first: "
           << outcome->first_dropped << "\n";
    }
    report(outcome->metrics);
    return true;
  }

  // What to try when the loss is not finite. Large counts fed to the encoder as they are
  // overflow its variances at once: log(1 + x) keeps them in range.
  std::string remedy() const {
    if (counts_likelihood(model_.likelihood) && !model_.log1p_input)
      return "counts fed to the encoder as they are may need " + flag_of("log1p_input") + "; or try a smaller " +
             flag_of("lr");
    return "try a smaller " + flag_of("lr");
  }

  void interrupt() {
    save();
    const TrainPosition& pos = session_->position();
    log_ << "interrupted at epoch " << pos.epoch + 1 << ", batch " << pos.batch << " of "
         << (data_.train->count + cfg_.batch - 1) / cfg_.batch << "; the checkpoint is in " << s_.out
         << "/model.safetensors; continue with: vae train --resume " << s_.out << std::endl;
    result_.interrupted = true;
    g_stop = false;
  }

  // The epoch's line and metrics.csv row; its checkpoint when one is due.
  void report(const EpochMetrics& m) {
    result_.epochs.push_back(m);
    char line[320];
    std::snprintf(line, sizeof line,
                  "epoch %d/%d  train %s %.4f  test %s %.4f (recon %.4f, KL %.4f)  %.2f s  %.0f samples/s", m.epoch,
                  cfg_.epochs, labels_.train.c_str(), m.train_loss, labels_.test.c_str(), m.test_loss, m.test_recon,
                  m.test_kl, m.seconds, m.samples_per_sec);
    log_ << line << std::endl;
    if (writer_) csv_ << csv_row(m) << std::flush;
    if (!std::isfinite(m.train_loss) || !std::isfinite(m.test_loss))
      throw_error("training diverged at epoch ", m.epoch, ": the loss is not finite (train ", m.train_loss, ", test ",
                  m.test_loss, "); ", kept_checkpoint(s_.out), "; ", remedy());
    if (m.epoch % cfg_.checkpoint_every == 0 || m.epoch == cfg_.epochs) save();
  }

  void finish() {
    if (!writer_) return;
    const std::string& out = s_.out;
    const auto pictures = write_pictures(out, model_, cfg_, session_->backend(), data_, log_);
    for (const char* stale : {"elbo.png", "latent.png"}) {  // an --overwrite'n earlier run's, this run did not redraw
      std::error_code ignored;
      if (std::find(pictures.begin(), pictures.end(), stale) == pictures.end()) fs::remove(out + "/" + stale, ignored);
    }
    log_ << "wrote " << out << "/{config.json, metrics.csv, model.safetensors";
    for (const auto& p : pictures) log_ << ", " << p;
    log_ << "}\n";
  }

  RunStart s_;
  const ModelConfig model_;
  const TrainConfig cfg_;
  RunData data_;
  bool writer_;  // this process writes OUT and the log: it runs alone, or it is rank 0
  std::ostream& log_;
  LossLabels labels_;
  Progress progress_;
  std::unique_ptr<Session> session_;
  std::string config_json_;
  std::ofstream csv_;
  TrainResult result_;
};

TrainResult run(RunStart s, RunData data, std::ostream& log) { return Run(std::move(s), std::move(data), log).train(); }

}  // namespace

void request_stop() { g_stop = true; }

void resolve_run_paths(TrainConfig& cfg) {
  resolve_data_paths(cfg.train_path, cfg.test_path);
  resolve_condition_paths(cfg.condition_path, cfg.test_condition_path, cfg.test_path);
  for (std::string* p : {&cfg.train_path, &cfg.test_path, &cfg.test_labels_path, &cfg.condition_path,
                         &cfg.test_condition_path})
    *p = absolute_path(*p);
}

TrainResult train(ModelConfig model, TrainConfig cfg, std::ostream& log) {
  cfg.validate();
  RunStart s;
  s.comm = world();
  cfg.processes = s.comm ? s.comm->size() : 1;
  if (!s.comm || s.comm->rank() == 0) s.out = choose_out_dir(cfg);  // fail early, before loading data
  if (s.comm) s.comm->broadcast(s.out);  // runs/<timestamp>: rank 0's
  RunData data = load_data(cfg, model);
  model.input_dim = data.train->dim;
  model.condition = data.train->condition.kind;
  model.condition_dim = data.train->condition.dim;
  model.validate();
  check_together(model, cfg);  // now that the condition's kind is known
  cfg.out = s.out;
  s.ck.model = model;
  s.ck.train = cfg;
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
  RunStart s;
  s.ck = load_checkpoint(path);
  s.out = out_dir;
  s.resumed = true;
  s.comm = world();
  TrainConfig& cfg = s.ck.train;
  const int processes = s.comm ? s.comm->size() : 1;
  if (cfg.processes != processes && (!s.comm || s.comm->rank() == 0))
    log << "resuming a run of " << cfg.processes << (cfg.processes == 1 ? " process" : " processes") << " on "
        << processes << ": it goes on from its checkpoint, but the sums of other shards round otherwise, so the "
        << "losses will not equal an uninterrupted run's bit for bit\n";
  cfg.processes = processes;
  cfg.out = out_dir;
  if (o.epochs >= 0) cfg.epochs = o.epochs;
  if (o.device_given) cfg.device = o.device;
  if (o.threads >= 0) cfg.threads = o.threads;
  if (o.checkpoint_every > 0) cfg.checkpoint_every = o.checkpoint_every;
  cfg.progress = o.progress;
  cfg.validate();
  const TrainPosition& pos = s.ck.position;
  if (pos.epoch >= cfg.epochs && pos.batch == 0)
    throw_error("--resume '", out_dir, "': the run has finished its ", pos.epoch, " epochs; pass ", flag_of("epochs"),
                " N with N > ", pos.epoch, " to train on");
  RunData data = load_data(cfg, s.ck.model);
  return run(std::move(s), std::move(data), log);
}

}  // namespace vae
