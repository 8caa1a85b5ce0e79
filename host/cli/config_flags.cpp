// ConfigFlags: the option table's options as CLI11 options.
#include "cli/config_flags.h"

#include <utility>

namespace vae::cli {
namespace {

// What the help shows after the flag: "relu|tanh|leaky_relu|softplus", "INT in [1, 65536]",
// "FLOAT > 0", "LIST" or "TEXT".
std::string type_name(const Option& o) {
  const std::vector<std::string> choices = o.choices();
  if (!choices.empty()) {
    std::string s;
    for (const auto& c : choices) s += (s.empty() ? "" : "|") + c;
    return s;
  }
  std::string range = o.range_text();
  const std::string finite = "a finite number";
  if (range.rfind(finite, 0) == 0) range.erase(0, finite.size() + 1);
  if (o.is_integer()) return "INT" + (range.empty() ? "" : " " + range);
  if (o.is_real()) return "FLOAT" + (range.empty() ? "" : " " + range);
  if (std::holds_alternative<OptionField<std::vector<int>>>(o.field)) return "LIST";
  return "TEXT";
}

// Checks a value as it is parsed; CLI11 prefixes the flag ("--batch: must be an integer in
// [1, 1048576], got '0'").
CLI::Validator checker(const Option* o) {
  return CLI::Validator([o](std::string& s) { return o->parse_error(s); }, "");
}

}  // namespace

ConfigFlags::ConfigFlags(CLI::App* cmd, const std::function<bool(const Option&)>& keep, bool checked) {
  const ModelConfig model;
  const TrainConfig train;
  for (const OptionGroup g : kOptionGroups)
    for (const Option& o : options()) {
      if (o.group != g || !o.flag || !keep(o)) continue;
      Slot& s = slots_.emplace_back(Slot{&o, nullptr, {}});
      if (o.is_switch()) {
        s.cli = cmd->add_flag(o.flag, o.help);
      } else {
        s.cli = cmd->add_option(o.flag, s.text, o.help)->type_name(type_name(o));
        if (checked) s.cli->check(checker(&o));
        s.cli->default_str(o.text(model, train));
      }
      s.cli->group(to_string(g));
    }
}

GivenOptions ConfigFlags::given() const {
  GivenOptions out;
  for (const Option& o : options())  // the table's order
    for (const Slot& s : slots_)
      if (s.option == &o && s.cli->count()) out.emplace_back(&o, o.is_switch() ? "true" : s.text);
  return out;
}

std::vector<std::string> ConfigFlags::given_flags() const {
  std::vector<std::string> out;
  for (const auto& [o, text] : given()) out.emplace_back(o->flag);
  return out;
}

std::string join_flags(const std::vector<std::string>& flags) {
  std::string s;
  for (std::size_t i = 0; i < flags.size(); ++i)
    s += (i == 0 ? "" : i + 1 == flags.size() ? " and " : ", ") + flags[i];
  return s;
}

}  // namespace vae::cli
