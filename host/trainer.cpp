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

std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

// Picks OUT (default runs/<timestamp>). An existing, non-empty OUT is refused unless
// overwrite is set, so a run never writes over another run's results by accident.
std::string choose_out_dir(const TrainConfig& cfg) {
  std::string out = cfg.out;
  if (out.empty()) {
    out = "runs/" + timestamp();
    for (int k = 2; fs::exists(out); ++k) out = "runs/" + timestamp() + "-" + std::to_string(k);
  }
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec)) throw_error(flag_of("out"), " '", out, "' exists and is not a directory");
    if (!fs::is_empty(out, ec) && !cfg.overwrite)
      throw_error(flag_of("out"), " '", out, "' already holds files; choose another directory or pass ",
                  flag_of("overwrite"));
  }
  return out;
}

void create_out_dir(const std::string& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw_error("cannot create output directory '", out, "': ", ec.message());
}

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

const char* kCsvHeader = "epoch,train_loss,test_loss,test_recon,test_kl,seconds,samples_per_sec\n";

std::string csv_row(const EpochMetrics& m) {
  char line[256];
  std::snprintf(line, sizeof line, "%d,%.6f,%.6f,%.6f,%.6f,%.4f,%.1f\n", m.epoch, m.train_loss, m.test_loss,
                m.test_recon, m.test_kl, m.seconds, m.samples_per_sec);
  return line;
}

// On resume: metrics.csv keeps its header and the rows of the epochs the checkpoint has
// finished; rows of a later, lost epoch go (they are recomputed, identically).
void trim_metrics(const std::string& path, int epochs_done) {
  std::ifstream in(path);
  if (!in) throw_error("cannot resume: '", path, "' is missing");
  std::string line, kept;
  if (!std::getline(in, line) || line + "\n" != kCsvHeader) throw_error("cannot resume: '", path, "' has an unexpected header");
  kept = kCsvHeader;
  int rows = 0;
  while (rows < epochs_done && std::getline(in, line)) {
    kept += line + "\n";
    ++rows;
  }
  if (rows < epochs_done)
    throw_error("cannot resume: '", path, "' has ", rows, " epoch rows but the checkpoint has finished ", epochs_done);
  write_file_atomic(path, kept);
}

// A progress bar on one terminal line, redrawn at most every 0.2 s.
class Progress {
 public:
  Progress(std::ostream& log, bool on) : log_(log), on_(on) {}
  void update(int epoch, int epochs, int done, int total, double seconds, std::int64_t samples) {
    if (!on_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done < total && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    const int width = 30, filled = total ? width * done / total : width;
    const double rate = seconds > 0 ? double(samples) / seconds : 0;
    const double eta = done ? seconds * double(total - done) / double(done) : 0;
    char buf[200];
    std::snprintf(buf, sizeof buf, "\repoch %d/%d [%s%s] %3d%%  %.0f samples/s  ETA %.0f s   ", epoch, epochs,
                  std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                  total ? 100 * done / total : 100, rate, eta);
    log_ << buf << std::flush;
    drawn_ = true;
  }
  void clear() {
    if (drawn_) log_ << "\r" << std::string(100, ' ') << "\r";
    drawn_ = false;
  }

 private:
  std::ostream& log_;
  bool on_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

std::string kept_checkpoint(const std::string& out) {
  const std::string path = out + "/model.safetensors";
  return fs::exists(path) ? "the last good checkpoint is kept in " + path : "no checkpoint had been written yet";
}

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

TrainResult run(RunStart s, RunData data, std::ostream& log) {
  ModelConfig& model = s.model;
  TrainConfig& cfg = s.cfg;
  const std::string& out = s.out;
  if (data.train->dim != model.input_dim)
    throw_error("the data has ", data.train->dim, " features per item but the model expects ", model.input_dim);

  std::string note;
  const Device device = resolve_device(cfg.device, &note);
  std::unique_ptr<Backend> backend = make_backend(device, model, cfg);
  log << note << "\n";
  TrainResult result;
  result.out_dir = out;
  result.device = backend->name();
  const ParamLayout& layout = backend->layout();
  backend->set_parameters(s.params);
  if (s.resumed) backend->set_optimizer_state(s.optimizer);
  backend->restore_train_sums(s.position.partial);
  backend->set_train_data(data.train);

  const std::string config_json = config_to_json(model, cfg, backend->name());
  const std::string metrics_path = out + "/metrics.csv";
  if (s.resumed) {
    trim_metrics(metrics_path, s.position.epoch);
  } else {
    create_out_dir(out);
    write_file_atomic(metrics_path, kCsvHeader);
  }
  write_file_atomic(out + "/config.json", config_json);  // on resume: the epochs or device may have changed
  std::ofstream csv(metrics_path, std::ios::app);
  if (!csv) throw_error("cannot write '", metrics_path, "'");

  auto save = [&](const TrainPosition& pos) {
    Checkpoint ck;
    ck.model = model;
    ck.train = cfg;
    ck.params = backend->parameters();
    ck.optimizer = backend->optimizer_state();
    ck.position = pos;
    save_checkpoint(out + "/model.safetensors", ck, config_json);
  };

  log << (s.resumed ? "resuming" : "training") << " on " << backend->name() << ": " << data.train->count
      << " items of " << model.input_dim << " from " << cfg.train_path << ", " << layout.total()
      << " parameters, writing to " << out;
  if (s.resumed) log << ", from epoch " << s.position.epoch + 1 << " batch " << s.position.batch + 1;
  log << "\n";
  BatchStream stream(data.train->count, cfg.batch, cfg.seed);
  Progress progress(log, cfg.progress);
  // What the losses are: the negative ELBO only with beta = 1 (and, in training, no KL warm-up
  // and the ELBO objective); otherwise recon + beta KL, or the negative IWAE bound.
  char beta_text[64];
  std::snprintf(beta_text, sizeof beta_text, "recon+%g*KL", model.beta);
  const std::string test_label = model.beta == 1.0 ? "-ELBO" : beta_text;
  const std::string train_label = cfg.objective == Objective::iwae                     ? "-IWAE"
                                  : model.beta == 1.0 && cfg.kl_warmup_steps == 0 ? "-ELBO"
                                  : cfg.kl_warmup_steps > 0                        ? "recon+beta_t*KL"
                                                                                   : beta_text;
  std::int64_t reported_bad_steps = 0;
  for (int epoch = s.position.epoch; epoch < cfg.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    stream.start_epoch(epoch);
    if (epoch == s.position.epoch) stream.seek(s.position.batch);
    Batch batch;
    int done = epoch == s.position.epoch ? s.position.batch : 0;
    std::int64_t samples = 0;
    while (stream.next(batch)) {
      backend->train_step(batch);
      ++done;
      samples += batch.size;
      progress.update(epoch + 1, cfg.epochs, done, stream.batches_per_epoch(),
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), samples);
      if (g_stop.load() && done < stream.batches_per_epoch()) {
        progress.clear();
        TrainPosition pos;
        pos.epoch = epoch;
        pos.batch = done;
        pos.step = batch.step + 1;
        pos.partial = backend->take_train_sums();
        save(pos);
        log << "interrupted at epoch " << epoch + 1 << ", batch " << done << " of " << stream.batches_per_epoch()
            << "; the checkpoint is in " << out << "/model.safetensors; continue with: vae train --resume " << out
            << std::endl;
        result.interrupted = true;
        g_stop = false;
        return result;
      }
    }
    const LossSums tr = backend->take_train_sums();  // waits for the device
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const StepHealth health = backend->health();
    if (health.bad_steps > reported_bad_steps) {
      progress.clear();
      const std::string what = "a non-finite " + std::string(health.first_bad_tensor == "loss" ? "loss" : "gradient of " + health.first_bad_tensor) +
                               " at step " + std::to_string(health.first_bad_step) + " (epoch " + std::to_string(epoch + 1) + ")";
      if (health.halted)
        throw_error("training stopped: ", what, "; ", kept_checkpoint(out),
                    "; try a smaller ", flag_of("lr"), ", or ", flag_of("on_nan"), " skip to drop such steps");
      log << "skipped " << health.bad_steps - reported_bad_steps << " step(s) with a non-finite loss or gradient; first: "
          << what << "\n";
      reported_bad_steps = health.bad_steps;
    }
    const LossSums te = backend->evaluate(data.test);
    progress.clear();

    EpochMetrics m;
    m.epoch = epoch + 1;
    m.train_loss = tr.mean_loss();
    m.test_loss = te.mean_loss();
    m.test_recon = te.mean_recon();
    m.test_kl = te.mean_kl();
    m.seconds = seconds;
    m.samples_per_sec = double(samples) / seconds;  // the steps this call ran
    result.epochs.push_back(m);

    char line[320];
    std::snprintf(line, sizeof line, "epoch %d/%d  train %s %.4f  test %s %.4f (recon %.4f, KL %.4f)  %.2f s  %.0f samples/s",
                  m.epoch, cfg.epochs, train_label.c_str(), m.train_loss, test_label.c_str(), m.test_loss, m.test_recon,
                  m.test_kl, m.seconds, m.samples_per_sec);
    log << line << std::endl;
    csv << csv_row(m) << std::flush;
    if (!std::isfinite(m.train_loss) || !std::isfinite(m.test_loss))
      throw_error("training diverged at epoch ", m.epoch, ": the loss is not finite (train ", m.train_loss, ", test ",
                  m.test_loss, "); ", kept_checkpoint(out), "; try a smaller ", flag_of("lr"));
    if (m.epoch % cfg.checkpoint_every == 0 || m.epoch == cfg.epochs) {
      TrainPosition pos;
      pos.epoch = epoch + 1;
      pos.step = static_cast<std::int64_t>(epoch + 1) * stream.batches_per_epoch();
      save(pos);
    }
  }
  if (cfg.epochs <= s.position.epoch && !s.resumed) save(s.position);  // --epochs 0: the initial state
  const auto pictures = write_pictures(out, model, cfg, *backend, data, log);
  for (const char* stale : {"elbo.png", "latent.png"}) {  // an --overwrite'n earlier run's, this run did not redraw
    std::error_code ignored;
    if (std::find(pictures.begin(), pictures.end(), stale) == pictures.end()) fs::remove(out + "/" + stale, ignored);
  }
  log << "wrote " << out << "/{config.json, metrics.csv, model.safetensors";
  for (const auto& p : pictures) log << ", " << p;
  log << "}\n";
  return result;
}

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
