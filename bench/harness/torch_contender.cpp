// PyTorch's contender: bench/torch_reference.py --serve in a subprocess, and the probe that
// says whether PyTorch and torch.compile can run here at all.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "contender.h"
#include "vae/config.h"
#include "vae/error.h"
#include "vae/io.h"

extern char** environ;

namespace vae::bench {
namespace {

// bench/torch_reference.py --serve in a subprocess: its stdin takes "steps K" and "end", its
// stdout (with its stderr) answers "@ready" and "@ms T" among lines of its own.
class TorchContender final : public Contender {
 public:
  TorchContender(const std::string& impl, const std::string& torch_device, const Case& c, const Options& o,
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

}  // namespace

std::unique_ptr<Contender> torch_contender(const std::string& impl, const std::string& torch_device, const Case& c,
                                           const Options& o, const std::string& train_path,
                                           const std::string& test_path, std::int64_t train_count) {
  return std::make_unique<TorchContender>(impl, torch_device, c, o, train_path, test_path, train_count);
}

TorchProbe probe_torch(const Options& o, const std::string& torch_device) {
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
std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

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

}  // namespace vae::bench
