// Subcommands of the `vae` binary. Each adds itself to the app and runs when parsed.
#pragma once
#include <CLI/CLI.hpp>

#include <string>

namespace vae::cli {

void add_train(CLI::App& app);
void add_bench(CLI::App& app);
void add_model_tools(CLI::App& app);  // eval, gradvar, sample, reconstruct, interpolate, scatter, plot

}  // namespace vae::cli
