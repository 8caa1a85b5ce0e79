// The option table's options on a command line (vae/options.h): each one's flag, help and
// group come from the table, and its value is checked as CLI11 parses it.
#pragma once
#include <CLI/CLI.hpp>

#include <deque>
#include <functional>
#include <string>

#include "vae/options.h"

namespace vae::cli {

class ConfigFlags {
 public:
  // Adds to cmd every option of the table that has a flag and for which keep(option) holds,
  // group by group in the help's order. checked: each value is checked as it is parsed;
  // otherwise only when the command applies it (apply_options).
  ConfigFlags(CLI::App* cmd, const std::function<bool(const Option&)>& keep, bool checked = true);

  // The options given on the command line, with their text ("true" for a switch), in the
  // table's order: what apply_options() takes.
  GivenOptions given() const;
  // The flags given, in the table's order ("--hidden", "--latent").
  std::vector<std::string> given_flags() const;

 private:
  struct Slot {
    const Option* option;
    CLI::Option* cli;
    std::string text;
  };
  std::deque<Slot> slots_;  // CLI11 writes into each slot's text: the addresses stay put
};

// The table's option `key` bound to a variable of the command's own: its flag, and its help
// unless the command gives another (the tools' --device, bench's --threads).
template <class T>
CLI::Option* add_table_option(CLI::App* cmd, const std::string& key, T& var, const char* help = nullptr) {
  const Option& o = option(key);
  return cmd->add_option(o.flag, var, help ? help : o.help);
}

// "--a, --b and --c".
std::string join_flags(const std::vector<std::string>& flags);

}  // namespace vae::cli
