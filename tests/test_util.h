// Helpers for the test suites: tolerance checks that report the worst element, random
// inputs that are never all zero, and temporary directories.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <unistd.h>
#include <sstream>
#include <string>
#include <vector>

#include "vae/backend.h"
#include "vae/data.h"
#include "vae/error.h"

namespace vae::test {

// |a - b| <= atol + rtol * |b| for every element; NaN never passes. On failure the message
// names the worst element and how much of the allowance it used.
template <class A, class B>
::testing::AssertionResult all_close(const std::vector<A>& got, const std::vector<B>& want, double atol, double rtol,
                                     const std::string& what = "") {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " != " << want.size();
  double worst = -1;
  std::size_t worst_i = 0;
  int bad = 0;
  std::ostringstream first;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]);
    const double allowed = atol + rtol * std::fabs(w);
    const double used = std::isfinite(g) && std::isfinite(w) ? std::fabs(g - w) / allowed : INFINITY;
    if (!(used <= 1.0)) {
      if (bad < 5) first << "\n  [" << i << "] got " << g << " want " << w;
      ++bad;
    }
    if (!(used <= worst)) {
      worst = used;
      worst_i = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size()
                                       << " elements outside tolerance; worst [" << worst_i << "] used "
                                       << 100.0 * worst << "% of the allowance" << first.str();
}

// Relative error in norm: ||a - b|| / ||b||.
template <class A, class B>
double rel_norm_error(const std::vector<A>& a, const std::vector<B>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num) / std::sqrt(den);
}

// f() throws vae::Error with `part` in its message.
template <class F>
void expect_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one saying '" << part << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

template <class T>
std::vector<T> uniform_values(std::size_t n, double lo, double hi, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(u(g));
  return v;
}

template <class T>
std::vector<T> normal_values(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(g));
  return v;
}

// A CPU training configuration of small batches (the library suites' models are small).
inline TrainConfig cpu_train(int batch, int eval_batch) {
  TrainConfig t;
  t.batch = batch;
  t.eval_batch = eval_batch;
  t.device = Device::cpu;
  return t;
}

// An NPY file's bytes: version 1.0, C order, `descr` ('<f4', '<i8', ...) and `shape` as
// numpy writes them ("(3, 2)", "(4,)"), then `bytes` bytes of data.
inline std::string npy_file(const std::string& descr, const std::string& shape, const void* data, std::size_t bytes) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string b = std::string("\x93NUMPY\x01\x00", 8);
  b += static_cast<char>(header.size() & 0xFF);
  b += static_cast<char>(header.size() >> 8);
  b += header;
  b.append(static_cast<const char*>(data), bytes);
  return b;
}

// An empty dataset's description: n items of dim values, one row per picture; the caller
// fills u8 or f32.
inline std::shared_ptr<Dataset> dataset_of(const std::string& source, std::int64_t n, int dim) {
  auto d = std::make_shared<Dataset>();
  d->source = source;
  d->count = n;
  d->dim = dim;
  d->height = 1;
  d->width = dim;
  return d;
}

// Noisy copies of four binary prototypes (pixels 230 or 20, 5% flipped), as uint8 or as
// float in [0,1]: small data that a model can learn, never all zero.
inline std::shared_ptr<Dataset> synthetic(std::int64_t n, int dim, std::uint64_t seed, bool as_float = false) {
  std::mt19937_64 g(seed);
  const int k = 4;
  std::vector<std::vector<std::uint8_t>> protos(k, std::vector<std::uint8_t>(static_cast<std::size_t>(dim)));
  for (auto& p : protos)
    for (auto& v : p) v = (g() % 2) ? 230 : 20;
  auto d = dataset_of("synthetic", n, dim);
  std::vector<std::uint8_t> u8(static_cast<std::size_t>(n) * dim);
  for (std::int64_t i = 0; i < n; ++i)
    for (int j = 0; j < dim; ++j) {
      std::uint8_t v = protos[static_cast<std::size_t>(i % k)][static_cast<std::size_t>(j)];
      if (g() % 20 == 0) v = static_cast<std::uint8_t>(255 - v);
      u8[static_cast<std::size_t>(i) * dim + j] = v;
    }
  if (as_float) {
    d->f32.resize(u8.size());
    for (std::size_t i = 0; i < u8.size(); ++i) d->f32[i] = static_cast<float>(u8[i]) / 255.0f;
  } else {
    d->u8 = std::move(u8);
  }
  return d;
}

// ---- batches a backend must refuse: both backends, the same messages ----------------------

// What train_step and compute_gradient (noise step: the batch's) of `b`, a backend without
// training data and batch size `max_batch`, say to a batch, in this order: a good batch
// before set_train_data; then, with `data` set (more than max_batch items), a batch of
// max_batch + 1 items, an empty one, null indices, a negative step, an index past the set,
// and a good batch. The message of each vae::Error, or "no error".
inline std::vector<std::string> bad_batch_errors(Backend& b, const std::shared_ptr<const Dataset>& data,
                                                 int max_batch) {
  std::vector<std::uint32_t> idx(static_cast<std::size_t>(max_batch) + 1, 0);
  std::vector<std::uint32_t> past = idx;
  past[3] = static_cast<std::uint32_t>(data->count);
  const std::vector<Batch> bad = {{idx.data(), max_batch + 1, 0, 0}, {idx.data(), 0, 0, 0},
                                  {nullptr, 2, 0, 0},                 {idx.data(), 2, 0, -1},
                                  {past.data(), max_batch, 0, 0},     {idx.data(), max_batch, 0, 3}};
  std::vector<std::string> out;
  auto both_calls = [&](const Batch& batch) {
    for (int call = 0; call < 2; ++call) try {
        if (call == 0) b.train_step(batch);
        else b.compute_gradient(batch, batch.step, Estimator::reparam);
        out.push_back("no error");
      } catch (const Error& e) {
        out.push_back(e.what());
      }
  };
  both_calls(bad.back());
  b.set_train_data(data);
  for (const Batch& batch : bad) both_calls(batch);
  return out;
}

// The messages bad_batch_errors must return, written from the contract (Backend::train_step).
inline std::vector<std::string> bad_batch_messages(std::int64_t count, int max_batch) {
  const std::string n = std::to_string(max_batch);
  const std::string tail[] = {": call set_train_data first",
                              ": batch of " + std::to_string(max_batch + 1) + " items, expected 1.." + n,
                              ": batch of 0 items, expected 1.." + n,
                              ": batch.indices is null",
                              ": the step must be >= 0, got -1",
                              ": index " + std::to_string(count) + " is out of range for " + std::to_string(count) +
                                  " items"};
  std::vector<std::string> out;
  for (const std::string& t : tail)
    for (const std::string call : {"train_step", "compute_gradient"}) out.push_back(call + t);
  out.push_back("no error");
  out.push_back("no error");
  return out;
}

// ---- --standardize: the scaling lives at the backend's edges, the same on both backends ----

// Real values far outside [0, 1], every feature with its own mean and spread, never all zero.
inline std::shared_ptr<Dataset> real_valued(std::int64_t n, int dim, std::uint64_t seed) {
  auto d = dataset_of("real-valued", n, dim);
  const auto z = normal_values<float>(static_cast<std::size_t>(n) * dim, seed);
  d->f32.resize(z.size());
  for (std::size_t k = 0; k < z.size(); ++k) {
    const int j = static_cast<int>(k % static_cast<std::size_t>(dim));
    d->f32[k] = 3.0f * static_cast<float>(j) - 7.0f + (0.5f + static_cast<float>(j % 4)) * z[k];
  }
  return d;
}

// `scaled` (given Standardization::fit(raw)) and `plain` (none) are two new backends of one
// Gaussian model, standardized and not, with the same parameters and batch size >= 5. Whatever `scaled` answers on
// raw data is what `plain` answers on the scaled data, at the edges undone: encode equal,
// decoder means times std plus mean, -ELBO and recon plus the Jacobian sum_d log std_d per
// item (the estimate's log p(x) minus it), and one training step the same parameters. Bit
// for bit: the same operations on the same numbers.
inline void expect_scaling_at_the_edges(Backend& scaled, Backend& plain, const std::shared_ptr<const Dataset>& raw) {
  const Standardization s = Standardization::fit(*raw);
  scaled.set_standardization(s);
  const auto std_data = std::make_shared<const Dataset>(s.apply(*raw));
  const double j = s.log_jacobian() * double(raw->count);
  ASSERT_GT(std::fabs(j), 1.0) << "the test's scaling must move the log-likelihood";
  EXPECT_EQ(scaled.encode(*raw, 3, 5), plain.encode(*std_data, 3, 5));
  const std::vector<float> z = normal_values<float>(static_cast<std::size_t>(7) * (plain.encode(*std_data, 0, 1).size() / 2), 5);
  std::vector<float> want = plain.decode_means(z);
  s.undo(want);
  EXPECT_EQ(scaled.decode_means(z), want);
  const LossSums a = scaled.evaluate(*raw), b = plain.evaluate(*std_data);
  EXPECT_EQ(a.loss, b.loss + j);
  EXPECT_EQ(a.recon, b.recon + j);
  EXPECT_EQ(a.kl, b.kl);
  const LikelihoodSums la = scaled.estimate_log_likelihood(*raw, 4), lb = plain.estimate_log_likelihood(*std_data, 4);
  EXPECT_EQ(la.iwae, lb.iwae - j);
  EXPECT_EQ(la.prior, lb.prior - j);
  EXPECT_EQ(la.recon, lb.recon + j);
  scaled.set_train_data(raw);
  plain.set_train_data(std_data);
  std::vector<std::uint32_t> idx = {4, 0, 7, 2, 9};
  const Batch batch{idx.data(), 5, 0, 0};
  scaled.train_step(batch);
  plain.train_step(batch);
  EXPECT_EQ(scaled.parameters(), plain.parameters());
  expect_error([&] { scaled.set_standardization(s); }, "give the scaling before set_train_data");
}

// The rows of a metrics.csv without its timing columns (seconds, samples/s).
inline std::vector<std::string> metrics_loss_rows(const std::string& csv) {
  std::vector<std::string> rows;
  std::istringstream in(csv);
  std::string line;
  while (std::getline(in, line)) {
    std::size_t comma = 0;
    for (int k = 0; k < 5; ++k) comma = line.find(',', comma + 1);
    rows.push_back(line.substr(0, comma));
  }
  return rows;
}

// A fresh empty directory under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("vae-test-") + (info ? info->name() : "x") + "-" + std::to_string(::getpid()) + "-" +
                       std::to_string(counter++);
    for (auto& c : name)
      if (c == '/') c = '_';
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace vae::test
