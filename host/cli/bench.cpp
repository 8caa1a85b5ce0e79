// `vae bench`: the same model on the same data on every available implementation (the CUDA
// backend, the CPU backend, PyTorch eager and torch.compile through bench/torch_reference.py),
// side by side in one run, as a table on stdout and JSON in a file.
//
// Per implementation and case: ms per step (median over repeats of K steps, after warm-up;
// a repeat ends with the backend's one host read, so device work is included), samples/s,
// seconds per epoch measured over real epochs, the test -ELBO after those epochs, and ratios
// against the CPU path and against PyTorch eager.
//
// The timed repeats are interleaved: every implementation of a case is set up and warmed up
// first (PyTorch in a subprocess that times blocks of steps on request, torch_reference.py
// --serve), then repeat r times K steps of each in turn, the order reversed every other round.
// A stretch of noise on a shared machine then falls on all of them alike, and the ratios are
// the medians of the per-round ratios. The epochs run afterwards, one implementation at a time.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/config_flags.h"
#include "vae/vae.h"

extern char** environ;

namespace vae::cli {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::ordered_json;

struct BenchOptions {
  std::string impls = "auto";
  std::string batches = "128,1024,4096";
  std::string models = "ref,wide";
  bool models_given = false;  // --models on the command line, not its default
  GivenOptions model_options;  // the table's model options given instead of --models: one model
  int steps = 100;
  int repeats = 10;
  int warmup = 10;
  int epochs = 1;
  int threads = 0;
  int torch_threads = 1;
  int block_warmup_ms = 25;
  std::string python;
  std::string torch_script = std::string(VAE_SOURCE_DIR) + "/bench/torch_reference.py";
  std::string train_path, test_path;
  std::string json_path = "bench.json";
  std::uint64_t seed = 1;
};

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

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs a command; returns its exit status and stdout+stderr.
int run_command(const std::string& cmd, std::string& output) {
  output.clear();
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) output.append(buf, n);
  const int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  const auto p = t.rfind('\n');
  return p == std::string::npos ? t : t.substr(p + 1);
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const std::size_t i = static_cast<std::size_t>(pos);
  const double f = pos - double(i);
  return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

// The median over rounds of ref's ms per step / r's: both timed in the same rounds, so the
// ratio of each round compares them under the same conditions.
double paired_ratio(const Result& ref, const Result& r) {
  const std::size_t n = std::min(ref.block_ms.size(), r.block_ms.size());
  if (n == 0) return 0;
  std::vector<double> ratios;
  for (std::size_t i = 0; i < n; ++i) ratios.push_back(ref.block_ms[i] / r.block_ms[i]);
  return percentile(ratios, 0.5);
}

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

std::string source_commit() {
  std::string out;
  if (run_command("git -C " + shell_quote(VAE_SOURCE_DIR) + " rev-parse --short HEAD", out) != 0) return "unknown";
  std::string commit = last_line(out);
  std::string status;
  if (run_command("git -C " + shell_quote(VAE_SOURCE_DIR) + " status --porcelain --untracked-files=no", status) == 0 &&
      !status.empty())
    commit += "-dirty";
  return commit;
}

// Seconds per epoch: the mean of the epochs after the first when there are several (the
// first holds graph capture, torch.compile's compilation, caches warming), else the one.
double steady_epoch_seconds(const std::vector<double>& s) {
  if (s.empty()) return 0;
  if (s.size() == 1) return s[0];
  double sum = 0;
  for (std::size_t i = 1; i < s.size(); ++i) sum += s[i];
  return sum / double(s.size() - 1);
}

// One implementation of one case, set up and warmed up, that times blocks of steps on request.
// A contender that fails keeps its message as its result's error and times nothing more.
class Contender {
 public:
  // A step takes `batch` items, or the whole dataset when it is smaller (the script's min(batch, n)).
  Contender(std::string impl, int batch, std::int64_t train_count) {
    r_.impl = std::move(impl);
    r_.items = static_cast<int>(std::min<std::int64_t>(batch, train_count));
  }
  virtual ~Contender() = default;
  bool ok() const { return r_.error.empty(); }
  // Runs untimed steps for at least `warm_ms` (at least one), then k timed steps; records
  // their ms per step.
  void time_block(int k, int warm_ms) {
    if (!ok()) return;
    try {
      r_.block_ms.push_back(block_ms(k, warm_ms) / k);
    } catch (const std::exception& e) {
      r_.error = e.what();
    }
  }
  // After the rounds: the real epochs and the summary of the blocks.
  Result finish() {
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

 protected:
  virtual double block_ms(int k, int warm_ms) = 0;  // milliseconds for k steps after warm_ms of untimed ones
  virtual void epochs() = 0;
  void fail(const std::string& why) { r_.error = why.empty() ? "failed" : why; }
  Result r_;
};

// The CUDA or CPU backend in this process.
class BackendContender final : public Contender {
 public:
  BackendContender(Device device, const Case& c, const BenchOptions& o, std::shared_ptr<const Dataset> train,
                   const Dataset& test)
      : Contender(device == Device::cuda ? "vae-cuda" : "vae-cpu", c.batch, train->count),
        device_(device), case_(c), opt_(o), train_(std::move(train)), test_(test) {
    tc_.batch = c.batch;
    tc_.seed = o.seed;
    tc_.threads = o.threads;
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
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
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
    }
    r_.epoch_seconds = steady_epoch_seconds(seconds);
    r_.test_loss = backend->evaluate(test_).mean_loss();
  }

  Device device_;
  Case case_;
  BenchOptions opt_;
  std::shared_ptr<const Dataset> train_;
  const Dataset& test_;
  TrainConfig tc_;
  std::unique_ptr<Backend> backend_;
  std::optional<BatchStream> stream_;
  Batch b_;
};

// bench/torch_reference.py --serve in a subprocess: its stdin takes "steps K" and "end", its
// stdout (with its stderr) answers "@ready" and "@ms T" among lines of its own.
class TorchContender final : public Contender {
 public:
  TorchContender(const std::string& impl, const std::string& torch_device, const Case& c, const BenchOptions& o,
                 const std::string& train_path, const std::string& test_path, std::int64_t train_count)
      : Contender(impl, c.batch, train_count) {
    json_path_ = temporary_file("PyTorch's JSON");
    config_path_ = temporary_file("PyTorch's configuration");
    if (json_path_.empty() || config_path_.empty()) return;
    // The script takes the model and the training settings as config.json holds them.
    TrainConfig tc;
    tc.batch = c.batch;
    tc.eval_batch = std::max(1000, c.batch);
    tc.epochs = o.epochs;
    tc.seed = o.seed;
    tc.train_path = train_path;
    tc.test_path = test_path;
    tc.device = parse_device(torch_device);
    tc.threads = o.torch_threads;
    write_file_atomic(config_path_, config_to_json(c.model, tc));
    std::ostringstream cmd;
    cmd << "exec " << shell_quote(o.python) << " " << shell_quote(o.torch_script) << " --serve --config "
        << shell_quote(config_path_) << " --warmup " << o.warmup << " --json " << shell_quote(json_path_);
    if (impl == "torch-compile")
      cmd << " --compile --compile-mode " << (torch_device == "cuda" ? "reduce-overhead" : "default");
    if (!start(cmd.str())) return;
    if (!await("@ready").has_value()) stop();
  }
  ~TorchContender() override {
    stop();
    for (const std::string& path : {json_path_, config_path_})
      if (!path.empty()) std::remove(path.c_str());
  }

 private:
  // A new empty file in /tmp, or "" after failing the contender.
  std::string temporary_file(const char* what) {
    char tmpl[] = "/tmp/vae-bench-torch-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0) return fail(std::string("cannot create a temporary file for ") + what), std::string();
    close(fd);
    return tmpl;
  }

  bool start(const std::string& cmd) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) return fail("cannot create a pipe to PyTorch"), false;
    if (pipe2(out, O_CLOEXEC) != 0) {
      close(in[0]);
      close(in[1]);
      return fail("cannot create a pipe from PyTorch"), false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, out[1], 2);
    const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
    const int rc = posix_spawn(&pid_, "/bin/sh", &fa, nullptr, const_cast<char* const*>(argv), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) {
      close(in[1]);
      close(out[0]);
      pid_ = -1;
      return fail(std::string("cannot start /bin/sh for PyTorch: ") + std::strerror(rc)), false;
    }
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
    return true;
  }

  // Reads lines until one starts with `tag` (an empty tag: until the output ends); returns
  // the rest of that line, or nothing when the output ended first. Keeps the last other line.
  std::optional<std::string> read_until(const std::string& tag) {
    char* line = nullptr;
    std::size_t cap = 0;
    std::optional<std::string> found;
    while (getline(&line, &cap, from_) >= 0) {
      std::string l(line);
      while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
      if (!tag.empty() && l.rfind(tag, 0) == 0) {
        found = l.substr(tag.size());
        break;
      }
      if (!l.empty()) last_ = l;
    }
    std::free(line);
    return found;
  }
  // As read_until, but the subprocess ending first is a failure naming its exit and last line.
  std::optional<std::string> await(const std::string& tag) {
    auto found = read_until(tag);
    if (!found) fail("exit " + std::to_string(reap()) + ": " + last_);
    return found;
  }

  void send(const std::string& line) {
    if (!to_ || std::fputs((line + "\n").c_str(), to_) < 0 || std::fflush(to_) != 0)
      throw_error("PyTorch's subprocess stopped reading its commands (", last_, ")");
  }

  double block_ms(int k, int warm_ms) override {
    send("steps " + std::to_string(k) + " " + std::to_string(warm_ms));
    const auto t = await("@ms ");
    if (!t) throw_error(r_.error);
    char* end = nullptr;
    const double ms = std::strtod(t->c_str(), &end);
    if (end == t->c_str() || !std::isfinite(ms) || ms <= 0)
      throw_error("PyTorch's subprocess answered '@ms ", *t, "', expected a positive time in milliseconds");
    return ms;
  }

  void epochs() override {
    send("end");
    std::fclose(to_);
    to_ = nullptr;
    read_until("");  // its epochs' output, until it exits
    const int status = reap();
    if (status != 0) throw_error("exit ", status, ": ", last_);
    std::ifstream f(json_path_);
    const auto j = nlohmann::json::parse(f);
    r_.device = "torch " + j.value("torch_version", std::string("?")) + " " + j.value("device", std::string("?")) +
                ", " + std::to_string(j.value("threads", 0)) + " thread(s)";
    const auto& epochs = j.at("epochs");
    if (!epochs.empty()) {
      std::vector<double> seconds;
      for (const auto& e : epochs) seconds.push_back(e.at("seconds").get<double>());
      r_.epoch_seconds = steady_epoch_seconds(seconds);
      r_.test_loss = epochs.back().at("test_loss").get<double>();
    }
  }

  // Waits for the subprocess once; its exit status (128+signal when killed).
  int reap() {
    if (pid_ <= 0) return status_;
    int st = 0;
    while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return status_;
  }

  void stop() {
    if (to_) std::fclose(to_);  // its stdin ends: the script leaves timing and finishes
    to_ = nullptr;
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      reap();
    }
    if (from_) std::fclose(from_);
    from_ = nullptr;
  }

  pid_t pid_ = -1;
  int status_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
  std::string json_path_, config_path_, last_ = "(no output)";
};

// An implementation of the default list that cannot run here: its rows say why.
class SkippedContender final : public Contender {
 public:
  SkippedContender(const std::string& impl, const std::string& why) : Contender(impl, 1, 1) { fail("skipped: " + why); }

 private:
  double block_ms(int, int) override { return 0; }
  void epochs() override {}
};

// --impl as the implementations' own names, in the order given; empty for auto (the default list).
std::vector<std::string> named_impls(const std::string& text) {
  std::vector<std::string> impls;
  if (text == "auto") return impls;
  std::stringstream ss(text);
  std::string s;
  while (std::getline(ss, s, ',')) {
    std::string impl = s;
    if (s == "cuda" || s == "vae-cuda") impl = "vae-cuda";
    else if (s == "cpu" || s == "vae-cpu") impl = "vae-cpu";
    else if (s == "auto") throw_error("--impl: auto is the default list and stands alone; got '", text, "'");
    else if (s != "torch" && s != "torch-compile")
      throw_error("--impl: unknown implementation '", s, "'; expected cuda, cpu, torch, torch-compile or auto");
    // Twice in one list would time it twice and pair it with itself.
    if (std::find(impls.begin(), impls.end(), impl) != impls.end())
      throw_error("--impl: '", text, "' names ", impl, " twice");
    impls.push_back(impl);
  }
  return impls;
}

// Why PyTorch, and why torch.compile, cannot run here ("" when they can), asked of --python
// before any timing.
struct TorchProbe {
  std::string torch_why, compile_why;
};

TorchProbe probe_torch(const BenchOptions& o, const std::string& torch_device) {
  TorchProbe p;
  std::string out, version;
  int rc = -1, compile = 0, cuda = 0;
  if (access(o.torch_script.c_str(), R_OK) != 0) {
    p.torch_why = "no PyTorch script '" + o.torch_script + "'";
  } else {
    rc = run_command("exec " + shell_quote(o.python) + " -c " +
                         shell_quote("import torch; print('@torch', torch.__version__, int(hasattr(torch, 'compile')), "
                                     "int(torch.cuda.is_available()))"),
                     out);
    std::istringstream lines(out);
    std::string line, tag;
    bool found = false;
    while (!found && std::getline(lines, line)) {
      std::istringstream fields(line);
      found = fields >> tag >> version >> compile >> cuda && tag == "@torch";
    }
    const std::string said = last_line(out);
    if (rc != 0 || !found)
      p.torch_why = "no PyTorch for " + o.python + " (" + (said.empty() ? "exit " + std::to_string(rc) : said) + ")";
    else if (torch_device == "cuda" && !cuda) p.torch_why = "PyTorch " + version + " cannot use the GPU";
  }
  p.compile_why = p.torch_why;
  if (p.compile_why.empty() && !compile)
    p.compile_why = "PyTorch " + version + " has no torch.compile (it needs PyTorch >= 2.0)";
  return p;
}

// The cases: each model (named by its widths, input first) at each batch size.
// The one model the table's model options describe (the rest as `vae train` has them).
ModelConfig one_model(const GivenOptions& given) {
  ModelConfig m;
  TrainConfig t;
  apply_options(given, m, t);
  m.validate();
  return m;
}

std::vector<Case> make_cases(const BenchOptions& o, int input_dim) {
  std::vector<ModelConfig> models;
  if (!o.model_options.empty()) {
    models.push_back(one_model(o.model_options));
  } else {
    std::stringstream ss(o.models);
    std::string name;
    while (std::getline(ss, name, ',')) {
      ModelConfig m;  // ref: the defaults, 400 hidden units and 20 latent dimensions
      if (name == "wide") {
        m.encoder_hidden = {1024, 1024};
        m.decoder_hidden = {1024, 1024};
        m.latent = 64;
      } else if (name != "ref") {
        throw_error("--models: unknown model '", name, "'; expected ref and/or wide (or describe one model with the ",
                    "model options of vae train)");
      }
      models.push_back(m);
    }
  }
  std::vector<Case> cases;
  for (ModelConfig& m : models) {
    m.input_dim = input_dim;
    std::string name = std::to_string(input_dim);
    for (int w : m.encoder_hidden) name += "-" + std::to_string(w);
    name += "-" + std::to_string(m.latent);
    for (int b : parse_int_list(o.batches, "--batch")) cases.push_back({name, m, b});
  }
  return cases;
}

std::string fmt(double v, int prec) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

// The options that need no data, checked before anything is read or timed: a mistake found
// only after the benchmark ran costs the whole run.
void check_options(const BenchOptions& o) {
  const std::pair<const char*, int> at_least_one[] = {{"--steps", o.steps}, {"--repeats", o.repeats}};
  for (const auto& [flag, v] : at_least_one)
    if (v < 1) throw_error(flag, " must be >= 1, got ", v);
  const std::pair<const char*, int> at_least_zero[] = {
      {"--warmup", o.warmup}, {"--epochs", o.epochs}, {"--block-warmup-ms", o.block_warmup_ms}};
  for (const auto& [flag, v] : at_least_zero)
    if (v < 0) throw_error(flag, " must be >= 0, got ", v);
  const Option& threads = option("threads");
  if (o.threads < 0) throw_error(threads.flag, " must be ", threads.range_text(), ", got ", o.threads);
  if (o.torch_threads < 0)
    throw_error("--torch-threads must be >= 0 (0 = PyTorch's default), got ", o.torch_threads);
  if (o.models_given && !o.model_options.empty())
    throw_error("--models and ", o.model_options.front().first->flag,
                " cannot be combined: the model options describe the one model to run instead of --models");
  for (const auto& [opt, text] : o.model_options)  // bench's --batch takes a list; a model is one size at a time
    if (opt->is_integer() && text.find(',') != std::string::npos)
      throw_error(opt->flag, ": one ", opt->key == std::string("latent") ? "latent size" : "number", ", got '", text, "'");
  if (!o.model_options.empty()) one_model(o.model_options);  // its errors now, before any data is read
  // The JSON is written at the end; its path is checked now.
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string& path = o.json_path;
  if (path.empty()) throw_error("--json: give a file name");
  if (fs::is_directory(path, ec))
    throw_error("--json: cannot write '", path, "': it is a directory (give a file name)");
  const fs::path parent = fs::path(path).parent_path();
  const std::string dir = parent.empty() ? "." : parent.string();
  if (!fs::is_directory(dir, ec)) throw_error("--json: cannot write '", path, "': no directory '", dir, "'");
  if (access(dir.c_str(), W_OK) != 0)
    throw_error("--json: cannot write '", path, "' in '", dir, "': ", std::strerror(errno));
}

void run_bench(const BenchOptions& opt) {
  BenchOptions o = opt;
  check_options(o);
  const std::vector<std::string> named = named_impls(o.impls);
  std::vector<std::string> impls = named;
  signal(SIGPIPE, SIG_IGN);  // a PyTorch subprocess that dies is a failed write, reported, not a killed bench
  if (o.python.empty()) o.python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  std::string train_path = o.train_path, test_path = o.test_path;
  resolve_data_paths(train_path, test_path);
  auto train = std::make_shared<Dataset>(read_dataset(train_path));
  const Dataset test = read_dataset(test_path);
  if (test.dim != train->dim)
    throw_error(flag_of("test"), " '", test_path, "' has ", test.dim, " features per item but ", flag_of("train"), " '",
                train_path, "' has ", train->dim);

  std::string why;
  const bool have_cuda = cuda_usable(&why);
  const std::string torch_device = have_cuda ? "cuda" : "cpu";
  // The default list holds what can run here: the CUDA backend only with a GPU, and PyTorch
  // as a row that says why it is skipped when it cannot run. An implementation in the list
  // that then fails is a failure; one the user named always is.
  std::map<std::string, std::string> skipped;  // implementation -> why it cannot run here
  if (named.empty()) {
    if (have_cuda) impls.push_back("vae-cuda");
    impls.insert(impls.end(), {"vae-cpu", "torch", "torch-compile"});
    const TorchProbe torch = probe_torch(o, torch_device);
    if (!torch.torch_why.empty()) skipped["torch"] = torch.torch_why;
    if (!torch.compile_why.empty()) skipped["torch-compile"] = torch.compile_why;
  }
  const auto cases = make_cases(o, train->dim);

  json doc;
  doc["date"] = [] {
    char buf[32];
    const std::time_t t = std::time(nullptr);
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
    return std::string(buf);
  }();
  doc["commit"] = source_commit();
  doc["cpu"] = cpu_model_name();
  doc["cores"] = std::thread::hardware_concurrency();
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  doc["OPENBLAS_CORETYPE"] = coretype ? coretype : "";
  doc["gpu"] = have_cuda ? "usable" : why;
  doc["train"] = train_path;
  doc["options"] = {{"steps", o.steps}, {"repeats", o.repeats}, {"warmup", o.warmup}, {"epochs", o.epochs},
                    {"threads", o.threads}, {"torch_threads", o.torch_threads}, {"seed", o.seed},
                    {"block_warmup_ms", o.block_warmup_ms}, {"timing", "interleaved rounds; ratios are medians of per-round ratios"}};
  doc["results"] = json::array();
  // The yardstick of "fraction of the SGEMM rate": the device's own FP32 GEMM rate.
  // Measured again before every case; the best so far serves (noise only ever lowers it).
  std::map<std::string, double> sgemm;
  auto measure_sgemm = [&] {
    sgemm["cpu"] = std::max(sgemm["cpu"], measure_sgemm_gflops(Device::cpu, 2048, 2048, 2048));
    if (have_cuda) sgemm["cuda"] = std::max(sgemm["cuda"], measure_sgemm_gflops(Device::cuda, 8192, 8192, 8192));
  };
  measure_sgemm();

  std::cout << "vae bench: " << doc["cpu"].get<std::string>() << ", " << doc["cores"] << " cores"
            << (have_cuda ? "" : ", no GPU (" + why + ")") << "; commit " << doc["commit"].get<std::string>() << "\n"
            << "ms/step: median of " << o.repeats << " interleaved rounds of " << std::max(1, o.steps / o.repeats)
            << " steps per implementation, after " << o.warmup << " warm-up steps; ratios: median of the rounds' "
            << "ratios; s/epoch and test -ELBO over " << o.epochs << " real epoch(s)\n"
            << "FP32 SGEMM rate (the yardstick of %sgemm; the best so far, measured again before each case): CPU " << fmt(sgemm["cpu"], 0) << " GFLOP/s (2048^3)"
            << (have_cuda ? ", GPU " + fmt(sgemm["cuda"], 0) + " GFLOP/s (8192^3, cuBLAS, no TF32)" : std::string())
            << "\n\n";
  std::printf("%-17s %6s %-14s %10s %12s %9s %10s %8s %9s %8s %7s  %s\n", "model", "batch", "impl", "ms/step",
              "samples/s", "s/epoch", "test-ELBO", "vs cpu", "vs torch", "GFLOP/s", "%sgemm", "device");
  const int K = std::max(1, o.steps / o.repeats);
  std::map<std::string, std::pair<int, std::string>> failures;  // implementation -> failed cases, the first's error
  for (const auto& c : cases) {
    if (&c != &cases.front()) measure_sgemm();
    std::vector<std::unique_ptr<Contender>> contenders;
    for (const auto& impl : impls) {
      if (skipped.count(impl))
        contenders.push_back(std::make_unique<SkippedContender>(impl, skipped.at(impl)));
      else if (impl == "vae-cuda" || impl == "vae-cpu")
        contenders.push_back(std::make_unique<BackendContender>(impl == "vae-cuda" ? Device::cuda : Device::cpu, c, o,
                                                                train, test));
      else
        contenders.push_back(std::make_unique<TorchContender>(impl, torch_device, c, o, train_path, test_path, train->count));
    }
    // The rounds: K steps of each in turn, every other round in reverse order, each block after
    // untimed steps that bring caches, threads and clocks back after the other side ran.
    for (int rep = 0; rep < o.repeats; ++rep)
      for (std::size_t i = 0; i < contenders.size(); ++i) {
        auto& ct = *contenders[rep % 2 ? contenders.size() - 1 - i : i];
        if (!ct.ok()) continue;
        ct.time_block(K, o.block_warmup_ms);
      }
    std::vector<Result> results;
    for (auto& ct : contenders) {
      results.push_back(ct->finish());
      ct.reset();  // a finished subprocess or backend lets its memory go now
    }
    const Result* cpu_result = nullptr;
    const Result* torch_result = nullptr;
    for (const auto& r : results) {
      if (r.ok && r.impl == "vae-cpu") cpu_result = &r;
      if (r.ok && r.impl == "torch") torch_result = &r;
    }
    for (const auto& r : results) {
      json jr = {{"model", c.model_name}, {"batch", c.batch}, {"impl", r.impl}, {"device", r.device}, {"ok", r.ok}};
      if (!r.ok) {
        jr["error"] = r.error;
        if (skipped.count(r.impl)) {
          jr["skipped"] = true;
        } else {
          auto& f = failures[r.impl];
          if (f.first++ == 0) f.second = r.error;
        }
        std::printf("%-17s %6d %-14s %s\n", c.model_name.c_str(), c.batch, r.impl.c_str(), ("n/a: " + r.error).c_str());
      } else {
        const double vs_cpu = cpu_result ? paired_ratio(*cpu_result, r) : 0;
        const double vs_torch = torch_result ? paired_ratio(*torch_result, r) : 0;
        const bool on_gpu = r.impl == "vae-cuda" || (r.impl != "vae-cpu" && torch_device == "cuda");
        const double gflops = train_step_gemm_flops(c.model, r.items, c.model.samples) / (r.ms_median * 1e6);
        const double of_sgemm = gflops / sgemm[on_gpu ? "cuda" : "cpu"];
        jr.update({{"items_per_step", r.items}, {"ms_per_step_median", r.ms_median}, {"ms_per_step_p10", r.ms_p10}, {"ms_per_step_p90", r.ms_p90},
                   {"ms_per_step_rounds", r.block_ms}, {"samples_per_sec", r.samples_per_sec},
                   {"epoch_seconds", r.epoch_seconds}, {"test_loss", r.test_loss}, {"epochs", o.epochs},
                   {"speedup_vs_cpu", vs_cpu}, {"speedup_vs_torch", vs_torch}, {"gemm_gflops_per_s", gflops},
                   {"fraction_of_sgemm", of_sgemm}});
        std::printf("%-17s %6d %-14s %10s %12s %9s %10s %8s %9s %8s %6s%%  %s\n", c.model_name.c_str(), c.batch,
                    r.impl.c_str(), fmt(r.ms_median, 3).c_str(), fmt(r.samples_per_sec, 0).c_str(),
                    o.epochs ? fmt(r.epoch_seconds, 3).c_str() : "-", o.epochs ? fmt(r.test_loss, 2).c_str() : "-",
                    vs_cpu > 0 ? (fmt(vs_cpu, 2) + "x").c_str() : "-", vs_torch > 0 ? (fmt(vs_torch, 2) + "x").c_str() : "-",
                    fmt(gflops, 0).c_str(), fmt(100 * of_sgemm, 1).c_str(), r.device.c_str());
      }
      doc["results"].push_back(jr);
      std::fflush(stdout);
    }
  }
  doc["sgemm_gflops"] = sgemm;
  write_file_atomic(o.json_path, doc.dump(2) + "\n");
  std::cout << "\nwrote " << o.json_path << "\n";
  // Every row is written first; then a failed implementation makes the exit status say so.
  std::string failed;
  for (const auto& impl : impls) {
    const auto f = failures.find(impl);
    if (f == failures.end()) continue;
    std::string first = f->second.second;
    std::replace(first.begin(), first.end(), '\n', ' ');
    failed += (failed.empty() ? "" : "; ") + impl + " failed in " + std::to_string(f->second.first) + " of " +
              std::to_string(cases.size()) + (cases.size() == 1 ? " case: " : " cases: ") + first;
  }
  if (!failed.empty()) throw_error(failed, "; every row is in the table above and in '", o.json_path, "'");
}

}  // namespace

void add_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Benchmark the CUDA backend, the CPU backend and PyTorch side by side");
  cmd->add_option("--impl", o->impls, "Implementations: auto (what can run here), or a list of cuda, cpu, torch, "
                  "torch-compile")->capture_default_str();
  cmd->add_option("--batch", o->batches, "Batch sizes, comma-separated")->capture_default_str();
  CLI::Option* models =
      cmd->add_option("--models", o->models, "ref (784-400-20) and/or wide (784-1024-1024-64)")->capture_default_str();
  cmd->add_option("--steps", o->steps, "Timed steps per implementation and case")->capture_default_str();
  cmd->add_option("--repeats", o->repeats, "Timing rounds; each times steps/repeats steps of every implementation")
      ->capture_default_str();
  cmd->add_option("--block-warmup-ms", o->block_warmup_ms,
                  "Untimed steps before each timed block, for at least this long (at least one step)")
      ->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Warm-up steps before timing (graph capture, caches)")->capture_default_str();
  cmd->add_option("--epochs", o->epochs, "Real epochs for s/epoch and the test -ELBO (0: timing only)")->capture_default_str();
  add_table_option(cmd, "threads", o->threads, "CPU backend threads; 0 = all cores")->capture_default_str();
  cmd->add_option("--torch-threads", o->torch_threads, "PyTorch threads (1 is its fastest on 2 cores)")->capture_default_str();
  cmd->add_option("--python", o->python, "Python with PyTorch; default /usr/bin/python3");
  cmd->add_option("--torch-script", o->torch_script, "The PyTorch reference script")->capture_default_str();
  add_table_option(cmd, "train", o->train_path);
  add_table_option(cmd, "test", o->test_path);
  add_table_option(cmd, "seed", o->seed)->capture_default_str();
  cmd->add_option("--json", o->json_path, "Write the results as JSON here")->capture_default_str();
  cmd->footer(
      "\nEvery implementation trains the same model on the same in-memory data (no data loader on any side).\n"
      "Timing: all implementations of a case are set up and warmed up first (PyTorch in a subprocess, driven\n"
      "through bench/torch_reference.py --serve), then timed in interleaved rounds: each round runs\n"
      "steps/repeats steps of each in turn (after --block-warmup-ms of untimed steps), every other round\n"
      "in reverse order, so that noise on a shared machine falls on all of them alike.\n"
      "ms/step: the median over the rounds.\n"
      "s/epoch: with --epochs >= 2, the mean of the epochs after the first (which holds graph capture or\n"
      "torch.compile's compilation); test -ELBO: after the last epoch.\n"
      "ratios: 'vs cpu' = CPU-path ms/step / this ms/step; 'vs torch' = PyTorch eager ms/step / this ms/step,\n"
      "each the median of the per-round ratios.\n"
      "GFLOP/s: the step's GEMM FLOPs (forward, weight and input gradients) per second; %sgemm: that rate as a\n"
      "fraction of the same device's FP32 SGEMM rate (the best of 10 products before each case, and of the\n"
      "cases before it).\n"
      "Exit status 1 when an implementation fails (after the table and the JSON, whose rows say why); with\n"
      "--impl auto, PyTorch or torch.compile that cannot run here is a row that says so, not a failure.\n"
      "Example: vae bench --batch 128 --models ref --epochs 1 --json bench/results/cpu.json");
  // Instead of --models: one model, described by vae train's model options.
  auto model_flags = std::make_shared<ConfigFlags>(
      cmd, [](const Option& opt) { return opt.group == OptionGroup::model; }, false);
  cmd->callback([o, models, model_flags]() {
    o->models_given = models->count() > 0;
    o->model_options = model_flags->given();
    run_bench(*o);
  });
}

}  // namespace vae::cli
