#include "load_governor.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace vae {

bool parse_cpu_ticks(const std::string& line, MachineTicks& out) {
  std::istringstream in(line);
  std::string name;
  if (!(in >> name) || name != "cpu") return false;
  std::uint64_t v[8] = {};
  int n = 0;
  while (n < 8 && in >> v[n]) ++n;
  if (n < 4) return false;  // user nice system idle at least
  const std::uint64_t idle = v[3] + v[4];  // idle, iowait
  std::uint64_t total = 0;
  for (int k = 0; k < n; ++k) total += v[k];  // guest time is inside user already
  out.busy = total - idle;
  out.total = total;
  return true;
}

int governed_threads(int current, int max, double free_cores) {
  const int down = std::clamp(static_cast<int>(std::ceil(free_cores - 0.4)), 1, max);
  const int up = std::clamp(static_cast<int>(std::floor(free_cores + 0.4)), 1, max);
  current = std::clamp(current, 1, max);
  if (down < current) return down;
  if (up > current) return up;
  return current;
}

LoadGovernor::LoadGovernor(int max) : max_(std::max(1, max)), current_(max_) {
  const long cores = sysconf(_SC_NPROCESSORS_ONLN), hz = sysconf(_SC_CLK_TCK);
  if (cores > 0) machine_.cores = static_cast<double>(cores);
  if (hz > 0) machine_.ticks_per_s = static_cast<double>(hz);
  on_ = max_ > 1 && read(m0_, own0_);
  t0_ = Clock::now();
}

LoadGovernor::LoadGovernor(int max, Machine machine, const MachineTicks& m, double own_s)
    : max_(std::max(1, max)), current_(max_), machine_(machine), on_(true), t0_(Clock::now()), m0_(m), own0_(own_s) {}

bool LoadGovernor::read(MachineTicks& m, double& own_s) {
  std::ifstream f("/proc/stat");
  std::string line;
  if (!std::getline(f, line) || !parse_cpu_ticks(line, m)) return false;
  rusage r{};
  if (getrusage(RUSAGE_SELF, &r) != 0) return false;
  own_s = static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
          1e-6 * static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
  return true;
}

int LoadGovernor::observe(const MachineTicks& m, double own_s, double wall_s) {
  if (wall_s > 0 && wall_s <= kStaleS && m.total > m0_.total && m.busy >= m0_.busy) {
    // The machine's busy cores over the window, less this process's own.
    const double busy_cores = static_cast<double>(m.busy - m0_.busy) / machine_.ticks_per_s / wall_s;
    const double other = std::max(0.0, busy_cores - (own_s - own0_) / wall_s);
    current_ = governed_threads(current_, max_, machine_.cores - other);
  }
  m0_ = m;
  own0_ = own_s;
  return current_;
}

int LoadGovernor::threads() {
  if (!on_) return max_;
  const auto now = Clock::now();
  const double wall = std::chrono::duration<double>(now - t0_).count();
  if (wall < kWindowMs * 1e-3) return current_;
  MachineTicks m;
  double own = 0;
  if (!read(m, own)) return current_;
  t0_ = now;
  return observe(m, own, wall);
}

}  // namespace vae
