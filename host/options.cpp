// What the option table (options_table.cpp) generates: each option's text form, parsing,
// range check and condition; validate(); config.json's writing and reading.
#include "vae/options.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include "config_text.h"
#include "json_read.h"
#include "vae/error.h"

namespace vae {
namespace {

template <class X>
inline constexpr bool is_enum_v = std::is_enum_v<X>;
template <class X>
inline constexpr bool is_int_v = std::is_integral_v<X> && !std::is_same_v<X, bool>;

std::string number_text(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<long long>(v));  // 100000, not 1e+05
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);  // the shortest text that reads back as v
  return std::string(buf, r.ptr);
}

template <class X>
std::string value_text(const X& v) {
  if constexpr (is_enum_v<X>) {
    return enum_name(v);
  } else if constexpr (std::is_same_v<X, bool>) {
    return v ? "true" : "false";
  } else if constexpr (is_int_v<X>) {
    return std::to_string(v);
  } else if constexpr (std::is_same_v<X, double>) {
    return number_text(v);
  } else if constexpr (std::is_same_v<X, std::vector<int>>) {
    if (v.empty()) return "none";
    std::string s;
    for (int w : v) s += (s.empty() ? "" : ",") + std::to_string(w);
    return s;
  } else {
    return v;
  }
}

std::string bound_text(double v) { return std::isinf(v) ? std::string() : number_text(v); }

// An integer option's bounds: its range, and its type's where the range has none.
template <class X>
std::pair<std::string, std::string> integer_bounds(const OptionRange& r) {
  return {std::isinf(r.lo) ? std::to_string(+std::numeric_limits<X>::min()) : bound_text(r.lo),
          std::isinf(r.hi) ? std::to_string(+std::numeric_limits<X>::max()) : bound_text(r.hi)};
}

bool in_range(double v, const OptionRange& r, double hi) {
  if (!std::isfinite(v)) return false;
  const bool above = r.lo_open ? v > r.lo : v >= r.lo;
  const bool below = r.hi_open ? v < hi : v <= hi;
  return above && below;
}

// Why `text` is not a value of the option ("must be an integer in [1, 65536], got '0'"), or
// empty when it is one; the value goes to *out. The range checked is the option's own (not
// hi_key's, which needs the other option's value: check() does that).
template <class X>
std::string parse_text(const Option& o, const std::string& text, X* out) {
  const OptionRange& r = o.range;
  if constexpr (is_enum_v<X>) {
    try {
      *out = parse_enum<X>(text);
    } catch (const Error& e) {
      return e.what();
    }
  } else if constexpr (std::is_same_v<X, bool>) {
    if (text != "true" && text != "false") return "must be true or false, got '" + text + "'";
    *out = text == "true";
  } else if constexpr (is_int_v<X>) {
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, *out);
    const bool ok = ec == std::errc() && ptr == end && in_range(double(*out), r, r.hi);
    if (!ok) {
      const auto [lo, hi] = integer_bounds<X>(r);
      const bool lo_only = !std::isinf(r.lo) && std::isinf(r.hi);
      const std::string note = *r.note ? std::string(" ") + r.note : "";
      return "must be an integer " + (lo_only ? ">= " + lo : "in [" + lo + ", " + hi + "]") + note + ", got '" + text + "'";
    }
  } else if constexpr (std::is_same_v<X, double>) {
    char* end = nullptr;
    *out = text.empty() ? NAN : std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || !in_range(*out, r, r.hi))
      return "must be " + o.range_text() + ", got '" + text + "'";
  } else if constexpr (std::is_same_v<X, std::vector<int>>) {
    return parse_widths(text, out);
  } else {
    *out = text;
  }
  return {};
}

double number(const Option& o, const ModelConfig& m, const TrainConfig& t) {
  return std::visit(
      [&](auto f) -> double {
        using X = std::remove_reference_t<decltype(f(std::declval<ModelConfig&>(), std::declval<TrainConfig&>()))>;
        if constexpr (is_int_v<X> || std::is_same_v<X, double>) return double(field_value(f, m, t));
        else throw_error("option '", o.key, "' is not a number");
      },
      o.field);
}

}  // namespace

const char* to_string(OptionGroup g) {
  static const char* const names[] = {"Data", "Model", "Training", "Optimizer", "Objective", "Device", "Output"};
  return names[static_cast<int>(g)];
}

std::string Option::name() const {
  const char* how = flag ? flag : label;
  return std::string(member) + (*how ? std::string(" (") + how + ")" : std::string());
}

std::string Option::text(const ModelConfig& m, const TrainConfig& t) const {
  return std::visit([&](auto f) { return value_text(field_value(f, m, t)); }, field);
}

std::string Option::parse_error(const std::string& value) const {
  ModelConfig m;
  TrainConfig t;
  return std::visit(
      [&](auto f) {
        auto v = field_value(f, m, t);
        return parse_text(*this, value, &v);
      },
      field);
}

std::string Option::called(OptionNaming naming) const {
  return naming == OptionNaming::flags && flag ? flag : key;
}

void Option::set(const std::string& value, ModelConfig& m, TrainConfig& t, OptionNaming naming) const {
  std::visit(
      [&](auto f) {
        auto v = field_value(f, m, t);
        const std::string why = parse_text(*this, value, &v);
        if (!why.empty()) throw_error(called(naming), ": ", why);
        f(m, t) = std::move(v);
      },
      field);
}

std::string Option::range_text() const {
  const OptionRange& r = range;
  const std::string note = *r.note ? std::string(" ") + r.note : "";
  const std::string hi = r.hi_key ? std::string(r.hi_key) : bound_text(r.hi);
  if (std::isinf(r.lo) && hi.empty()) return is_real() ? "a finite number" : "";
  if (hi.empty()) {
    const std::string op = r.lo_open ? "> " : ">= ";
    return (is_real() ? "a finite number " : "") + op + bound_text(r.lo) + note;
  }
  return std::string("in ") + (r.lo_open ? "(" : "[") + bound_text(r.lo) + ", " + hi + (r.hi_open ? ")" : "]") + note;
}

void Option::check(const ModelConfig& m, const TrainConfig& t) const {
  std::visit(
      [&](auto f) {
        using X = std::decay_t<decltype(field_value(f, m, t))>;
        const double hi = range.hi_key ? number(option(range.hi_key), m, t) : range.hi;
        if constexpr (std::is_same_v<X, std::vector<int>>) {
          for (int w : field_value(f, m, t))
            if (!in_range(w, range, hi)) throw_error(name(), ": widths must be ", range_text(), ", got ", w);
        } else if constexpr (is_int_v<X> || std::is_same_v<X, double>) {
          const X v = field_value(f, m, t);
          if (!in_range(double(v), range, hi)) throw_error(name(), " must be ", range_text(), ", got ", +v);
        }
      },
      field);
}

bool Option::applies_to(const ModelConfig& m, const TrainConfig& t) const {
  if (!applies.key) return true;
  const std::string current = option(applies.key).text(m, t);
  for (const auto& v : applies.values)
    if (v == current) return true;
  return false;
}

std::vector<std::string> Option::choices() const {
  return std::visit(
      [](auto f) {
        using X = std::remove_reference_t<decltype(f(std::declval<ModelConfig&>(), std::declval<TrainConfig&>()))>;
        if constexpr (is_enum_v<X>) return enum_names<X>();
        else return std::vector<std::string>{};
      },
      field);
}

bool Option::is_switch() const { return std::holds_alternative<OptionField<bool>>(field); }
bool Option::is_real() const { return std::holds_alternative<OptionField<double>>(field); }
bool Option::is_integer() const {
  return std::holds_alternative<OptionField<int>>(field) || std::holds_alternative<OptionField<std::int64_t>>(field) ||
         std::holds_alternative<OptionField<std::uint64_t>>(field);
}

const Option& option(const std::string& key) {
  for (const Option& o : options())
    if (key == o.key) return o;
  throw_error("no option '", key, "' in the option table (host/options_table.cpp)");
}

std::string flag_of(const std::string& key) {
  const Option& o = option(key);
  if (!o.flag) throw_error("option '", key, "' has no command-line flag");
  return o.flag;
}

void apply_options(const GivenOptions& given, ModelConfig& m, TrainConfig& t, OptionNaming naming) {
  bool hidden = false, decoder_hidden = false;
  for (const auto& [o, text] : given) {
    o->set(text, m, t, naming);
    hidden |= o->key == std::string("hidden");
    decoder_hidden |= o->key == std::string("decoder_hidden");
  }
  if (hidden && !decoder_hidden) m.decoder_hidden.assign(m.encoder_hidden.rbegin(), m.encoder_hidden.rend());
  for (const auto& [o, text] : given) {
    if (o->applies_to(m, t)) continue;
    const Option& on = option(o->applies.key);
    const std::string eq = naming == OptionNaming::flags ? " " : "=";
    const std::string setting = on.called(naming) + eq;
    // " (--likelihood gaussian)", or " (--likelihood poisson, negative-binomial or zinb)"
    std::string where;
    const auto& v = o->applies.values;
    for (std::size_t i = 0; i < v.size(); ++i) where += (i == 0 ? "" : i + 1 == v.size() ? " or " : ", ") + v[i];
    where = " (" + setting + where + ")";
    throw_error(o->called(naming), " is ", o->applies.what, where, "; it has no effect with ", setting, on.text(m, t));
  }
  check_together(m, t);
}

void check_together(const ModelConfig& m, const TrainConfig& t) {
  if (t.binarize == Binarize::none) return;
  if (t.binarize == Binarize::dynamic && m.condition == ConditionKind::covariates)
    throw_error(flag_of("binarize"), " dynamic draws 0 or 1 for every input of the encoder, covariates of ",
                flag_of("condition"), " too; binarize the data beforehand, or use ", flag_of("binarize"), " static");
  if (counts_likelihood(m.likelihood))
    throw_error(flag_of("binarize"), " ", to_string(t.binarize), " turns pixels in [0, 1] into 0 or 1; counts for ",
                flag_of("likelihood"), " ", to_string(m.likelihood), " are not pixels (use ", flag_of("binarize"),
                " none)");
  if (m.standardize)
    throw_error(flag_of("binarize"), " ", to_string(t.binarize), " and ", flag_of("standardize"),
                " do not go together: binary pixels need no scaling");
}

// ---- validation ----------------------------------------------------------------------------

void ModelConfig::validate() const {
  const TrainConfig unused;
  for (const Option& o : options())
    if (o.section == OptionSection::model) o.check(*this, unused);
  if ((condition == ConditionKind::none) != (condition_dim == 0))
    throw_error(option("condition_kind").name(), " is ", to_string(condition), " but ", option("condition_dim").name(),
                " is ", condition_dim, ": a condition has at least one value per item, and none has none");
}

void TrainConfig::validate() const {
  const ModelConfig unused;
  for (const Option& o : options())
    if (o.section == OptionSection::train) o.check(unused, *this);
  const OptimizerConfig& opt = optimizer;
  if (opt.kind == Optimizer::adamw && opt.weight_decay * opt.lr >= 1)
    throw_error("adamw (", flag_of("optimizer"), " adamw) needs lr * weight_decay < 1 (it multiplies the parameters by ",
                "1 - lr * wd), got ", opt.lr * opt.weight_decay);
  if (objective == Objective::iwae && estimator == Estimator::score)
    throw_error("estimator score (", flag_of("estimator"), " score) is for the ELBO; objective iwae (",
                flag_of("objective"), " iwae) uses the reparameterization gradient");
}

}  // namespace vae
