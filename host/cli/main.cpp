// `vae`: the command-line trainer. Errors print one line and exit non-zero.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "vae/distributed.h"
#include "vae/error.h"

namespace {
// The one line of an error, then exit status 1. Under mpirun the line names the process
// ('vae: error: process 1 of 2: ...'), and an error on one process ends them all
// (vae::abort_world): the others may be waiting for it.
int fail(const std::string& what) {
  const int n = vae::launched_processes();
  const std::string who = n > 1 ? "process " + std::to_string(vae::launched_rank()) + " of " + std::to_string(n) + ": " : "";
  std::fprintf(stderr, "vae: error: %s%s\n", who.c_str(), what.c_str());
  std::fflush(stderr);
  vae::abort_world(1);
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vae: variational autoencoders on the CPU (OpenBLAS) and on NVIDIA GPUs (fused CUDA kernels)", "vae"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("vae ") + VAE_VERSION);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a later flag overrides
  app.footer(
      "Run 'vae <command> --help' (or 'vae help <command>') for a command's options.\n"
      "Example: vae train --epochs 10 --out runs/first");
  // `vae help` is `vae --help`, and `vae help CMD` is `vae CMD --help`.
  std::vector<char*> args(argv, argv + argc);
  std::string help_flag = "--help";
  if (argc > 1 && std::string(argv[1]) == "help") {
    if (argc > 3 || (argc == 3 && argv[2][0] == '-')) {
      std::fprintf(stderr, "vae: error: 'vae help' takes at most one command name (vae help train, for example)\n");
      return 1;
    }
    args.erase(args.begin() + 1);
    args.push_back(help_flag.data());
    argc = static_cast<int>(args.size());
    argv = args.data();
  }
  try {
    vae::cli::add_train(app);
    vae::cli::add_bench(app);
    vae::cli::add_model_tools(app);
    if (argc > 1 && argv[1][0] != '-') {  // the command: name it if it is not one of ours
      std::string known;
      for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
        known += (known.empty() ? "" : ", ") + sub->get_name();
      if (app.get_subcommands([&](CLI::App* sub) { return sub->get_name() == argv[1]; }).empty())
        vae::throw_error("unknown command '", argv[1], "' (commands: ", known, "; vae --help says more)");
      // Under mpirun only train is data parallel: another command runs once in every process
      // (a script may mean that: one evaluation per process), so the first process says so.
      const int n = vae::launched_processes();
      if (n > 1 && std::string(argv[1]) != "train" && vae::launched_rank() == 0)
        std::fprintf(stderr, "vae: note: vae %s is not data parallel: each of the %d processes mpirun started runs it on its own\n",
                     argv[1], n);
    }
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {  // one line, as every other error
    const std::string command = argc > 1 && argv[1][0] != '-' ? std::string(" ") + argv[1] : "";
    return fail(std::string(e.what()) + " (vae" + command + " --help lists the options)");
  } catch (const vae::Error& e) {
    return fail(e.what());
  } catch (const std::bad_alloc&) {
    return fail("out of host memory");
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return 0;
}
