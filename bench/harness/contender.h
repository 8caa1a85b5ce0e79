// One implementation of one benchmark case, set up and warmed up, that times blocks of steps
// on request; then its real epochs. The backends run in this process (contender.cpp),
// PyTorch in a subprocess driven through bench/torch_reference.py --serve (torch_contender.cpp).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench.h"
#include "vae/config.h"
#include "vae/data.h"

namespace vae::bench {

struct Case {
  std::string model_name;
  ModelConfig model;
  int batch = 128;
};

struct Result {
  std::string impl, device;
  bool ok = false;
  std::string error;
  int items = 0;                 // items per step: the batch, or the whole dataset when smaller
  std::vector<double> block_ms;  // ms per step of each timed repeat, in round order
  double ms_median = 0, ms_p10 = 0, ms_p90 = 0;
  double samples_per_sec = 0;
  double epoch_seconds = 0;  // measured over real epochs (0 when --epochs 0)
  double test_loss = 0;
};

// A contender that fails keeps its message as its result's error and times nothing more.
class Contender {
 public:
  // A step takes `batch` items, or the whole dataset when it is smaller (the script's min(batch, n)).
  Contender(std::string impl, int batch, std::int64_t train_count);
  virtual ~Contender() = default;
  bool ok() const { return r_.error.empty(); }
  // Runs untimed steps for at least `warm_ms` (at least one), then k timed steps; records
  // their ms per step.
  void time_block(int k, int warm_ms);
  // After the rounds: the real epochs and the summary of the blocks.
  Result finish();

 protected:
  virtual double block_ms(int k, int warm_ms) = 0;  // milliseconds for k steps after warm_ms of untimed ones
  virtual void epochs() = 0;
  void fail(const std::string& why) { r_.error = why.empty() ? "failed" : why; }
  Result r_;
};

// The CUDA or CPU backend in this process.
std::unique_ptr<Contender> backend_contender(Device device, const Case& c, const Options& o,
                                             std::shared_ptr<const Dataset> train, const Dataset& test);
// bench/torch_reference.py --serve (impl "torch" or "torch-compile") on torch_device.
std::unique_ptr<Contender> torch_contender(const std::string& impl, const std::string& torch_device, const Case& c,
                                           const Options& o, const std::string& train_path,
                                           const std::string& test_path, std::int64_t train_count);
// An implementation of the default list that cannot run here: its rows say why.
std::unique_ptr<Contender> skipped_contender(const std::string& impl, const std::string& why);

// Why PyTorch, and why torch.compile, cannot run here ("" when they can), asked of --python
// before any timing.
struct TorchProbe {
  std::string torch_why, compile_why;
};
TorchProbe probe_torch(const Options& o, const std::string& torch_device);

double percentile(std::vector<double> v, double q);
// Seconds per epoch: the mean of the epochs after the first when there are several (the
// first holds graph capture, torch.compile's compilation, caches warming), else the one.
double steady_epoch_seconds(const std::vector<double>& seconds);
// The median over rounds of ref's ms per step / r's: both timed in the same rounds, so the
// ratio of each round compares them under the same conditions.
double paired_ratio(const Result& ref, const Result& r);

// Runs a shell command; returns its exit status, and its stdout and stderr in `output`.
int run_command(const std::string& cmd, std::string& output);
std::string shell_quote(const std::string& s);
std::string last_line(const std::string& text);

}  // namespace vae::bench
