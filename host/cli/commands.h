// Subcommands of the `vae` binary. Each adds itself to the app and runs when parsed.
#pragma once
#include <CLI/CLI.hpp>

#include <charconv>
#include <string>

namespace vae::cli {

// A CLI11 check that an option's value is an integer of type T in [lo, hi], saying so when it
// is not (CLI11's own Range calls "abc" out of range and prints its bounds as doubles).
template <class T>
CLI::Validator integer_in(T lo, T hi) {
  const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [lo, hi, range](std::string& s) -> std::string {
        T v{};
        const char* end = s.data() + s.size();
        const auto [ptr, ec] = std::from_chars(s.data(), end, v);
        if (ec == std::errc() && ptr == end && v >= lo && v <= hi) return {};
        return "must be an integer in " + range + ", got '" + s + "'";
      },
      "INT in " + range);
}

void add_train(CLI::App& app);
void add_bench(CLI::App& app);
void add_model_tools(CLI::App& app);  // eval, gradvar, sample, reconstruct, interpolate, scatter, plot

}  // namespace vae::cli
