// The enums' names, the width lists, and what a step takes from the configuration. The
// options themselves (validation, config.json) are described in options_table.cpp.
#include "vae/config.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "config_text.h"
#include "vae/error.h"

namespace vae {

const char* to_string(Activation a) { return enum_name(a); }
const char* to_string(Likelihood l) { return enum_name(l); }
const char* to_string(Binarize b) { return enum_name(b); }
const char* to_string(ConditionKind c) { return enum_name(c); }
const char* to_string(ZeroInflation z) { return enum_name(z); }
const char* to_string(Device d) { return enum_name(d); }
const char* to_string(Precision p) { return enum_name(p); }
const char* to_string(NanPolicy p) { return enum_name(p); }
const char* to_string(Optimizer o) { return enum_name(o); }
const char* to_string(LrSchedule s) { return enum_name(s); }
const char* to_string(Objective o) { return enum_name(o); }
const char* to_string(Estimator e) { return enum_name(e); }
const char* to_string(Schedule s) { return enum_name(s); }
Activation parse_activation(const std::string& s) { return parse_enum<Activation>(s); }
Likelihood parse_likelihood(const std::string& s) { return parse_enum<Likelihood>(s); }
Binarize parse_binarize(const std::string& s) { return parse_enum<Binarize>(s); }
ConditionKind parse_condition_kind(const std::string& s) { return parse_enum<ConditionKind>(s); }
ZeroInflation parse_zero_inflation(const std::string& s) { return parse_enum<ZeroInflation>(s); }
Device parse_device(const std::string& s) { return parse_enum<Device>(s); }
Precision parse_precision(const std::string& s) { return parse_enum<Precision>(s); }
NanPolicy parse_nan_policy(const std::string& s) { return parse_enum<NanPolicy>(s); }
Optimizer parse_optimizer(const std::string& s) { return parse_enum<Optimizer>(s); }
LrSchedule parse_lr_schedule(const std::string& s) { return parse_enum<LrSchedule>(s); }
Objective parse_objective(const std::string& s) { return parse_enum<Objective>(s); }
Estimator parse_estimator(const std::string& s) { return parse_enum<Estimator>(s); }
Schedule parse_schedule(const std::string& s) { return parse_enum<Schedule>(s); }

std::string parse_widths(const std::string& text, std::vector<int>* out) {
  out->clear();
  if (text == "none") return {};  // no hidden layer: a linear map
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    long v = 0;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v <= 0 || v > kMaxLayerWidth)
      return "'" + text + "' is not a comma-separated list of positive integers (for example 512,256)";
    out->push_back(static_cast<int>(v));
  }
  if (out->empty()) return "empty list; give widths such as 400 or 512,256, or 'none' for no hidden layer";
  return {};
}

std::vector<int> parse_int_list(const std::string& text, const std::string& what) {
  std::vector<int> out;
  const std::string why = parse_widths(text, &out);
  if (!why.empty()) throw_error(what, ": ", why);
  return out;
}

int train_samples(const ModelConfig& m, const TrainConfig& t) {
  return t.objective == Objective::iwae ? t.iw_k : m.samples;
}

StepScalars step_scalars(const ModelConfig& m, const TrainConfig& t, std::int64_t step, std::int64_t steps_per_epoch) {
  StepScalars s;
  const OptimizerConfig& o = t.optimizer;
  const std::int64_t per_epoch = std::max<std::int64_t>(1, steps_per_epoch);
  switch (o.schedule) {
    case LrSchedule::constant: s.lr = o.lr; break;
    case LrSchedule::cosine: {  // from lr at step 0 to lr_min at the run's last step
      const double total = double(std::max<std::int64_t>(1, std::int64_t(t.epochs) * per_epoch - 1));
      const double f = std::min(1.0, double(step) / total);
      s.lr = o.lr_min + 0.5 * (o.lr - o.lr_min) * (1.0 + std::cos(M_PI * f));
      break;
    }
    case LrSchedule::step:
      s.lr = o.lr * std::pow(o.lr_gamma, double((step / per_epoch) / o.lr_step_epochs));
      break;
  }
  s.beta = m.beta;
  if (t.kl_warmup_steps > 0 && step < t.kl_warmup_steps) s.beta = m.beta * double(step) / double(t.kl_warmup_steps);
  if (t.schedule == Schedule::alternating) {
    const bool e_step = step % (t.e_steps + t.m_steps) < t.e_steps;
    s.update_encoder = e_step;
    s.update_decoder = !e_step;
  }
  return s;
}

}  // namespace vae
