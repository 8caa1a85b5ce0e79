// `vae train`: options, an optional JSON configuration file underneath them, resume, and
// Ctrl-C handling (a checkpoint, then exit code 130; SIGTERM and SIGUSR1 alike).
#include "cli/commands.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/config_flags.h"
#include "vae/config.h"
#include "vae/distributed.h"
#include "vae/options.h"
#include "vae/error.h"
#include "vae/trainer.h"

namespace vae::cli {
namespace {

// What `vae train` parses besides the table's options.
struct TrainFlags {
  std::string config_file, resume;
  bool print_config = false;
  std::unique_ptr<ConfigFlags> options;
};

// The first Ctrl-C (or SIGTERM, or SIGUSR1: what mpirun passes on to its processes) asks for a
// checkpoint after the current step; any of them again at least a second later stops at
// once. (Wrappers such as `timeout` forward a signal to the whole process group, so one key
// press can arrive twice within microseconds.)
constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGUSR1};
std::atomic<long long> g_first_interrupt_ns{0};
std::atomic<int> g_stop_signal{0};  // the first one: the exit status is 128 + it (SIGINT's for a rank the others stopped)
long long monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
extern "C" void on_interrupt(int sig) {
  const long long now = monotonic_ns();
  long long first = 0;
  if (g_first_interrupt_ns.compare_exchange_strong(first, now)) {
    g_stop_signal = sig;
    vae::request_stop();
  } else if (now - first > 1000000000LL) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw_error("cannot open the file");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The flags of the options a resumed run may change, as the table marks them.
std::vector<std::string> resumable_flags() {
  std::vector<std::string> flags;
  for (const Option& o : options())
    if (o.resumable) flags.emplace_back(o.flag);
  return flags;
}

// --resume with the options given besides it: only those a resumed run may change.
ResumeOptions resume_options(const GivenOptions& given, bool progress) {
  ModelConfig m;
  TrainConfig t;
  auto has = [&](const std::string& key) {
    for (const auto& g : given)
      if (g.first->key == key) return true;
    return false;
  };
  for (const auto& [o, text] : given) {
    if (!o->resumable)
      throw_error("--resume continues a run as it was configured; ", o->flag, " cannot change (only ",
                  join_flags(resumable_flags()), " can)");
    o->set(text, m, t);
  }
  ResumeOptions r;
  if (has("epochs")) r.epochs = t.epochs;
  if (has("device")) r.device = t.device, r.device_given = true;
  if (has("threads")) r.threads = t.threads;
  if (has("checkpoint_every")) r.checkpoint_every = t.checkpoint_every;
  r.progress = progress;
  return r;
}

// A fresh run: the defaults, then --config, then the flags given.
void configure(const TrainFlags& f, ModelConfig& model, TrainConfig& config) {
  if (!f.config_file.empty()) {
    try {
      config_from_json(read_text(f.config_file), model, config);
    } catch (const Error& e) {
      throw_error("--config '", f.config_file, "': ", e.what());
    }
    config.out.clear();  // a configuration names the run it came from: never write there by default
  }
  apply_options(f.options->given(), model, config);
}

}  // namespace

void add_train(CLI::App& app) {
  auto f = std::make_shared<TrainFlags>();  // owned by the command's callback
  CLI::App* cmd = app.add_subcommand("train", "Train a VAE and write metrics, pictures and a checkpoint to OUT");
  cmd->add_option("--config", f->config_file,
                  "Start from this JSON configuration (e.g. an earlier run's OUT/config.json); flags given on the command "
                  "line override it")->group("Run");
  cmd->add_option("--resume", f->resume,
                  "Continue the run in this OUT from its checkpoint, bit for bit; only " + join_flags(resumable_flags()) +
                      " may change")->group("Run");
  cmd->add_flag("--print-config", f->print_config,
                "Print the configuration these options make (the defaults, --config, the flags) as config.json holds "
                "it, and exit: nothing is read or written")->group("Run");
  f->options = std::make_unique<ConfigFlags>(cmd, [](const Option&) { return true; });

  cmd->footer(
      "\nOutputs in OUT:\n"
      "  config.json          the effective configuration (feed it back with --config to repeat the run)\n"
      "  metrics.csv          per epoch: epoch,train_loss,test_loss,test_recon,test_kl,seconds,samples_per_sec\n"
      "                       losses in nats per data point: -ELBO = recon + KL, or recon + beta*KL with --beta,\n"
      "                       the -IWAE bound for train_loss with --objective iwae; train_loss averages the steps;\n"
      "                       seconds and samples/s count the training steps, not the test evaluation\n"
      "  model.safetensors    a complete checkpoint: parameters by name (encoder.0.weight, ...), the optimizer's state,\n"
      "                       the data position and the configuration; readable with Python's safetensors\n"
      "  samples.png          decoder means for z drawn from the prior\n"
      "  reconstructions.png  test images (odd rows) and their reconstructions at z = mu (even rows)\n"
      "  elbo.png             the ELBO curve: train and test -ELBO, test reconstruction and KL per epoch\n"
      "  latent.png           with --latent 2: the test set's posterior means coloured by label\n"
      "\nCtrl-C writes a checkpoint after the current step and exits with code 130 (a second Ctrl-C a second later\n"
      "stops at once); --resume OUT continues the run exactly where it stopped. SIGTERM and SIGUSR1 do the same\n"
      "(exit code 143, 138). Under mpirun, send SIGUSR1 to mpirun: it passes it on to every process, and they stop\n"
      "after the same step (Ctrl-C there is mpirun's: it ends the processes with SIGTERM, then SIGKILL a second later).\n"
      "\nThe defaults are the reference model: 784-400-20 encoder, 20-400-784 decoder, ReLU, Bernoulli decoder,\n"
      "batch 128, Adam lr 1e-3, 10 epochs, 1 sample, seed 1, on Fashion-MNIST.\n"
      "Examples:\n"
      "  vae train --device cpu --hidden 512,256 --latent 32 --epochs 20 --out runs/wide\n"
      "  vae train --config runs/wide/config.json --seed 2 --out runs/wide-seed2\n"
      "  vae train --resume runs/wide --epochs 30");

  cmd->callback([f]() {
    // Under mpirun a rank's stdout is a pseudo-terminal whatever mpirun's own is: plain lines there.
    const bool progress = isatty(STDOUT_FILENO) == 1 && launched_processes() == 0;
    for (const int sig : kStopSignals) std::signal(sig, on_interrupt);
    TrainResult r;
    if (!f->resume.empty()) {
      const ResumeOptions o = resume_options(f->options->given(), progress);
      if (!f->config_file.empty()) throw_error("--resume and --config cannot be combined");
      if (f->print_config) throw_error("--print-config prints a new run's configuration; a run's is in OUT/config.json");
      r = resume(f->resume, o, std::cout);
    } else {
      ModelConfig model;
      TrainConfig config;
      configure(*f, model, config);
      if (f->print_config) {
        resolve_run_paths(config);
        model.validate();
        config.validate();
        std::cout << config_to_json(model, config);
        return;
      }
      config.progress = progress;
      r = vae::train(model, config, std::cout);
    }
    if (r.interrupted) {
      const int sig = g_stop_signal.load();
      std::exit(128 + (sig ? sig : SIGINT));
    }
  });
}

}  // namespace vae::cli
