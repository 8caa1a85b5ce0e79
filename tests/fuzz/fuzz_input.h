// The readers take file names; a fuzz input is written to an in-memory file (memfd) and
// read back through its /proc/self/fd path. A vae::Error is the expected answer to bad
// input; any other exception, crash, leak or sanitizer report is a finding.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cmath>
#include <string>

#include "vae/data.h"
#include "vae/error.h"

class FuzzFile {
 public:
  FuzzFile() : fd_(memfd_create("vae-fuzz", 0)), path_("/proc/self/fd/" + std::to_string(fd_)) {
    if (fd_ < 0) std::abort();
  }
  const std::string& write(const std::uint8_t* data, std::size_t size) {
    if (ftruncate(fd_, 0) != 0) std::abort();
    std::size_t done = 0;
    while (done < size) {
      const ssize_t w = pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (w <= 0) std::abort();
      done += static_cast<std::size_t>(w);
    }
    return path_;
  }

 private:
  int fd_;
  std::string path_;
};

// read_condition's promises (both fuzz_idx and fuzz_npy feed it): a kind, one finite row per
// item, and for class labels a one-hot row of `classes` values (when given).
inline void check_condition(const std::string& path, int classes) {
  try {
    const vae::Condition c = vae::read_condition(path, classes);
    if (c.empty() || c.dim <= 0 || c.count() <= 0 || c.values.size() != static_cast<std::size_t>(c.count()) * c.dim)
      std::abort();
    if (classes > 0 && c.kind == vae::ConditionKind::classes && c.dim != classes) std::abort();
    for (std::int64_t i = 0; i < c.count(); ++i) {
      float sum = 0;
      for (int j = 0; j < c.dim; ++j) {
        const float v = c.values[static_cast<std::size_t>(i) * c.dim + j];
        if (!std::isfinite(v)) std::abort();
        sum += v;
      }
      if (c.kind == vae::ConditionKind::classes && sum != 1.0f) std::abort();
    }
  } catch (const vae::Error&) {
  }
}
