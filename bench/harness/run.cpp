// A benchmark run, step by step: the options checked, the data read, the implementations and
// cases chosen (prepare); per case, its contenders set up and timed in interleaved rounds
// (time_case), its rows printed and recorded (report_case); the JSON written and failures
// reported (finish).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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
#include <sstream>
#include <thread>

#include "bench.h"
#include "contender.h"
#include "vae/vae.h"

namespace vae::bench {
namespace {

using json = nlohmann::ordered_json;

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

// The one model the table's model options describe (the rest as `vae train` has them).
ModelConfig one_model(const GivenOptions& given) {
  ModelConfig m;
  TrainConfig t;
  apply_options(given, m, t);
  m.validate();
  return m;
}

std::vector<Case> make_cases(const Options& o, int input_dim) {
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
void check_options(const Options& o) {
  const std::pair<const char*, int> at_least_one[] = {{"--steps", o.steps}, {"--repeats", o.repeats}};
  for (const auto& [flag, v] : at_least_one)
    if (v < 1) throw_error(flag, " must be >= 1, got ", v);
  const std::pair<const char*, int> at_least_zero[] = {
      {"--warmup", o.warmup}, {"--epochs", o.epochs}, {"--block-warmup-ms", o.block_warmup_ms},
      {"--settle-ms", o.settle_ms}};
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


// What a run works from: the data, the implementations, the cases, the SGEMM yardstick and
// the JSON document the cases fill.
struct Run {
  Options o;
  std::string train_path, test_path;
  std::shared_ptr<Dataset> train;
  Dataset test;
  bool have_cuda = false;
  std::string no_cuda_why, torch_device;
  std::vector<std::string> impls;
  std::map<std::string, std::string> skipped;  // implementation -> why it cannot run here
  std::vector<Case> cases;
  std::map<std::string, double> sgemm;         // device -> best FP32 GEMM rate so far, GFLOP/s
  std::map<std::string, std::pair<int, std::string>> failures;  // implementation -> failed cases, the first's error
  json doc;
};

std::string now_text() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return buf;
}

// The default list holds what can run here: the CUDA backend only with a GPU, and PyTorch as
// a row that says why it is skipped when it cannot run. An implementation in the list that
// then fails is a failure; one the user named always is.
void choose_default_impls(Run& r) {
  if (r.have_cuda) r.impls.push_back("vae-cuda");
  r.impls.insert(r.impls.end(), {"vae-cpu", "torch", "torch-compile"});
  const TorchProbe torch = probe_torch(r.o, r.torch_device);
  if (!torch.torch_why.empty()) r.skipped["torch"] = torch.torch_why;
  if (!torch.compile_why.empty()) r.skipped["torch-compile"] = torch.compile_why;
}

Run prepare(const Options& options) {
  Run r;
  r.o = options;
  check_options(r.o);
  r.impls = named_impls(r.o.impls);
  if (r.o.python.empty()) r.o.python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  r.train_path = r.o.train_path;
  r.test_path = r.o.test_path;
  resolve_data_paths(r.train_path, r.test_path);
  r.train = std::make_shared<Dataset>(read_dataset(r.train_path));
  r.test = read_dataset(r.test_path);
  if (r.test.dim != r.train->dim)
    throw_error(flag_of("test"), " '", r.test_path, "' has ", r.test.dim, " features per item but ", flag_of("train"),
                " '", r.train_path, "' has ", r.train->dim);
  r.have_cuda = cuda_usable(&r.no_cuda_why);
  r.torch_device = r.have_cuda ? "cuda" : "cpu";
  if (r.impls.empty()) choose_default_impls(r);
  r.cases = make_cases(r.o, r.train->dim);
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  r.doc = {{"date", now_text()}, {"commit", source_commit()}, {"cpu", cpu_model_name()},
           {"cores", std::thread::hardware_concurrency()}, {"OPENBLAS_CORETYPE", coretype ? coretype : ""},
           {"gpu", r.have_cuda ? "usable" : r.no_cuda_why}, {"train", r.train_path}};
  const Options& o = r.o;
  r.doc["options"] = {{"steps", o.steps}, {"repeats", o.repeats}, {"warmup", o.warmup}, {"epochs", o.epochs},
                      {"threads", o.threads}, {"torch_threads", o.torch_threads}, {"seed", o.seed},
                      {"block_warmup_ms", o.block_warmup_ms}, {"settle_ms", o.settle_ms},
                      {"timing", "interleaved rounds; ratios are medians of per-round ratios"}};
  r.doc["results"] = json::array();
  return r;
}

// The yardstick of "fraction of the SGEMM rate": the device's own FP32 GEMM rate. Measured
// again before every case; the best so far serves (noise only ever lowers it).
void measure_sgemm(Run& r) {
  r.sgemm["cpu"] = std::max(r.sgemm["cpu"], measure_sgemm_gflops(Device::cpu, 2048, 2048, 2048));
  if (r.have_cuda) r.sgemm["cuda"] = std::max(r.sgemm["cuda"], measure_sgemm_gflops(Device::cuda, 8192, 8192, 8192));
}

int steps_per_block(const Options& o) { return std::max(1, o.steps / o.repeats); }

void print_header(const Run& r) {
  const Options& o = r.o;
  std::cout << "vae bench: " << r.doc["cpu"].get<std::string>() << ", " << r.doc["cores"] << " cores"
            << (r.have_cuda ? "" : ", no GPU (" + r.no_cuda_why + ")") << "; commit "
            << r.doc["commit"].get<std::string>() << "\n"
            << "ms/step: median of " << o.repeats << " interleaved rounds of " << steps_per_block(o)
            << " steps per implementation, after " << o.warmup << " warm-up steps; ratios: median of the rounds' "
            << "ratios; s/epoch and test -ELBO over " << o.epochs << " real epoch(s)\n"
            << "FP32 SGEMM rate (the yardstick of %sgemm; the best so far, measured again before each case): CPU "
            << fmt(r.sgemm.at("cpu"), 0) << " GFLOP/s (2048^3)"
            << (r.have_cuda ? ", GPU " + fmt(r.sgemm.at("cuda"), 0) + " GFLOP/s (8192^3, cuBLAS, no TF32)" : std::string())
            << "\n\n";
  std::printf("%-17s %6s %-14s %10s %12s %9s %10s %8s %9s %8s %7s  %s\n", "model", "batch", "impl", "ms/step",
              "samples/s", "s/epoch", "test-ELBO", "vs cpu", "vs torch", "GFLOP/s", "%sgemm", "device");
}

// Every implementation of the case set up and warmed up, then the rounds: K steps of each in
// turn, every other round in reverse order, each block after untimed steps that bring
// caches, threads and clocks back after the other side ran. Then each one's epochs.
std::vector<Result> time_case(const Run& r, const Case& c) {
  std::vector<std::unique_ptr<Contender>> contenders;
  for (const auto& impl : r.impls) {
    if (r.skipped.count(impl))
      contenders.push_back(skipped_contender(impl, r.skipped.at(impl)));
    else if (impl == "vae-cuda" || impl == "vae-cpu")
      contenders.push_back(backend_contender(impl == "vae-cuda" ? Device::cuda : Device::cpu, c, r.o, r.train, r.test));
    else
      contenders.push_back(torch_contender(impl, r.torch_device, c, r.o, r.train_path, r.test_path, r.train->count));
  }
  for (int rep = 0; rep < r.o.repeats; ++rep)
    for (std::size_t i = 0; i < contenders.size(); ++i) {
      auto& ct = *contenders[rep % 2 ? contenders.size() - 1 - i : i];
      if (!ct.ok()) continue;
      // OpenMP threads (ours, OpenBLAS's, PyTorch's) spin a while after their work: an idle
      // pause lets the last contender's stop before this one is timed.
      std::this_thread::sleep_for(std::chrono::milliseconds(r.o.settle_ms));
      ct.time_block(steps_per_block(r.o), r.o.block_warmup_ms);
    }
  std::vector<Result> results;
  for (auto& ct : contenders) {
    results.push_back(ct->finish());
    ct.reset();  // a finished subprocess or backend lets its memory go now
  }
  return results;
}

// A result's row of the table and of the JSON, with its ratios against the CPU path's and
// PyTorch eager's results of the same case.
json result_row(const Run& r, const Case& c, const Result& res, const Result* cpu, const Result* torch) {
  json jr = {{"model", c.model_name}, {"batch", c.batch}, {"impl", res.impl}, {"device", res.device}, {"ok", res.ok}};
  if (!res.ok) {
    jr["error"] = res.error;
    std::printf("%-17s %6d %-14s %s\n", c.model_name.c_str(), c.batch, res.impl.c_str(), ("n/a: " + res.error).c_str());
    return jr;
  }
  const double vs_cpu = cpu ? paired_ratio(*cpu, res) : 0;
  const double vs_torch = torch ? paired_ratio(*torch, res) : 0;
  const bool on_gpu = res.impl == "vae-cuda" || (res.impl != "vae-cpu" && r.torch_device == "cuda");
  const double gflops = train_step_gemm_flops(c.model, res.items, c.model.samples) / (res.ms_median * 1e6);
  const double of_sgemm = gflops / r.sgemm.at(on_gpu ? "cuda" : "cpu");
  jr.update({{"items_per_step", res.items}, {"ms_per_step_median", res.ms_median}, {"ms_per_step_p10", res.ms_p10},
             {"ms_per_step_p90", res.ms_p90}, {"ms_per_step_rounds", res.block_ms},
             {"samples_per_sec", res.samples_per_sec}, {"epoch_seconds", res.epoch_seconds},
             {"test_loss", res.test_loss}, {"epochs", r.o.epochs}, {"speedup_vs_cpu", vs_cpu},
             {"speedup_vs_torch", vs_torch}, {"gemm_gflops_per_s", gflops}, {"fraction_of_sgemm", of_sgemm}});
  const bool epochs = r.o.epochs > 0;
  std::printf("%-17s %6d %-14s %10s %12s %9s %10s %8s %9s %8s %6s%%  %s\n", c.model_name.c_str(), c.batch,
              res.impl.c_str(), fmt(res.ms_median, 3).c_str(), fmt(res.samples_per_sec, 0).c_str(),
              epochs ? fmt(res.epoch_seconds, 3).c_str() : "-", epochs ? fmt(res.test_loss, 2).c_str() : "-",
              vs_cpu > 0 ? (fmt(vs_cpu, 2) + "x").c_str() : "-", vs_torch > 0 ? (fmt(vs_torch, 2) + "x").c_str() : "-",
              fmt(gflops, 0).c_str(), fmt(100 * of_sgemm, 1).c_str(), res.device.c_str());
  return jr;
}

void report_case(Run& r, const Case& c, const std::vector<Result>& results) {
  const Result* cpu = nullptr;
  const Result* torch = nullptr;
  for (const auto& res : results) {
    if (res.ok && res.impl == "vae-cpu") cpu = &res;
    if (res.ok && res.impl == "torch") torch = &res;
  }
  for (const auto& res : results) {
    json jr = result_row(r, c, res, cpu, torch);
    if (!res.ok && r.skipped.count(res.impl)) {
      jr["skipped"] = true;
    } else if (!res.ok) {
      auto& f = r.failures[res.impl];
      if (f.first++ == 0) f.second = res.error;
    }
    r.doc["results"].push_back(jr);
    std::fflush(stdout);
  }
}

// Every row is written first; then a failed implementation makes the exit status say so.
void finish(Run& r) {
  r.doc["sgemm_gflops"] = r.sgemm;
  write_file_atomic(r.o.json_path, r.doc.dump(2) + "\n");
  std::cout << "\nwrote " << r.o.json_path << "\n";
  std::string failed;
  for (const auto& impl : r.impls) {
    const auto f = r.failures.find(impl);
    if (f == r.failures.end()) continue;
    std::string first = f->second.second;
    std::replace(first.begin(), first.end(), '\n', ' ');
    failed += (failed.empty() ? "" : "; ") + impl + " failed in " + std::to_string(f->second.first) + " of " +
              std::to_string(r.cases.size()) + (r.cases.size() == 1 ? " case: " : " cases: ") + first;
  }
  if (!failed.empty()) throw_error(failed, "; every row is in the table above and in '", r.o.json_path, "'");
}

}  // namespace

void run(const Options& options) {
  signal(SIGPIPE, SIG_IGN);  // a PyTorch subprocess that dies is a failed write, reported, not a killed bench
  Run r = prepare(options);
  measure_sgemm(r);
  print_header(r);
  for (const Case& c : r.cases) {
    if (&c != &r.cases.front()) measure_sgemm(r);
    report_case(r, c, time_case(r, c));
  }
  finish(r);
}

}  // namespace vae::bench
