// The trainer: loads data, picks the backend, runs the epoch loop and writes OUT.
#include "vae/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <memory>
#include <ostream>

#include "cpu_model.h"
#include "vae/backend.h"
#include "vae/batch_stream.h"
#include "vae/data.h"
#include "vae/error.h"
#include "vae/io.h"
#include "vae/layout.h"
#include "vae/rng.h"

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
    if (!fs::is_directory(out, ec)) throw_error("--out '", out, "' exists and is not a directory");
    if (!fs::is_empty(out, ec) && !cfg.overwrite)
      throw_error("--out '", out, "' already holds files; choose another directory or pass --overwrite");
  }
  return out;
}

void create_out_dir(const std::string& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw_error("cannot create output directory '", out, "': ", ec.message());
}

void write_pictures(const std::string& out, const ModelConfig& model, const std::vector<float>& params,
                    const Dataset& test, std::uint64_t seed) {
  const int n_samples = 64, n_recon = 32;
  CpuModel<float> m(model, n_samples);
  std::copy(params.begin(), params.end(), m.params().begin());
  const int Z = model.latent, D = model.input_dim;

  std::vector<float> z(round_up_even(static_cast<std::size_t>(n_samples) * Z));
  HostPhilox rng(derive_seed(seed, RngStream::eval) ^ 0x5A5A5A5Aull);
  rng.normal(z.data(), static_cast<std::size_t>(n_samples) * Z, 0);
  std::vector<float> mean(static_cast<std::size_t>(n_samples) * D);
  m.decode_mean(z.data(), n_samples, mean.data());
  write_png_grid(out + "/samples.png", mean, n_samples, test.height, test.width, 8);

  // Reconstructions: inputs and decoder means at z = mu, in pairs of rows.
  const int n = static_cast<int>(std::min<std::int64_t>(n_recon, test.count));
  std::vector<float> x(static_cast<std::size_t>(n) * D);
  for (int i = 0; i < n; ++i) test.row(i, x.data() + static_cast<std::size_t>(i) * D);
  std::vector<float> zero_eps(round_up_even(static_cast<std::size_t>(n) * model.samples * Z), 0.0f);
  m.forward(x.data(), zero_eps.data(), n, false);
  std::vector<float> mu(static_cast<std::size_t>(n) * Z);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < Z; ++j) mu[static_cast<std::size_t>(i) * Z + j] = m.head()[static_cast<std::size_t>(i) * 2 * Z + j];
  std::vector<float> rec(static_cast<std::size_t>(n) * D);
  m.decode_mean(mu.data(), n, rec.data());
  const int cols = 8;
  std::vector<float> grid;
  int count = 0;
  for (int r0 = 0; r0 < n; r0 += cols) {
    const int k = std::min(cols, n - r0);
    for (const auto* src : {&x, &rec}) {
      for (int i = 0; i < cols; ++i) {
        if (i < k) grid.insert(grid.end(), src->begin() + static_cast<std::ptrdiff_t>(r0 + i) * D,
                               src->begin() + static_cast<std::ptrdiff_t>(r0 + i + 1) * D);
        else grid.insert(grid.end(), static_cast<std::size_t>(D), 0.0f);
        ++count;
      }
    }
  }
  write_png_grid(out + "/reconstructions.png", grid, count, test.height, test.width, cols);
}

}  // namespace

TrainResult train(ModelConfig model, TrainConfig cfg, std::ostream& log) {
  cfg.validate();
  const std::string out = choose_out_dir(cfg);  // fail early, before loading data
  if (cfg.train_path.empty()) cfg.train_path = default_fashion_mnist(true);
  if (cfg.test_path.empty()) cfg.test_path = default_fashion_mnist(false);
  auto train_data = std::make_shared<Dataset>(read_dataset(cfg.train_path));
  Dataset test_data = read_dataset(cfg.test_path);
  if (test_data.dim != train_data->dim)
    throw_error("--test '", cfg.test_path, "' has ", test_data.dim, " features per item but --train '", cfg.train_path,
                "' has ", train_data->dim);
  model.input_dim = train_data->dim;
  model.validate();
  if (cfg.binarize == Binarize::static_threshold) {
    binarize_static(*train_data);
    binarize_static(test_data);
  } else if (cfg.binarize == Binarize::dynamic) {
    binarize_fixed_draw(test_data, cfg.seed);
  }

  std::string note;
  const Device device = resolve_device(cfg.device, &note);
  std::unique_ptr<Backend> backend = make_backend(device, model, cfg);
  log << note << "\n";
  create_out_dir(out);
  cfg.out = out;

  TrainResult result;
  result.out_dir = out;
  result.device = backend->name();
  const ParamLayout& layout = backend->layout();
  backend->set_parameters(init_parameters(layout, model, cfg.seed));
  backend->set_train_data(train_data);
  const std::string config_json = config_to_json(model, cfg, backend->name());
  write_file_atomic(out + "/config.json", config_json);

  std::ofstream csv(out + "/metrics.csv");
  if (!csv) throw_error("cannot write '", out, "/metrics.csv'");
  csv << "epoch,train_loss,test_loss,test_recon,test_kl,seconds,samples_per_sec\n" << std::flush;

  log << "training on " << backend->name() << ": " << train_data->count << " items of " << model.input_dim
      << " from " << cfg.train_path << ", " << layout.total() << " parameters, writing to " << out << "\n";
  BatchStream stream(train_data->count, cfg.batch, cfg.seed);
  for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    stream.start_epoch(epoch);
    Batch batch;
    while (stream.next(batch)) backend->train_step(batch);
    const LossSums tr = backend->take_train_sums();  // waits for the device
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const LossSums te = backend->evaluate(test_data);

    EpochMetrics m;
    m.epoch = epoch + 1;
    m.train_loss = tr.mean_loss();
    m.test_loss = te.mean_loss();
    m.test_recon = te.mean_recon();
    m.test_kl = te.mean_kl();
    m.seconds = seconds;
    m.samples_per_sec = double(tr.count) / seconds;
    result.epochs.push_back(m);

    char line[256];
    std::snprintf(line, sizeof line, "epoch %d/%d  train -ELBO %.4f  test -ELBO %.4f (recon %.4f, KL %.4f)  %.2f s  %.0f samples/s",
                  m.epoch, cfg.epochs, m.train_loss, m.test_loss, m.test_recon, m.test_kl, m.seconds, m.samples_per_sec);
    log << line << std::endl;
    std::snprintf(line, sizeof line, "%d,%.6f,%.6f,%.6f,%.6f,%.4f,%.1f\n", m.epoch, m.train_loss, m.test_loss,
                  m.test_recon, m.test_kl, m.seconds, m.samples_per_sec);
    csv << line << std::flush;
    if (!std::isfinite(m.train_loss) || !std::isfinite(m.test_loss))
      throw_error("training diverged at epoch ", m.epoch, ": the loss is not finite (train ", m.train_loss, ", test ",
                  m.test_loss, "); try a smaller --lr");
  }

  const std::vector<float> params = backend->parameters();
  save_model(out + "/model.safetensors", layout, params, config_json);
  write_pictures(out, model, params, test_data, cfg.seed);
  log << "wrote " << out << "/{config.json, metrics.csv, model.safetensors, samples.png, reconstructions.png}\n";
  return result;
}

}  // namespace vae
