// A run's OUT: choosing and creating it, metrics.csv, and the progress bar (trainer.cpp).
#pragma once
#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

#include "vae/config.h"
#include "vae/trainer.h"

namespace vae {

// Picks OUT (default runs/<timestamp>). An existing, non-empty OUT is refused unless
// overwrite is set, so a run never writes over another run's results by accident.
std::string choose_out_dir(const TrainConfig& cfg);
void create_out_dir(const std::string& out);

extern const char* const kCsvHeader;  // metrics.csv's first line
std::string csv_row(const EpochMetrics& m);
// On resume: metrics.csv keeps its header and the rows of the epochs the checkpoint has
// finished; rows of a later, lost epoch go (they are recomputed, identically).
void trim_metrics(const std::string& path, int epochs_done);
// "the last good checkpoint is kept in OUT/model.safetensors", or that there is none yet.
std::string kept_checkpoint(const std::string& out);

// A progress bar on one terminal line, redrawn at most every 0.2 s.
class Progress {
 public:
  Progress(std::ostream& log, bool on) : log_(log), on_(on) {}
  void update(int epoch, int epochs, int done, int total, double seconds, std::int64_t samples);
  void clear();

 private:
  std::ostream& log_;
  bool on_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace vae
