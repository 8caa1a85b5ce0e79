// `vae bench`: the same model on the same data on every available implementation (the CUDA
// backend, the CPU backend, PyTorch eager and torch.compile through bench/torch_reference.py),
// side by side in one run, as a table on stdout and JSON in a file.
//
// Per implementation and case: ms per step (median over repeats of K steps, after warm-up;
// a repeat ends with the backend's one host read, so device work is included), samples/s,
// seconds per epoch measured over real epochs, the test -ELBO after those epochs, and ratios
// against the CPU path and against PyTorch eager.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "vae/vae.h"

namespace vae::cli {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::ordered_json;

struct BenchOptions {
  std::string impls = "auto";
  std::string batches = "128,1024,4096";
  std::string models = "ref,wide";
  std::string hidden, latent_text;
  int steps = 100;
  int repeats = 10;
  int warmup = 10;
  int epochs = 1;
  int threads = 0;
  int torch_threads = 1;
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

Result bench_backend(Device device, const Case& c, const BenchOptions& o, std::shared_ptr<const Dataset> train,
                     const Dataset& test) {
  Result r;
  r.impl = device == Device::cuda ? "vae-cuda" : "vae-cpu";
  try {
    TrainConfig tc;
    tc.batch = c.batch;
    tc.seed = o.seed;
    tc.threads = o.threads;
    tc.device = device;
    tc.eval_batch = std::max(1000, c.batch);
    const int K = std::max(1, o.steps / std::max(1, o.repeats));
    {
      auto backend = make_backend(device, c.model, tc);
      r.device = backend->name();
      backend->set_parameters(init_parameters(backend->layout(), c.model, o.seed));
      backend->set_train_data(train);
      BatchStream stream(train->count, c.batch, o.seed);
      Batch b;
      auto next_full = [&]() {  // full batches only: a partial one would time fewer items
        do stream.next_rolling(b);
        while (b.size != c.batch && train->count >= c.batch);
      };
      for (int i = 0; i < o.warmup; ++i) {
        next_full();
        backend->train_step(b);
      }
      backend->take_train_sums();
      std::vector<double> ms;
      for (int rep = 0; rep < o.repeats; ++rep) {
        const auto t0 = Clock::now();
        for (int k = 0; k < K; ++k) {
          next_full();
          backend->train_step(b);
        }
        backend->take_train_sums();  // waits for the device
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / K);
      }
      r.ms_median = percentile(ms, 0.5);
      r.ms_p10 = percentile(ms, 0.1);
      r.ms_p90 = percentile(ms, 0.9);
      r.samples_per_sec = c.batch / (r.ms_median / 1000.0);
    }
    if (o.epochs > 0) {  // real epochs from a fresh start, as `vae train` runs them
      auto backend = make_backend(device, c.model, tc);
      backend->set_parameters(init_parameters(backend->layout(), c.model, o.seed));
      backend->set_train_data(train);
      BatchStream stream(train->count, c.batch, o.seed);
      std::vector<double> seconds;
      for (int e = 0; e < o.epochs; ++e) {
        stream.start_epoch(e);
        Batch b;
        const auto t0 = Clock::now();
        while (stream.next(b)) backend->train_step(b);
        backend->take_train_sums();
        seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      }
      r.epoch_seconds = steady_epoch_seconds(seconds);
      r.test_loss = backend->evaluate(test).mean_loss();
    }
    r.ok = true;
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

std::string join_widths(const std::vector<int>& w) {
  if (w.empty()) return "none";
  std::string s;
  for (int x : w) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

Result bench_torch(const std::string& impl, const std::string& torch_device, const Case& c, const BenchOptions& o,
                   const std::string& train_path, const std::string& test_path) {
  Result r;
  r.impl = impl;
  char tmpl[] = "/tmp/vae-bench-torch-XXXXXX";
  const int fd = mkstemp(tmpl);
  if (fd < 0) {
    r.error = "cannot create a temporary file";
    return r;
  }
  close(fd);
  const std::string out_json = tmpl;
  std::ostringstream cmd;
  cmd << shell_quote(o.python) << " " << shell_quote(o.torch_script) << " --device " << torch_device
      << " --threads " << o.torch_threads << " --batch " << c.batch << " --hidden " << join_widths(c.model.encoder_hidden)
      << " --decoder-hidden " << join_widths(c.model.decoder_hidden) << " --latent " << c.model.latent
      << " --seed " << o.seed << " --bench-steps " << o.steps << " --warmup " << o.warmup << " --epochs " << o.epochs
      << " --eval-batch " << std::max(1000, c.batch) << " --train " << shell_quote(train_path) << " --test "
      << shell_quote(test_path) << " --json " << shell_quote(out_json);
  if (impl == "torch-compile") cmd << " --compile --compile-mode " << (torch_device == "cuda" ? "reduce-overhead" : "default");
  std::string output;
  const int status = run_command(cmd.str(), output);
  if (status != 0) {
    r.error = "exit " + std::to_string(status) + ": " + last_line(output);
    std::remove(out_json.c_str());
    return r;
  }
  try {
    std::ifstream f(out_json);
    const auto j = nlohmann::json::parse(f);
    r.device = "torch " + j.value("torch_version", std::string("?")) + " " + j.value("device", std::string("?")) + ", " +
               std::to_string(j.value("threads", 0)) + " thread(s)";
    const auto& b = j.at("bench");
    r.ms_median = b.at("median_ms").get<double>();
    r.ms_p10 = b.at("p10_ms").get<double>();
    r.ms_p90 = b.at("p90_ms").get<double>();
    r.samples_per_sec = c.batch / (r.ms_median / 1000.0);
    const auto& epochs = j.at("epochs");
    if (!epochs.empty()) {
      std::vector<double> seconds;
      for (const auto& e : epochs) seconds.push_back(e.at("seconds").get<double>());
      r.epoch_seconds = steady_epoch_seconds(seconds);
      r.test_loss = epochs.back().at("test_loss").get<double>();
    }
    r.ok = true;
  } catch (const std::exception& e) {
    r.error = std::string("could not read its JSON: ") + e.what();
  }
  std::remove(out_json.c_str());
  return r;
}

std::vector<Case> make_cases(const BenchOptions& o) {
  std::vector<Case> cases;
  std::vector<std::pair<std::string, ModelConfig>> models;
  if (!o.hidden.empty() || !o.latent_text.empty()) {
    ModelConfig m;
    if (!o.hidden.empty()) m.encoder_hidden = parse_int_list(o.hidden, "--hidden");
    m.decoder_hidden.assign(m.encoder_hidden.rbegin(), m.encoder_hidden.rend());
    if (!o.latent_text.empty()) m.latent = parse_int_list(o.latent_text, "--latent").at(0);
    models.emplace_back("784-" + join_widths(m.encoder_hidden) + "-" + std::to_string(m.latent), m);
  } else {
    std::stringstream ss(o.models);
    std::string name;
    while (std::getline(ss, name, ',')) {
      ModelConfig m;
      if (name == "ref") {
        models.emplace_back("784-400-20", m);
      } else if (name == "wide") {
        m.encoder_hidden = {1024, 1024};
        m.decoder_hidden = {1024, 1024};
        m.latent = 64;
        models.emplace_back("784-1024-1024-64", m);
      } else {
        throw_error("--models: unknown model '", name, "'; expected ref and/or wide (or give --hidden/--latent)");
      }
    }
  }
  for (const auto& [name, m] : models)
    for (int b : parse_int_list(o.batches, "--batch")) cases.push_back({name, m, b});
  return cases;
}

std::string fmt(double v, int prec) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

void run_bench(const BenchOptions& opt) {
  BenchOptions o = opt;
  if (o.steps < 1 || o.repeats < 1 || o.warmup < 0 || o.epochs < 0)
    throw_error("--steps and --repeats must be >= 1, --warmup and --epochs >= 0");
  if (o.python.empty()) o.python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  const std::string train_path = o.train_path.empty() ? default_fashion_mnist(true) : o.train_path;
  const std::string test_path = o.test_path.empty() ? default_fashion_mnist(false) : o.test_path;
  auto train = std::make_shared<Dataset>(read_dataset(train_path));
  const Dataset test = read_dataset(test_path);
  if (test.dim != train->dim) throw_error("--test has ", test.dim, " features per item but --train has ", train->dim);

  std::string why;
  const bool have_cuda = cuda_usable(&why);
  std::vector<std::string> impls;
  if (o.impls == "auto") {
    if (have_cuda) impls.push_back("vae-cuda");
    impls.insert(impls.end(), {"vae-cpu", "torch", "torch-compile"});
  } else {
    std::stringstream ss(o.impls);
    std::string s;
    while (std::getline(ss, s, ','))
      if (s == "cuda" || s == "vae-cuda") impls.push_back("vae-cuda");
      else if (s == "cpu" || s == "vae-cpu") impls.push_back("vae-cpu");
      else if (s == "torch" || s == "torch-compile") impls.push_back(s);
      else throw_error("--impl: unknown implementation '", s, "'; expected cuda, cpu, torch, torch-compile or auto");
  }
  const std::string torch_device = have_cuda ? "cuda" : "cpu";
  const auto cases = make_cases(o);
  for (auto& c : cases) const_cast<ModelConfig&>(c.model).input_dim = train->dim;

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
                    {"threads", o.threads}, {"torch_threads", o.torch_threads}, {"seed", o.seed}};
  doc["results"] = json::array();
  // The yardstick of "fraction of the SGEMM rate": the device's own FP32 GEMM rate.
  std::map<std::string, double> sgemm;
  sgemm["cpu"] = measure_sgemm_gflops(Device::cpu, 2048, 2048, 2048);
  if (have_cuda) sgemm["cuda"] = measure_sgemm_gflops(Device::cuda, 8192, 8192, 8192);
  doc["sgemm_gflops"] = sgemm;

  std::cout << "vae bench: " << doc["cpu"].get<std::string>() << ", " << doc["cores"] << " cores"
            << (have_cuda ? "" : ", no GPU (" + why + ")") << "; commit " << doc["commit"].get<std::string>() << "\n"
            << "ms/step: median of " << o.repeats << " repeats of " << std::max(1, o.steps / o.repeats)
            << " steps after " << o.warmup << " warm-up steps; s/epoch and test -ELBO over " << o.epochs
            << " real epoch(s)\n"
            << "FP32 SGEMM rate (the yardstick of %sgemm): CPU " << fmt(sgemm["cpu"], 0) << " GFLOP/s (2048^3)"
            << (have_cuda ? ", GPU " + fmt(sgemm["cuda"], 0) + " GFLOP/s (8192^3, cuBLAS, no TF32)" : std::string())
            << "\n\n";
  std::printf("%-17s %6s %-14s %10s %12s %9s %10s %8s %9s %8s %7s  %s\n", "model", "batch", "impl", "ms/step",
              "samples/s", "s/epoch", "test-ELBO", "vs cpu", "vs torch", "GFLOP/s", "%sgemm", "device");
  for (const auto& c : cases) {
    std::vector<Result> results;
    for (const auto& impl : impls) {
      Result r;
      if (impl == "vae-cuda" && !have_cuda) {
        r.impl = impl;
        r.error = why;
      } else if (impl == "vae-cuda" || impl == "vae-cpu") {
        r = bench_backend(impl == "vae-cuda" ? Device::cuda : Device::cpu, c, o, train, test);
      } else {
        r = bench_torch(impl, torch_device, c, o, train_path, test_path);
      }
      results.push_back(r);
    }
    auto ms_of = [&](const std::string& impl) {
      for (const auto& r : results)
        if (r.impl == impl && r.ok) return r.ms_median;
      return 0.0;
    };
    const double cpu_ms = ms_of("vae-cpu"), torch_ms = ms_of("torch");
    for (const auto& r : results) {
      json jr = {{"model", c.model_name}, {"batch", c.batch}, {"impl", r.impl}, {"device", r.device}, {"ok", r.ok}};
      if (!r.ok) {
        jr["error"] = r.error;
        std::printf("%-17s %6d %-14s %s\n", c.model_name.c_str(), c.batch, r.impl.c_str(), ("n/a: " + r.error).c_str());
      } else {
        const double vs_cpu = cpu_ms > 0 ? cpu_ms / r.ms_median : 0, vs_torch = torch_ms > 0 ? torch_ms / r.ms_median : 0;
        const bool on_gpu = r.impl == "vae-cuda" || (r.impl != "vae-cpu" && torch_device == "cuda");
        const double gflops = train_step_gemm_flops(c.model, c.batch, c.model.samples) / (r.ms_median * 1e6);
        const double of_sgemm = gflops / sgemm[on_gpu ? "cuda" : "cpu"];
        jr.update({{"ms_per_step_median", r.ms_median}, {"ms_per_step_p10", r.ms_p10}, {"ms_per_step_p90", r.ms_p90},
                   {"samples_per_sec", r.samples_per_sec}, {"epoch_seconds", r.epoch_seconds},
                   {"test_loss", r.test_loss}, {"epochs", o.epochs}, {"speedup_vs_cpu", vs_cpu},
                   {"speedup_vs_torch", vs_torch}, {"gemm_gflops_per_s", gflops}, {"fraction_of_sgemm", of_sgemm}});
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
  write_file_atomic(o.json_path, doc.dump(2) + "\n");
  std::cout << "\nwrote " << o.json_path << "\n";
}

}  // namespace

void add_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Benchmark the CUDA backend, the CPU backend and PyTorch side by side");
  cmd->add_option("--impl", o->impls, "Implementations: auto, or a list of cuda, cpu, torch, torch-compile")->capture_default_str();
  cmd->add_option("--batch", o->batches, "Batch sizes, comma-separated")->capture_default_str();
  cmd->add_option("--models", o->models, "ref (784-400-20) and/or wide (784-1024-1024-64)")->capture_default_str();
  cmd->add_option("--hidden", o->hidden, "Instead of --models: encoder widths of one model (decoder mirrored)");
  cmd->add_option("--latent", o->latent_text, "Instead of --models: latent size of that model");
  cmd->add_option("--steps", o->steps, "Timed steps per implementation and case")->capture_default_str();
  cmd->add_option("--repeats", o->repeats, "Timing repeats (the median is reported)")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Warm-up steps before timing (graph capture, caches)")->capture_default_str();
  cmd->add_option("--epochs", o->epochs, "Real epochs for s/epoch and the test -ELBO (0: timing only)")->capture_default_str();
  cmd->add_option("--threads", o->threads, "CPU backend threads; 0 = all cores")->capture_default_str();
  cmd->add_option("--torch-threads", o->torch_threads, "PyTorch threads (1 is its fastest on 2 cores)")->capture_default_str();
  cmd->add_option("--python", o->python, "Python with PyTorch; default /usr/bin/python3");
  cmd->add_option("--torch-script", o->torch_script, "The PyTorch reference script")->capture_default_str();
  cmd->add_option("--train", o->train_path, "Training data; default Fashion-MNIST");
  cmd->add_option("--test", o->test_path, "Test data; default Fashion-MNIST");
  cmd->add_option("--seed", o->seed, "Seed")->capture_default_str();
  cmd->add_option("--json", o->json_path, "Write the results as JSON here")->capture_default_str();
  cmd->footer(
      "\nEvery implementation trains the same model on the same in-memory data (no data loader on any side).\n"
      "s/epoch: with --epochs >= 2, the mean of the epochs after the first (which holds graph capture or\n"
      "torch.compile's compilation); test -ELBO: after the last epoch.\n"
      "ratios: 'vs cpu' = CPU-path ms/step / this ms/step; 'vs torch' = PyTorch eager ms/step / this ms/step.\n"
      "GFLOP/s: the step's GEMM FLOPs (forward, weight and input gradients) per second; %sgemm: that rate as a\n"
      "fraction of the same device's FP32 SGEMM rate, measured at the start of the run.\n"
      "Example: vae bench --batch 128 --models ref --epochs 1 --json bench/results/cpu.json");
  cmd->callback([o]() { run_bench(*o); });
}

}  // namespace vae::cli
