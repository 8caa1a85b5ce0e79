// `vae`: the command-line trainer. Errors print one line and exit non-zero.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "cli/commands.h"
#include "vae/error.h"

int main(int argc, char** argv) {
  CLI::App app{"vae: variational autoencoders on the CPU (OpenBLAS) and on NVIDIA GPUs (fused CUDA kernels)", "vae"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("vae ") + VAE_VERSION);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a later flag overrides
  app.footer(
      "Run 'vae <command> --help' for a command's options.\n"
      "Example: vae train --epochs 10 --out runs/first");
  try {
    vae::cli::add_train(app);
    vae::cli::add_bench(app);
    vae::cli::add_model_tools(app);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
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
