// `vae`: the command-line trainer. Errors print one line and exit non-zero.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "vae/error.h"

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
    }
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {  // one line, as every other error
    const std::string command = argc > 1 && argv[1][0] != '-' ? std::string(" ") + argv[1] : "";
    std::fprintf(stderr, "vae: error: %s (vae%s --help lists the options)\n", e.what(), command.c_str());
    return 1;
  } catch (const vae::Error& e) {
    std::fprintf(stderr, "vae: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "vae: error: out of host memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vae: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
