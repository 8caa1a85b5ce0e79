// Dataset readers: IDX (gz or raw) and NPY; binarization; the default Fashion-MNIST paths.
// Every failure names the file and what was wrong with it; no input crashes the reader.
#include "vae/data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <utility>

#include "rng.h"
#include "vae/error.h"
#include "vae/options.h"

namespace vae {
namespace {

constexpr std::uint64_t kMaxPayload = std::uint64_t(1) << 40;  // 1 TiB: larger is a corrupt header

// A file whose values take `have` bytes where its header promises `want`: read or mapped.
[[noreturn]] void throw_payload_size(const std::string& path, std::uint64_t want, std::uint64_t have) {
  if (have < want)
    throw_error("'", path, "' is truncated: the header promises ", want, " bytes of data but the file holds only ", have);
  throw_error("'", path, "' has more data than its header describes (", want,
              " bytes expected); the header's dimensions are wrong or the file is corrupt");
}

// Reads a file through zlib, which passes uncompressed files through unchanged.
class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) throw_error("cannot open '", path, "': no such file");
    if (std::filesystem::is_directory(status)) throw_error("cannot read '", path, "': it is a directory, expected a file");
    file_ = gzopen(path.c_str(), "rb");
    if (!file_) throw_error("cannot open '", path, "': ", std::strerror(errno));
    gzbuffer(file_, 1 << 17);
  }
  ~Reader() {
    if (file_) gzclose(file_);
  }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // Reads up to n bytes; returns how many were read (fewer only at the end of the data).
  std::size_t read(void* out, std::size_t n) {
    std::size_t done = 0;
    auto* p = static_cast<unsigned char*>(out);
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
      const int got = gzread(file_, p + done, chunk);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(file_, &code);
        throw_error("cannot read '", path_, "': ", code == Z_ERRNO ? std::strerror(errno) : msg,
                    " (corrupt or truncated gzip data?)");
      }
      if (got == 0) break;
      done += static_cast<std::size_t>(got);
      consumed_ += static_cast<std::uint64_t>(got);
    }
    return done;
  }

  void read_exact(void* out, std::size_t n, const char* what) {
    const std::size_t got = read(out, n);
    if (got != n)
      throw_error("'", path_, "' is truncated: it ends after ", consumed_, " bytes, inside the ", what,
                  " (", n - got, " more bytes were expected)");
  }

  // Reads `n` payload bytes into a vector that grows as data arrives, so a header that
  // claims far more than the file holds fails on truncation, not on allocation.
  std::vector<unsigned char> read_payload(std::uint64_t n) {
    std::vector<unsigned char> out;
    out.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n, 64u << 20)));
    while (out.size() < n) {
      const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(n - out.size(), 16u << 20));
      const std::size_t old = out.size();
      out.resize(old + want);
      const std::size_t got = read(out.data() + old, want);
      if (got != want) throw_payload_size(path_, n, old + got);
    }
    unsigned char extra;
    if (read(&extra, 1) != 0) throw_payload_size(path_, n, n + 1);
    return out;
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  gzFile file_ = nullptr;
  std::uint64_t consumed_ = 0;
};

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const std::string& path) {
  std::uint64_t r;
  if (__builtin_mul_overflow(a, b, &r) || r > kMaxPayload)
    throw_error("'", path, "': the dimensions in its header overflow (", a, " x ", b, "); the header is corrupt");
  return r;
}

const char* idx_type_name(unsigned t) {
  switch (t) {
    case 0x08: return "uint8";
    case 0x09: return "int8";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown";
  }
}

struct IdxHeader {
  std::vector<std::uint64_t> dims;
};

IdxHeader read_idx_header(Reader& in) {
  unsigned char magic[4];
  in.read_exact(magic, 4, "IDX magic number");
  if (magic[0] != 0 || magic[1] != 0)
    throw_error("'", in.path(), "' is not an IDX file: its magic number starts with bytes ", int(magic[0]), " ",
                int(magic[1]), ", expected 0 0 (MNIST-style files start 00 00 08 03 for images, 00 00 08 01 for labels)");
  if (magic[2] != 0x08)
    throw_error("'", in.path(), "': IDX data type 0x", std::hex, int(magic[2]), std::dec, " (", idx_type_name(magic[2]),
                ") is not supported; expected 0x08 (uint8)");
  const int ndim = magic[3];
  if (ndim == 0) throw_error("'", in.path(), "': IDX header declares 0 dimensions");
  IdxHeader h;
  for (int i = 0; i < ndim; ++i) {
    unsigned char b[4];
    in.read_exact(b, 4, "IDX dimension list");
    const std::uint64_t d = (std::uint64_t(b[0]) << 24) | (std::uint64_t(b[1]) << 16) | (std::uint64_t(b[2]) << 8) | b[3];
    h.dims.push_back(d);
  }
  return h;
}

bool is_perfect_square(int n, int& root) {
  root = static_cast<int>(std::lround(std::sqrt(static_cast<double>(n))));
  return root * root == n;
}

void set_picture_shape(Dataset& d) {
  int root;
  if (d.height <= 0 || d.width <= 0 || std::int64_t(d.height) * d.width != d.dim) {
    if (is_perfect_square(d.dim, root)) {
      d.height = d.width = root;
    } else {
      d.height = 1;
      d.width = d.dim;
    }
  }
}

// --- NPY header parsing: a Python dict literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 784), }
std::string npy_field(const std::string& header, const std::string& key, const std::string& path) {
  const auto k = header.find("'" + key + "'");
  if (k == std::string::npos) throw_error("'", path, "': NPY header has no '", key, "' field: ", header);
  const auto colon = header.find(':', k);
  if (colon == std::string::npos) throw_error("'", path, "': NPY header is malformed near '", key, "': ", header);
  std::size_t b = header.find_first_not_of(" \t", colon + 1);
  if (b == std::string::npos) throw_error("'", path, "': NPY header is malformed near '", key, "'");
  std::size_t e;
  if (header[b] == '\'' || header[b] == '"') {
    e = header.find(header[b], b + 1);
    if (e == std::string::npos) throw_error("'", path, "': NPY header has an unterminated string: ", header);
    return header.substr(b + 1, e - b - 1);
  }
  if (header[b] == '(') {
    e = header.find(')', b);
    if (e == std::string::npos) throw_error("'", path, "': NPY header has an unterminated shape: ", header);
    return header.substr(b, e - b + 1);
  }
  e = header.find_first_of(",}", b);
  if (e == std::string::npos) throw_error("'", path, "': NPY header is malformed near '", key, "'");
  std::string v = header.substr(b, e - b);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
  return v;
}

std::vector<std::uint64_t> npy_shape(const std::string& text, const std::string& path) {
  // text is "(a, b)", "(a,)" or "()"
  if (text.size() < 2 || text.front() != '(' || text.back() != ')')
    throw_error("'", path, "': NPY shape '", text, "' is not a tuple of non-negative integers");
  std::vector<std::uint64_t> dims;
  std::stringstream ss(text.substr(1, text.size() - 2));
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto b = item.find_first_not_of(' ');
    if (b == std::string::npos) continue;  // the empty item after a trailing comma
    const auto e = item.find_last_not_of(' ');
    const std::string t = item.substr(b, e - b + 1);
    if (t.find_first_not_of("0123456789") != std::string::npos || t.size() > 15)
      throw_error("'", path, "': NPY shape ", text, " is not a tuple of non-negative integers");
    dims.push_back(std::stoull(t));
  }
  return dims;
}

}  // namespace

// A read-only mapping of a file: its values start `offset` bytes in.
struct Dataset::Mapping {
  void* base = MAP_FAILED;
  std::size_t length = 0;
  std::size_t offset = 0;
  bool u8 = false;
  mutable std::atomic<unsigned> checked{0};  // the ValueRules (bits) the float values passed: each check runs once
  int fd = -1;  // the file, open: rows at random are read with pread (read)
  // Rows at random are not read through the map: a page fault maps the whole page-cache folio
  // around the row (up to 2 MiB on Linux 6.18, ext4: 1.8 GiB resident after 1024 random rows
  // of a 17 GiB file), so pread copies them instead (0.6 us per row, nothing mapped).
  // Sequential reads (the finite check, a resident upload, evaluation chunks) go through the
  // map, and every kReleaseBytes of them the pages go from this process's resident memory
  // (they stay in the page cache): a file larger than memory streams through.
  static constexpr std::size_t kReleaseBytes = std::size_t(256) << 20;
  mutable std::atomic<std::size_t> since_release{0};
  void note_read(std::size_t bytes) const {
    const std::size_t before = since_release.fetch_add(bytes, std::memory_order_relaxed);
    if (before < kReleaseBytes && before + bytes >= kReleaseBytes) {  // one reader crosses the mark
      madvise(base, length, MADV_DONTNEED);  // read-only, never written: nothing is lost
      since_release.store(0, std::memory_order_relaxed);
    }
  }
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (base != MAP_FAILED) munmap(base, length);
    if (fd >= 0) close(fd);
  }
  const unsigned char* bytes() const { return static_cast<const unsigned char*>(base) + offset; }
  // `size` bytes at `at` bytes into the values, into out: pread, or the map where it fails.
  void read(std::size_t at, std::size_t size, unsigned char* out) const {
    std::size_t done = 0;
    while (done < size) {
      const ssize_t r = pread(fd, out + done, size - done, static_cast<off_t>(offset + at + done));
      if (r <= 0) break;
      done += static_cast<std::size_t>(r);
    }
    if (done < size) std::memcpy(out + done, bytes() + at + done, size - done);
  }
};

namespace {
// `path` mapped read-only, its values `offset` bytes in, `bytes` of them as its header says (a
// raw file: a .gz cannot be mapped).
std::shared_ptr<const Dataset::Mapping> map_file(const std::string& path, std::size_t offset, bool u8,
                                                 std::uint64_t bytes) {
  if (is_gzip(path))
    throw_error("'", path, "' is gzip-compressed and cannot be memory-mapped; gunzip it, or read it without ",
                flag_of("mmap"));
  if (!u8 && offset % alignof(float) != 0)
    throw_error("'", path, "': its float32 values start at byte ", offset, ", not on a 4-byte boundary: it cannot be mapped");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_error("cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    throw_error("cannot read '", path, "': ", std::strerror(err));
  }
  auto m = std::make_shared<Dataset::Mapping>();
  m->length = static_cast<std::size_t>(st.st_size);
  m->offset = offset;
  m->u8 = u8;
  if (m->length > offset) m->base = mmap(nullptr, m->length, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  m->fd = fd;  // kept for read(); closed with the mapping
  const std::size_t have = m->length - std::min(m->length, offset);
  if (have != bytes) throw_payload_size(path, bytes, have);
  if (have == 0) throw_error("'", path, "' holds no values after its header");  // nothing to map
  if (m->base == MAP_FAILED) throw_error("cannot memory-map '", path, "': ", std::strerror(err));
  return m;
}

// The first number in a file (/proc, /sys), or -1 when it cannot be read ("max": no limit).
double number_in(const char* path, const char* after = "") {
  std::ifstream f(path);
  std::string text((std::istreambuf_iterator<char>(f)), {});
  const std::size_t at = text.find(after);
  if (!f || at == std::string::npos) return -1;
  const char* p = text.c_str() + at + std::strlen(after);
  char* end = nullptr;
  const double v = std::strtod(p, &end);
  return end == p ? -1 : v;
}

// The memory this process can still take, in bytes (-1: unknown): the kernel's MemAvailable
// (free memory and the page cache it can give back), or less where a control group limits it
// (a container's memory limit, cgroup v2 or v1, as the container sees its own group): the
// limit less the group's usage, page cache it can drop first (inactive files) not counted.
double memory_available() {
  double bytes = number_in("/proc/meminfo", "MemAvailable:");
  if (bytes >= 0) {
    bytes *= 1024;
  } else {
    const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    bytes = pages > 0 && page > 0 ? double(pages) * double(page) : -1;
  }
  struct Group {
    const char *limit, *usage, *stat, *inactive;
  };
  const Group groups[] = {
      {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "\ninactive_file "},
      {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
       "/sys/fs/cgroup/memory/memory.stat", "\ntotal_inactive_file "}};
  for (const Group& g : groups) {
    const double limit = number_in(g.limit), usage = number_in(g.usage);
    if (limit <= 0 || usage < 0 || limit >= 1e18) continue;  // no limit ("max", or v1's near 2^63)
    const double inactive = std::max(0.0, number_in(g.stat, g.inactive));
    const double headroom = std::max(0.0, limit - std::max(0.0, usage - inactive));
    bytes = bytes < 0 ? headroom : std::min(bytes, headroom);
  }
  return bytes;
}

// Whether a file this large should be mapped: more than half of the memory available.
bool larger_than_half_the_memory(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return false;
  const double available = memory_available();
  return available >= 0 && double(size) > 0.5 * available;
}
}  // namespace

bool is_gzip(const std::string& path) {
  unsigned char magic[2] = {0, 0};
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  const bool gz = std::fread(magic, 1, 2, f) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  std::fclose(f);
  return gz;
}

bool Dataset::is_u8() const { return !u8.empty() || (mapping && mapping->u8); }
const std::uint8_t* Dataset::u8_values() const {
  if (mapping) return mapping->u8 ? mapping->bytes() : nullptr;
  return is_u8() ? u8.data() : nullptr;
}
const float* Dataset::f32_values() const {
  if (mapping) return mapping->u8 ? nullptr : reinterpret_cast<const float*>(mapping->bytes());
  return f32.empty() ? nullptr : f32.data();
}

void Dataset::note_read(std::size_t bytes) const {
  if (mapping) mapping->note_read(bytes);
}

void Dataset::read_rows(const std::uint32_t* indices, int n, unsigned char* out) const {
  const std::size_t rb = static_cast<std::size_t>(dim) * (is_u8() ? 1 : 4);
  const unsigned char* all = is_u8() ? u8_values() : reinterpret_cast<const unsigned char*>(f32_values());
  for (int i = 0; i < n; ++i) {
    const std::size_t at = static_cast<std::size_t>(indices[i]) * rb;
    if (mapping) mapping->read(at, rb, out + static_cast<std::size_t>(i) * rb);
    else std::memcpy(out + static_cast<std::size_t>(i) * rb, all + at, rb);
  }
}

std::int64_t Dataset::first_bad_value(std::int64_t begin, std::int64_t end, ValueRule rule) const {
  const float* v = f32_values();
  if (!v) return -1;
  const std::size_t D = static_cast<std::size_t>(dim), F = static_cast<std::size_t>(features());
  const std::size_t rows_per_chunk = std::max<std::size_t>(1, (std::size_t(64) << 20) / (4 * D));  // 64 MiB
  const std::size_t b = static_cast<std::size_t>(begin), e = static_cast<std::size_t>(end);
  const bool show = mapping && (e - b) * D * 4 > (std::size_t(1) << 30) && isatty(STDERR_FILENO);
  const auto bad_value = [rule](float x, bool feature) {
    if (!std::isfinite(x)) return true;
    if (!feature) return false;
    switch (rule) {
      case ValueRule::unit_interval: return x < 0.0f || x > 1.0f;
      case ValueRule::counts: return x < 0.0f || x != std::floor(x);
      case ValueRule::finite: break;
    }
    return false;
  };
  std::int64_t bad = -1;
  for (std::size_t r0 = b; r0 < e && bad < 0; r0 += rows_per_chunk) {
    const std::size_t r1 = std::min(e, r0 + rows_per_chunk);
    for (std::size_t r = r0; r < r1 && bad < 0; ++r)
      for (std::size_t j = 0; j < D; ++j)
        if (bad_value(v[r * D + j], j < F)) {
          bad = static_cast<std::int64_t>(r * D + j);
          break;
        }
    note_read((r1 - r0) * D * 4);
    if (show) std::fprintf(stderr, "\rchecking '%s': %3.0f%%", source.c_str(), 100.0 * double(r1 - b) / double(e - b));
  }
  if (show) std::fprintf(stderr, "\r\033[K");
  return bad;
}

namespace {
// A dataset as its messages name it.
std::string quoted_source(const Dataset& d) {
  return d.source.empty() ? std::string("(a dataset with no source)") : "'" + d.source + "'";
}
}  // namespace

void Dataset::throw_non_finite(std::int64_t k) const {
  throw_error("dataset ", quoted_source(*this), ": value ", f32_values()[k], " at item ", k / dim, ", feature ", k % dim, " is not finite");
}

namespace {
unsigned rule_bits(ValueRule rule) { return 1u << static_cast<unsigned>(ValueRule::finite) | 1u << static_cast<unsigned>(rule); }
}  // namespace

void Dataset::mark_checked(ValueRule rule) const {
  if (mapping) mapping->checked.fetch_or(rule_bits(rule));
}

bool Dataset::values_checked(ValueRule rule) const {
  const unsigned bit = 1u << static_cast<unsigned>(rule);
  return mapping && (mapping->checked.load() & bit) == bit;
}

void Dataset::validate(bool values) const {
  const std::string name = quoted_source(*this);
  if (count < 0) throw_error("dataset ", name, ": count is ", count, ", expected >= 0");
  if (dim <= 0) throw_error("dataset ", name, ": dim is ", dim, ", expected the number of values per item (> 0)");
  if (!u8.empty() + !f32.empty() + (mapping != nullptr) > 1)
    throw_error("dataset ", name, ": more than one of u8 (", u8.size(), " values), f32 (", f32.size(),
                " values) and a mapped file hold values; fill exactly one");
  std::uint64_t want = 0;
  if (__builtin_mul_overflow(static_cast<std::uint64_t>(count), static_cast<std::uint64_t>(dim), &want))
    throw_error("dataset ", name, ": count ", count, " x dim ", dim, " overflows");
  const std::size_t have = mapping ? (mapping->length - mapping->offset) / (mapping->u8 ? 1 : 4)
                           : is_u8() ? u8.size() : f32.size();
  if (have != want)
    throw_error("dataset ", name, ": ", mapping ? "the mapped file" : is_u8() ? "u8" : "f32", " holds ", have,
                " values, expected count x dim = ", count, " x ", dim, " = ", want);
  if (values && f32_values() && !values_checked(ValueRule::finite)) {
    if (const std::int64_t k = first_bad_value(0, count); k >= 0) throw_non_finite(k);
    mark_checked();  // a mapped file is checked once, not at every call
  }
  if (appended < 0 || appended >= dim)
    throw_error("dataset ", name, ": appended is ", appended, ", expected a count of condition values in [0, dim)");
  const Condition& c = condition;
  if (c.empty()) {
    if (c.dim != 0 || !c.values.empty())
      throw_error("dataset ", name, ": its condition has kind none but holds ", c.values.size(), " values");
    return;
  }
  if (c.dim <= 0 || c.values.size() % static_cast<std::size_t>(c.dim) != 0 || c.count() != count)
    throw_error("dataset ", name, ": its conditions '", c.source, "' hold ", c.values.size(), " values, expected ", count,
                " items x ", c.dim, " = one row per item");
  for (std::size_t k = 0; k < c.values.size(); ++k)
    if (!std::isfinite(c.values[k]))
      throw_error("conditions '", c.source, "': value ", c.values[k], " at item ", k / static_cast<std::size_t>(c.dim),
                  ", column ", k % static_cast<std::size_t>(c.dim), " is not finite");
}

Condition Condition::rows(std::int64_t begin, std::int64_t n) const {
  if (begin < 0 || n < 0 || begin > count() || n > count() - begin)
    throw_error("rows [", begin, ", ", begin + n, ") are outside the ", count(), " conditions of '", source, "'");
  Condition c = *this;
  const auto C = static_cast<std::ptrdiff_t>(dim);
  c.values.assign(values.begin() + begin * C, values.begin() + (begin + n) * C);
  return c;
}

Condition class_condition(int k, int classes, std::int64_t n) {
  if (classes < 1 || k < 0 || k >= classes)
    throw_error("class ", k, " is not one of the model's ", classes, " classes 0..", classes - 1);
  return condition_from_labels(std::vector<std::int64_t>(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)), k),
                               classes, "class " + std::to_string(k));
}

std::string describe_condition(ConditionKind kind, int dim) {
  switch (kind) {
    case ConditionKind::none: return "no condition";
    case ConditionKind::classes: return std::to_string(dim) + (dim == 1 ? " class" : " classes");
    case ConditionKind::covariates: return std::to_string(dim) + (dim == 1 ? " covariate" : " covariates");
  }
  return "?";
}

void Dataset::row(std::int64_t i, float* out) const { row_as<float>(i, out); }

Dataset Dataset::empty_copy() const {
  Dataset d;
  d.source = source;
  d.count = count;
  d.dim = dim;
  d.height = height;
  d.width = width;
  d.condition = condition;
  d.appended = appended;
  return d;
}

Dataset Dataset::slice(std::int64_t begin, std::int64_t n) const {
  if (begin < 0 || n < 0 || begin > count || n > count - begin)
    throw_error("items [", begin, ", ", begin + n, ") are outside the ", count, " items of '", source, "'");
  Dataset d = empty_copy();
  d.count = n;
  const auto D = static_cast<std::ptrdiff_t>(dim);
  if (const std::uint8_t* b = u8_values()) d.u8.assign(b + begin * D, b + (begin + n) * D);
  else if (const float* f = f32_values()) d.f32.assign(f + begin * D, f + (begin + n) * D);
  if (!condition.empty()) {
    const auto C = static_cast<std::ptrdiff_t>(condition.dim);
    d.condition.values.assign(condition.values.begin() + begin * C, condition.values.begin() + (begin + n) * C);
  }
  return d;
}

template <class T>
void Dataset::row_as(std::int64_t i, T* out) const {
  const std::size_t base = static_cast<std::size_t>(i) * static_cast<std::size_t>(dim);
  const std::uint8_t* bytes = is_u8() ? u8_values() + base : nullptr;
  const float* floats = is_u8() ? nullptr : f32_values() + base;
  if (mapping) {  // a copy of the row (pread, as read_rows), not the map's pages
    thread_local std::vector<float> row;  // dim floats hold a uint8 row too
    row.resize(static_cast<std::size_t>(dim));
    const std::size_t rb = static_cast<std::size_t>(dim) * (mapping->u8 ? 1 : 4);
    mapping->read(base * (mapping->u8 ? 1 : 4), rb, reinterpret_cast<unsigned char*>(row.data()));
    if (bytes) bytes = reinterpret_cast<const std::uint8_t*>(row.data());
    else floats = row.data();
  }
  if (bytes) {
    for (int j = 0; j < dim; ++j) out[j] = static_cast<T>(bytes[j]) * static_cast<T>(1.0 / 255.0);
  } else {
    for (int j = 0; j < dim; ++j) out[j] = static_cast<T>(floats[j]);
  }
}
template void Dataset::row_as<float>(std::int64_t, float*) const;
template void Dataset::row_as<double>(std::int64_t, double*) const;

namespace {
Dataset read_idx_images_as(const std::string& path, bool map);
}

Dataset read_idx_images(const std::string& path) { return read_idx_images_as(path, false); }

namespace {
Dataset read_idx_images_as(const std::string& path, bool map) {
  Reader in(path);
  const IdxHeader h = read_idx_header(in);
  if (h.dims.size() < 2)
    throw_error("'", path, "' has ", h.dims.size(), " dimension; an image file needs at least 2 (count, pixels...)",
                " - is this a labels file?");
  std::uint64_t item = 1;
  for (std::size_t i = 1; i < h.dims.size(); ++i) {
    if (h.dims[i] == 0) throw_error("'", path, "': dimension ", i, " is 0; every item dimension must be positive");
    item = checked_mul(item, h.dims[i], path);
  }
  if (item > static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
    throw_error("'", path, "': items of ", item, " values are too large");
  if (h.dims[0] == 0) throw_error("'", path, "' holds no images (its count is 0)");
  const std::uint64_t bytes = checked_mul(h.dims[0], item, path);
  Dataset d;
  d.source = path;
  d.count = static_cast<std::int64_t>(h.dims[0]);
  d.dim = static_cast<int>(item);
  if (h.dims.size() == 3) {
    d.height = static_cast<int>(h.dims[1]);
    d.width = static_cast<int>(h.dims[2]);
  }
  if (map) {
    d.mapping = map_file(path, 4 + 4 * h.dims.size(), true, bytes);
    set_picture_shape(d);
    d.validate();
    return d;
  }
  d.u8 = in.read_payload(bytes);
  set_picture_shape(d);
  return d;
}
}  // namespace

std::vector<std::uint8_t> read_idx_labels(const std::string& path) {
  Reader in(path);
  const IdxHeader h = read_idx_header(in);
  if (h.dims.size() != 1)
    throw_error("'", path, "' has ", h.dims.size(), " dimensions; a labels file has exactly 1");
  if (h.dims[0] == 0) throw_error("'", path, "' holds no labels (its count is 0)");
  return in.read_payload(checked_mul(h.dims[0], 1, path));
}

namespace {
// An NPY file's values as a Dataset; `descr` gets its dtype. one_d: a 1-D array (N,) is
// read as N items of one value (conditions); otherwise it must be 2-D.
// map: read (0), memory-map the values instead (1: float32 and uint8 only, others an error),
// or map them when they can be (2).
Dataset read_npy_values(const std::string& path, bool one_d, std::string* descr_out, int map = 0) {
  Reader in(path);
  unsigned char magic[8];
  in.read_exact(magic, 8, "NPY magic and version");
  if (std::memcmp(magic, "\x93NUMPY", 6) != 0) throw_error("'", path, "' is not an NPY file (bad magic)");
  const int major = magic[6];
  std::uint32_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    in.read_exact(b, 2, "NPY header length");
    header_len = b[0] | (std::uint32_t(b[1]) << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    in.read_exact(b, 4, "NPY header length");
    header_len = b[0] | (std::uint32_t(b[1]) << 8) | (std::uint32_t(b[2]) << 16) | (std::uint32_t(b[3]) << 24);
  } else {
    throw_error("'", path, "': NPY format version ", major, ".", int(magic[7]), " is not supported (expected 1, 2 or 3)");
  }
  if (header_len == 0 || header_len > (1u << 20)) throw_error("'", path, "': NPY header length ", header_len, " is invalid");
  std::string header(header_len, '\0');
  in.read_exact(header.data(), header_len, "NPY header");

  const std::string descr = npy_field(header, "descr", path);
  const std::string fortran = npy_field(header, "fortran_order", path);
  auto dims = npy_shape(npy_field(header, "shape", path), path);
  if (fortran != "False")
    throw_error("'", path, "' is stored in Fortran order; save it in C order (numpy.ascontiguousarray) and try again");
  if (one_d && dims.size() == 1) dims.push_back(1);
  if (dims.size() != 2)
    throw_error("'", path, "' has ", dims.size(), " dimensions; expected a 2-D array (items, features)");
  if (descr_out) *descr_out = descr;
  if (dims[0] == 0) throw_error("'", path, "' holds no items (shape[0] is 0)");
  if (dims[1] == 0) throw_error("'", path, "' has 0 features per item (shape[1] is 0)");
  if (dims[1] > static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
    throw_error("'", path, "': ", dims[1], " features per item is too many");

  const std::size_t data_offset = (major == 1 ? 10 : 12) + header_len;
  const bool as_bytes = descr == "|u1" || descr == "<u1" || descr == "u1";
  if (map == 2 && !as_bytes && descr != "<f4") map = 0;  // automatic: converted values are read
  if (map) {  // the payload in place: float32 or uint8, as stored
    const bool u8 = as_bytes;
    if (!u8 && descr != "<f4")
      throw_error("'", path, "' holds ", descr, " values, which cannot be memory-mapped (they are converted to float32 ",
                  "as they are read); save it as float32 or uint8 to map it, or read it without ", flag_of("mmap"));
    Dataset d;
    d.source = path;
    d.count = static_cast<std::int64_t>(dims[0]);
    d.dim = static_cast<int>(dims[1]);
    d.mapping = map_file(path, data_offset, u8, checked_mul(checked_mul(dims[0], dims[1], path), u8 ? 1 : 4, path));
    set_picture_shape(d);
    d.validate(false);  // the size; the floats' finite check comes at first use (once)
    return d;
  }
  std::size_t elem = 0;
  const bool integers = descr == "<i4" || descr == "<i8";  // counts: read as they are, as float32
  if (descr == "<f4" || descr == "<i4") elem = 4;
  else if (descr == "<f8" || descr == "<i8") elem = 8;
  else if (descr == "|u1" || descr == "<u1" || descr == "u1") elem = 1;
  else if (!descr.empty() && descr[0] == '>')
    throw_error("'", path, "': big-endian dtype '", descr, "' is not supported; convert with arr.astype('<f4')");
  else
    throw_error("'", path, "': dtype '", descr,
                "' is not supported; expected float32 ('<f4'), float64 ('<f8'), uint8 ('|u1'), int32 ('<i4') or int64 "
                "('<i8')");

  const std::uint64_t n = checked_mul(dims[0], dims[1], path);
  auto bytes = in.read_payload(checked_mul(n, elem, path));
  Dataset d;
  d.source = path;
  d.count = static_cast<std::int64_t>(dims[0]);
  d.dim = static_cast<int>(dims[1]);
  if (elem == 1) {
    d.u8 = std::move(bytes);
  } else {
    d.f32.resize(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) {
      double v;
      if (integers) {
        std::int64_t k;
        if (elem == 4) {
          std::int32_t k32;
          std::memcpy(&k32, bytes.data() + i * 4, 4);
          k = k32;
        } else {
          std::memcpy(&k, bytes.data() + i * 8, 8);
        }
        if (k < -(std::int64_t(1) << 24) || k > (std::int64_t(1) << 24))
          throw_error("'", path, "': integer ", k, " at item ", i / dims[1], ", feature ", i % dims[1],
                      " is beyond 2^24, which float32 holds exactly");
        v = double(k);
      } else if (elem == 4) {
        float f;
        std::memcpy(&f, bytes.data() + i * 4, 4);
        v = f;
      } else {
        std::memcpy(&v, bytes.data() + i * 8, 8);
      }
      if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max())
        throw_error("'", path, "': value ", v, " at item ", i / dims[1], ", feature ", i % dims[1],
                    std::isfinite(v) ? " does not fit in float32" : " is not finite");
      d.f32[static_cast<std::size_t>(i)] = static_cast<float>(v);
    }
  }
  set_picture_shape(d);
  return d;
}

bool is_npy(const std::string& path) {
  unsigned char head[6] = {0};
  std::size_t got;
  {
    Reader in(path);
    got = in.read(head, sizeof head);
  }
  if (got == 0) throw_error("'", path, "' is empty");
  return got == 6 && std::memcmp(head, "\x93NUMPY", 6) == 0;
}
}  // namespace

Dataset read_npy(const std::string& path) { return read_npy_values(path, false, nullptr); }

Dataset read_dataset(const std::string& path, DataAccess how) {
  // automatic: a large raw file is mapped (a .gz is read whole: it cannot be mapped)
  const bool automatic = how == DataAccess::automatic && larger_than_half_the_memory(path) && !is_gzip(path);
  const bool map = how == DataAccess::map || automatic;
  if (is_npy(path)) return read_npy_values(path, false, nullptr, !map ? 0 : automatic ? 2 : 1);
  return read_idx_images_as(path, map);
}

Condition condition_from_labels(const std::vector<std::int64_t>& labels, int classes, const std::string& source) {
  if (classes < 0) throw_error("conditions '", source, "': classes must be >= 0 (0: the largest label + 1), got ", classes);
  if (labels.empty()) throw_error("conditions '", source, "' hold no labels");
  std::int64_t top = -1;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0) throw_error("conditions '", source, "': label ", labels[i], " at item ", i, " is negative");
    if (classes > 0 && labels[i] >= classes)
      throw_error("conditions '", source, "': label ", labels[i], " at item ", i, " is not one of the ", classes,
                  " classes 0..", classes - 1, " (", flag_of("condition_classes"), ")");
    top = std::max(top, labels[i]);
  }
  if (classes == 0 && top + 1 > kMaxLayerWidth)
    throw_error("conditions '", source, "': label ", top, " would make ", top + 1, " classes; at most ", kMaxLayerWidth);
  Condition c;
  c.source = source;
  c.kind = ConditionKind::classes;
  c.dim = classes > 0 ? classes : static_cast<int>(top + 1);
  c.values.assign(labels.size() * static_cast<std::size_t>(c.dim), 0.0f);
  for (std::size_t i = 0; i < labels.size(); ++i) c.values[i * c.dim + static_cast<std::size_t>(labels[i])] = 1.0f;
  return c;
}

Condition condition_from_covariates(std::vector<float> values, std::int64_t count, int dim, const std::string& source) {
  if (count <= 0 || dim <= 0 || values.size() != static_cast<std::size_t>(count) * static_cast<std::size_t>(dim))
    throw_error("conditions '", source, "': ", values.size(), " values are not ", count, " items of ", dim,
                " covariates (each at least one)");
  for (std::size_t k = 0; k < values.size(); ++k)
    if (!std::isfinite(values[k]))
      throw_error("conditions '", source, "': value ", values[k], " at item ", k / static_cast<std::size_t>(dim),
                  ", column ", k % static_cast<std::size_t>(dim), " is not finite");
  Condition c;
  c.source = source;
  c.kind = ConditionKind::covariates;
  c.dim = dim;
  c.values = std::move(values);
  return c;
}

Condition read_condition(const std::string& path, int classes) {
  if (!is_npy(path)) {
    const std::vector<std::uint8_t> l = read_idx_labels(path);
    return condition_from_labels(std::vector<std::int64_t>(l.begin(), l.end()), classes, path);
  }
  std::string descr;
  Dataset a = read_npy_values(path, true, &descr);
  const bool integers = a.is_u8() || descr == "<i4" || descr == "<i8";
  if (!integers) return condition_from_covariates(std::move(a.f32), a.count, a.dim, path);
  if (a.dim != 1)
    throw_error("'", path, "' holds integers in ", a.dim, " columns; class labels are one column, shape (N,) or (N, 1) ",
                "(covariates are float32 or float64)");
  std::vector<std::int64_t> labels(static_cast<std::size_t>(a.count));
  for (std::size_t i = 0; i < labels.size(); ++i)
    labels[i] = a.is_u8() ? std::int64_t(a.u8[i]) : static_cast<std::int64_t>(a.f32[i]);
  return condition_from_labels(labels, classes, path);
}

void attach_condition(Dataset& data, Condition condition) {
  if (condition.empty()) {
    data.condition = Condition{};
    return;
  }
  if (condition.count() != data.count)
    throw_error("conditions '", condition.source, "' hold ", condition.count(), " rows but the data '", data.source,
                "' has ", data.count, " items: one condition per item, in the same order");
  data.condition = std::move(condition);
  data.validate();
}

Dataset with_condition_appended(const Dataset& data) {
  data.validate();
  const Condition& c = data.condition;
  Dataset v = data.empty_copy();
  v.condition = Condition{};
  if (c.empty()) {
    v.u8 = data.u8;
    v.f32 = data.f32;
    v.mapping = data.mapping;
    return v;
  }
  const std::size_t D = static_cast<std::size_t>(data.dim), C = static_cast<std::size_t>(c.dim), W = D + C;
  const std::size_t N = static_cast<std::size_t>(data.count);
  v.dim = static_cast<int>(W);
  v.appended = c.dim;
  v.height = 1;  // a view is no picture
  v.width = v.dim;
  const bool binary = std::all_of(c.values.begin(), c.values.end(), [](float x) { return x == 0.0f || x == 1.0f; });
  if (data.is_u8() && binary) {
    v.u8.resize(N * W);
    for (std::size_t i = 0; i < N; ++i) {
      std::copy_n(data.u8_values() + i * D, D, v.u8.begin() + static_cast<std::ptrdiff_t>(i * W));
      for (std::size_t j = 0; j < C; ++j) v.u8[i * W + D + j] = c.values[i * C + j] != 0.0f ? 255 : 0;  // 255 / 255 = 1
    }
    return v;
  }
  v.f32.resize(N * W);
  for (std::size_t i = 0; i < N; ++i) {
    data.row(static_cast<std::int64_t>(i), v.f32.data() + i * W);
    std::copy_n(c.values.begin() + static_cast<std::ptrdiff_t>(i * C), C, v.f32.begin() + static_cast<std::ptrdiff_t>(i * W + D));
  }
  return v;
}

namespace {
// Where Debian's dataset-fashion-mnist puts the files.
const char* const kFashionDir = "/usr/share/datasets/fashion-mnist/";
std::string fashion_images(bool train) {
  return std::string(kFashionDir) + (train ? "train-images-idx3-ubyte.gz" : "t10k-images-idx3-ubyte.gz");
}
}  // namespace

std::string default_fashion_mnist(bool train) {
  const std::string path = fashion_images(train);
  if (!std::filesystem::exists(path))
    throw_error("Fashion-MNIST not found at ", path,
                "; install it with 'sudo apt-get install dataset-fashion-mnist' or pass ", flag_of("train"), " and ",
                flag_of("test"));
  return path;
}

void resolve_data_paths(std::string& train_path, std::string& test_path) {
  if (!train_path.empty() && test_path.empty()) {
    std::error_code ec;
    if (!std::filesystem::equivalent(train_path, fashion_images(true), ec))
      throw_error(option("train").name(), " '", train_path, "' is given without ", option("test").name(),
                  ": name its test set too (the default test set is "
                  "Fashion-MNIST's, other data than the model would learn)");
  }
  if (train_path.empty()) train_path = default_fashion_mnist(true);
  if (test_path.empty()) test_path = default_fashion_mnist(false);
}

std::string default_fashion_mnist_labels(bool train) {
  return std::string(kFashionDir) + (train ? "train-labels-idx1-ubyte.gz" : "t10k-labels-idx1-ubyte.gz");
}

void resolve_condition_paths(const std::string& condition_path, std::string& test_condition_path,
                             const std::string& test_path) {
  if (condition_path.empty()) {
    if (!test_condition_path.empty())
      throw_error(flag_of("test_condition"), " '", test_condition_path, "' is given without ", flag_of("condition"),
                  ": a conditional model needs the training items' conditions too");
    return;
  }
  if (!test_condition_path.empty()) return;
  std::error_code ec;
  if (std::filesystem::equivalent(condition_path, default_fashion_mnist_labels(true), ec) &&
      std::filesystem::equivalent(test_path, fashion_images(false), ec)) {
    test_condition_path = default_fashion_mnist_labels(false);
    return;
  }
  throw_error(flag_of("condition"), " '", condition_path, "' is given without ", flag_of("test_condition"),
              ": name the test items' conditions too");
}

// A mapped dataset's values as its own (binarization changes them; the file stays as it is).
void materialize(Dataset& d) {
  if (!d.mapping) return;
  const std::size_t n = static_cast<std::size_t>(d.count) * static_cast<std::size_t>(d.dim);
  if (const std::uint8_t* b = d.u8_values()) d.u8.assign(b, b + n);
  else d.f32.assign(d.f32_values(), d.f32_values() + n);
  d.mapping.reset();
}

void binarize_static(Dataset& d) {
  d.validate();
  materialize(d);
  for (auto& v : d.u8) v = v >= 128 ? 255 : 0;  // v/255 > 0.5
  for (auto& v : d.f32) v = v > 0.5f ? 1.0f : 0.0f;
}

void binarize_fixed_draw(Dataset& d, std::uint64_t seed) {
  d.validate();
  materialize(d);
  HostPhilox rng(derive_seed(seed, RngStream::test_binarize));
  const std::size_t rows_per_chunk = 1024;
  std::vector<float> u(rows_per_chunk * static_cast<std::size_t>(d.dim));
  std::vector<float> x(static_cast<std::size_t>(d.dim));
  for (std::int64_t r0 = 0; r0 < d.count; r0 += rows_per_chunk) {
    const std::size_t rows = static_cast<std::size_t>(std::min<std::int64_t>(rows_per_chunk, d.count - r0));
    rng.uniform(u.data(), rows * d.dim, static_cast<std::uint64_t>(r0) * d.dim);
    for (std::size_t r = 0; r < rows; ++r) {
      d.row(r0 + static_cast<std::int64_t>(r), x.data());
      const std::size_t base = (static_cast<std::size_t>(r0) + r) * d.dim;
      for (int j = 0; j < d.dim; ++j) {
        const bool on = u[r * d.dim + j] <= x[j];
        if (d.is_u8()) d.u8[base + j] = on ? 255 : 0;
        else d.f32[base + j] = on ? 1.0f : 0.0f;
      }
    }
  }
}

}  // namespace vae
