// A run's OUT: choosing and creating it, metrics.csv.
#include "run_output.h"

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "vae/error.h"
#include "vae/io.h"
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

}  // namespace

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

const char* const kCsvHeader = "epoch,train_loss,test_loss,test_recon,test_kl,seconds,samples_per_sec\n";

std::string csv_row(const EpochMetrics& m) {
  char line[256];
  std::snprintf(line, sizeof line, "%d,%.6f,%.6f,%.6f,%.6f,%.4f,%.1f\n", m.epoch, m.train_loss, m.test_loss,
                m.test_recon, m.test_kl, m.seconds, m.samples_per_sec);
  return line;
}

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

std::string kept_checkpoint(const std::string& out) {
  const std::string path = out + "/model.safetensors";
  return fs::exists(path) ? "the last good checkpoint is kept in " + path : "no checkpoint had been written yet";
}

void Progress::update(int epoch, int epochs, int done, int total, double seconds, std::int64_t samples) {
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

void Progress::clear() {
  if (drawn_) log_ << "\r" << std::string(100, ' ') << "\r";
  drawn_ = false;
}

}  // namespace vae
