// `vae bench`: its command line. The benchmark itself is in bench/harness/ (bench.h).
#include <memory>
#include <string>

#include "bench.h"
#include "cli/commands.h"
#include "cli/config_flags.h"

namespace vae::cli {

void add_bench(CLI::App& app) {
  auto o = std::make_shared<bench::Options>();
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
  cmd->add_option("--settle-ms", o->settle_ms,
                  "An idle pause before each timed block, so that no contender is timed while the last one's "
                  "threads still spin")
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
      "steps/repeats steps of each in turn (after a --settle-ms idle pause and --block-warmup-ms of untimed\n"
      "steps), every other round in reverse order, so that noise on a shared machine falls on all of them\n"
      "alike. The CPU path runs at a fixed thread count here (--threads, 0 = all cores), not governed by load.\n"
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
    bench::run(*o);
  });
}

}  // namespace vae::cli
