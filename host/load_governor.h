// The CPU path's thread count on a shared machine. OpenMP threads that outnumber the free
// cores wait for each other at every barrier while the other work holds a core, so an epoch
// beside one busy process took 5x its quiet time on 2 cores. The governor reads how busy the
// machine is (/proc/stat) apart from this process (getrusage), at most every kWindowMs, and
// gives the threads that fit on the cores left. The bits do not depend on it (blas.h).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace vae {

// Busy and total CPU time of the whole machine, in the kernel's clock ticks (/proc/stat's
// first line: user nice system idle iowait irq softirq steal ...; idle and iowait are idle).
struct MachineTicks {
  std::uint64_t busy = 0, total = 0;
};
// Parses /proc/stat's "cpu " line; false if `line` is not one.
bool parse_cpu_ticks(const std::string& line, MachineTicks& out);

// The threads to use now, from the current count, at most `max`, and the cores free of other
// work (the machine's cores minus the other processes' busy cores). A thread goes when the
// free cores fall 0.4 below the count, and comes back when they rise 0.4 above the next: the
// gap keeps a count from flapping on noise.
int governed_threads(int current, int max, double free_cores);

class LoadGovernor {
 public:
  static constexpr int kWindowMs = 250;
  static constexpr double kStaleS = 10;
  // Governs between 1 and `max` threads, starting at `max`. Off (always `max`) where
  // /proc/stat cannot be read.
  explicit LoadGovernor(int max);
  // The threads for the next step: a new reading once a window has passed.
  int threads();
  // One reading: the machine's ticks and this process's CPU seconds, `wall_s` after the last
  // one (a window longer than kStaleS, the process having waited between calls, only starts a
  // new one). Gives the threads. threads() feeds it; tests feed it made-up readings.
  int observe(const MachineTicks& m, double own_s, double wall_s);

  struct Machine {
    double cores = 1, ticks_per_s = 100;
  };
  // For tests: a governor of a made-up machine, first reading (m, own_s).
  LoadGovernor(int max, Machine machine, const MachineTicks& m, double own_s);

 private:
  using Clock = std::chrono::steady_clock;
  static bool read(MachineTicks& m, double& own_s);
  int max_, current_;
  Machine machine_;
  bool on_ = false;
  Clock::time_point t0_;
  MachineTicks m0_;
  double own0_ = 0;
};

}  // namespace vae
