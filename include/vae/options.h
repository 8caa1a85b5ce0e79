// Every training and model option, described once, in one table (host/options_table.cpp):
// its config.json key, its command-line flag, the configuration member it sets, its help,
// its range or choices, and when it has an effect. What is generated from the table:
// the `vae train` flags (and those other commands share), config.json's reading and
// writing, validate()'s messages, the "this flag has no effect" errors, and the keywords
// of the Python layer.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "vae/config.h"

namespace vae {

enum class OptionSection { model, train };  // config.json's "model" and "train" objects
// How messages name options: by flag (the command line) or by key (config.json, Python).
enum class OptionNaming { flags, keys };
// The groups of the help, in its order.
enum class OptionGroup { data, model, training, optimizer, objective, device, output };
inline constexpr OptionGroup kOptionGroups[] = {OptionGroup::data,      OptionGroup::model,     OptionGroup::training,
                                                OptionGroup::optimizer, OptionGroup::objective, OptionGroup::device,
                                                OptionGroup::output};
const char* to_string(OptionGroup);  // "Data", "Model", ...

// The bounds of a numeric option, inclusive unless open; for a list of widths, of each
// width. `note` follows the bound in messages: a unit ("steps") or a remark ("(0 = all cores)").
// hi_key: the upper bound is the value of that option (lr_min <= lr).
struct OptionRange {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;
  const char* note = "";
  const char* hi_key = nullptr;
};

// When an option has an effect: always (key null), or when the option `key` has one of
// `values` (as Option::text gives them). `what` says what the option is, for the error a
// flag that would have no effect gets: "--momentum is SGD's momentum (--optimizer sgd); ...".
struct OptionCondition {
  const char* what = "";
  const char* key = nullptr;
  std::vector<std::string> values;
};

// The member an option reads and writes: a function from the two configurations to it.
template <class X>
using OptionField = X& (*)(ModelConfig&, TrainConfig&);
using OptionAccess =
    std::variant<OptionField<int>, OptionField<std::int64_t>, OptionField<std::uint64_t>, OptionField<double>,
                 OptionField<bool>, OptionField<std::string>, OptionField<std::vector<int>>, OptionField<Activation>,
                 OptionField<Likelihood>, OptionField<Binarize>, OptionField<ConditionKind>, OptionField<ZeroInflation>, OptionField<Device>, OptionField<Precision>,
                 OptionField<NanPolicy>, OptionField<Optimizer>, OptionField<LrSchedule>, OptionField<Objective>,
                 OptionField<Estimator>, OptionField<Schedule>>;

struct Option {
  const char* key;          // in config.json's section, and the Python keyword
  OptionSection section;
  const char* flag;         // "--kl-warmup"; null: set in a configuration file only
  const char* member;       // what a library caller sets: "kl_warmup_steps", "optimizer.lr"
  const char* label;        // how messages name it besides the member when it has no flag
  OptionGroup group;        // its group in the help
  const char* help;
  OptionAccess field;
  OptionRange range;
  OptionCondition applies;
  bool recorded = true;     // written to config.json (false: a run control such as --overwrite)
  bool resumable = false;   // may change when a run resumes (vae train --resume)

  // "optimizer.lr (--lr)": how errors name it, for a library caller and a CLI user alike.
  std::string name() const;
  // The value as text, as the command line takes it: "0.001", "relu", "512,256", "none", "true".
  std::string text(const ModelConfig&, const TrainConfig&) const;
  // Why text, as the command line gives it, is not a value of the option ("must be an integer
  // in [1, 65536], got '0'"; the range of hi_key aside); empty when it is one.
  std::string parse_error(const std::string& text) const;
  // Parses text as the command line gives it and sets the member; throws vae::Error naming
  // the option as `naming` says and what it takes: "--latent: " + parse_error(text).
  void set(const std::string& text, ModelConfig&, TrainConfig&, OptionNaming naming = OptionNaming::flags) const;
  // "--kl-warmup", or "kl_warmup" (the key, also for an option without a flag).
  std::string called(OptionNaming naming) const;
  // Throws vae::Error "<name> must be <range>, got <value>" when the value is out of range.
  void check(const ModelConfig&, const TrainConfig&) const;
  bool applies_to(const ModelConfig&, const TrainConfig&) const;
  // "in [1, 65536]", ">= 0 steps", "a finite number > 0", "in [0, lr]": the range in words.
  std::string range_text() const;
  std::vector<std::string> choices() const;  // an enum's names, in order; empty otherwise
  bool is_switch() const;                    // a bool: a flag that takes no value
  bool is_integer() const;
  bool is_real() const;
};

// The table, in config.json's order.
const std::vector<Option>& options();
// The option with this key; throws vae::Error for an unknown key.
const Option& option(const std::string& key);
// The option's flag ("--eval-batch"), for messages that tell a CLI user what to change.
std::string flag_of(const std::string& key);

// Options given by a user (on the command line, or as keywords), as text, applied in order on
// top of m and t. Then: a --hidden given without --decoder-hidden mirrors it into the decoder,
// and an option given where the configuration makes it have no effect is an error
// ("--weight-decay is AdamW's decoupled weight decay (--optimizer adamw); it has no effect
// with --optimizer adam"). Validation of the whole is left to validate().
using GivenOptions = std::vector<std::pair<const Option*, std::string>>;
void apply_options(const GivenOptions& given, ModelConfig& m, TrainConfig& t,
                   OptionNaming naming = OptionNaming::flags);

}  // namespace vae
