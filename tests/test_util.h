// Helpers for the test suites: tolerance checks that report the worst element, random
// inputs that are never all zero, and temporary directories.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <unistd.h>
#include <sstream>
#include <string>
#include <vector>

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
