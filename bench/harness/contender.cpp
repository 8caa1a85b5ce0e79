// The contenders that run in this process: the CUDA and CPU backends, and the skipped rows;
// the statistics of their blocks.
#include "contender.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "vae/backend.h"
#include "vae/batch_stream.h"
#include "vae/error.h"
#include "vae/layout.h"
#include "vae/options.h"

namespace vae::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Throws when a step's loss or gradient was not finite: a halted or dropped step does no work,
// and a time of such steps would be no benchmark.
void require_finite_steps(Backend& b) {
  const StepHealth h = b.health();
  if (h.bad_steps > 0)
    throw_error(h.bad_steps, " step(s) had a non-finite loss or gradient (first: step ", h.first_bad_step, ", ",
                h.first_bad_tensor, "); their time would be of no work (for counts as large as 0..255 add ",
                flag_of("log1p_input"), ")");
}

// The CUDA or CPU backend in this process.
class BackendContender final : public Contender {
 public:
  BackendContender(Device device, const Case& c, const Options& o, std::shared_ptr<const Dataset> train,
                   const Dataset& test)
      : Contender(device == Device::cuda ? "vae-cuda" : "vae-cpu", c.batch, train->count),
        device_(device), case_(c), opt_(o), train_(std::move(train)), test_(test) {
    tc_.batch = c.batch;
    tc_.seed = o.seed;
    // A fixed count: the load governor of threads 0 would count the other contenders' runs as
    // load on the machine.
    tc_.threads = o.threads > 0 ? o.threads : default_cpu_threads();
    tc_.device = device;
    tc_.eval_batch = std::max(1000, c.batch);
    try {
      stream_.emplace(train_->count, c.batch, o.seed);
      backend_ = make_backend(device, c.model, tc_);
      r_.device = backend_->name();
      backend_->set_parameters(init_parameters(backend_->layout(), c.model, o.seed));
      backend_->set_train_data(train_);
      for (int i = 0; i < o.warmup; ++i) step();
      backend_->take_train_sums();
      require_finite_steps(*backend_);
    } catch (const std::exception& e) {
      fail(e.what());
      backend_.reset();
    }
  }

 private:
  void step() {
    do stream_->next_rolling(b_);  // full batches only: a partial one would time fewer items
    while (b_.size != case_.batch && train_->count >= case_.batch);
    backend_->train_step(b_);
  }
  double block_ms(int k, int warm_ms) override {
    const auto warm0 = Clock::now();
    do {
      step();
      backend_->take_train_sums();  // waits for the device: the untimed steps end before the clock starts
    } while (Clock::now() - warm0 < std::chrono::milliseconds(warm_ms));
    const auto t0 = Clock::now();
    for (int i = 0; i < k; ++i) step();
    backend_->take_train_sums();  // waits for the device
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    require_finite_steps(*backend_);
    return ms;
  }
  void epochs() override {
    backend_.reset();  // the timing model's memory back before the epochs' model
    if (opt_.epochs == 0) return;
    auto backend = make_backend(device_, case_.model, tc_);  // real epochs from a fresh start, as `vae train`
    backend->set_parameters(init_parameters(backend->layout(), case_.model, opt_.seed));
    backend->set_train_data(train_);
    BatchStream stream(train_->count, case_.batch, opt_.seed);
    std::vector<double> seconds;
    for (int e = 0; e < opt_.epochs; ++e) {
      stream.start_epoch(e);
      Batch b;
      const auto t0 = Clock::now();
      while (stream.next(b)) backend->train_step(b);
      backend->take_train_sums();
      seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      require_finite_steps(*backend);
    }
    r_.epoch_seconds = steady_epoch_seconds(seconds);
    r_.test_loss = backend->evaluate(test_).mean_loss();
  }

  Device device_;
  Case case_;
  Options opt_;
  std::shared_ptr<const Dataset> train_;
  const Dataset& test_;
  TrainConfig tc_;
  std::unique_ptr<Backend> backend_;
  std::optional<BatchStream> stream_;
  Batch b_;
};

class SkippedContender final : public Contender {
 public:
  SkippedContender(const std::string& impl, const std::string& why) : Contender(impl, 1, 1) { fail("skipped: " + why); }

 private:
  double block_ms(int, int) override { return 0; }
  void epochs() override {}
};

}  // namespace

Contender::Contender(std::string impl, int batch, std::int64_t train_count) {
  r_.impl = std::move(impl);
  r_.items = static_cast<int>(std::min<std::int64_t>(batch, train_count));
}

void Contender::time_block(int k, int warm_ms) {
  if (!ok()) return;
  try {
    r_.block_ms.push_back(block_ms(k, warm_ms) / k);
  } catch (const std::exception& e) {
    r_.error = e.what();
  }
}

Result Contender::finish() {
  if (ok()) {
    try {
      epochs();
      r_.ms_median = percentile(r_.block_ms, 0.5);
      r_.ms_p10 = percentile(r_.block_ms, 0.1);
      r_.ms_p90 = percentile(r_.block_ms, 0.9);
      r_.samples_per_sec = r_.items / (r_.ms_median / 1000.0);
      r_.ok = true;
    } catch (const std::exception& e) {
      r_.error = e.what();
    }
  }
  if (!r_.ok) r_.block_ms.clear();
  return r_;
}

std::unique_ptr<Contender> backend_contender(Device device, const Case& c, const Options& o,
                                             std::shared_ptr<const Dataset> train, const Dataset& test) {
  return std::make_unique<BackendContender>(device, c, o, std::move(train), test);
}

std::unique_ptr<Contender> skipped_contender(const std::string& impl, const std::string& why) {
  return std::make_unique<SkippedContender>(impl, why);
}

double steady_epoch_seconds(const std::vector<double>& s) {
  if (s.empty()) return 0;
  if (s.size() == 1) return s[0];
  double sum = 0;
  for (std::size_t i = 1; i < s.size(); ++i) sum += s[i];
  return sum / double(s.size() - 1);
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const std::size_t i = static_cast<std::size_t>(pos);
  const double f = pos - double(i);
  return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

double paired_ratio(const Result& ref, const Result& r) {
  const std::size_t n = std::min(ref.block_ms.size(), r.block_ms.size());
  if (n == 0) return 0;
  std::vector<double> ratios;
  for (std::size_t i = 0; i < n; ++i) ratios.push_back(ref.block_ms[i] / r.block_ms[i]);
  return percentile(ratios, 0.5);
}

}  // namespace vae::bench
