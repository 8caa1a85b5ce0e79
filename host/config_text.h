// The names of the configuration's enums, as config.json and the command line spell them,
// and what each enum is called in an error ("unknown activation 'swish'; expected one of:
// ..."). config.cpp's to_string/parse_* and the option table (options.cpp) read them here.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "vae/config.h"
#include "vae/error.h"
#include "vae/options.h"

namespace vae {

template <class E>
struct EnumNames;

#define VAE_ENUM_NAMES(E, WHAT, ...)                                                      \
  template <>                                                                              \
  struct EnumNames<E> {                                                                    \
    static constexpr const char* what = WHAT;                                              \
    static constexpr std::pair<const char*, E> names[] = {__VA_ARGS__};                    \
  };

VAE_ENUM_NAMES(Activation, "activation", {"relu", Activation::relu}, {"tanh", Activation::tanh},
               {"leaky_relu", Activation::leaky_relu}, {"softplus", Activation::softplus})
VAE_ENUM_NAMES(Likelihood, "likelihood", {"bernoulli", Likelihood::bernoulli}, {"gaussian", Likelihood::gaussian},
               {"poisson", Likelihood::poisson}, {"negative-binomial", Likelihood::negative_binomial},
               {"zinb", Likelihood::zinb})
VAE_ENUM_NAMES(Binarize, "binarization", {"none", Binarize::none}, {"static", Binarize::static_threshold},
               {"dynamic", Binarize::dynamic})
VAE_ENUM_NAMES(ZeroInflation, "zero inflation", {"feature", ZeroInflation::feature}, {"item", ZeroInflation::item})
VAE_ENUM_NAMES(ConditionKind, "condition kind", {"none", ConditionKind::none}, {"classes", ConditionKind::classes},
               {"covariates", ConditionKind::covariates})
VAE_ENUM_NAMES(Device, "device", {"auto", Device::automatic}, {"cpu", Device::cpu}, {"cuda", Device::cuda})
VAE_ENUM_NAMES(Precision, "precision", {"fp32", Precision::fp32}, {"fp64", Precision::fp64})
VAE_ENUM_NAMES(NanPolicy, "on_nan policy", {"stop", NanPolicy::stop}, {"skip", NanPolicy::skip})
VAE_ENUM_NAMES(Optimizer, "optimizer", {"adam", Optimizer::adam}, {"adamw", Optimizer::adamw},
               {"sgd", Optimizer::sgd}, {"rmsprop", Optimizer::rmsprop})
VAE_ENUM_NAMES(LrSchedule, "learning-rate schedule", {"constant", LrSchedule::constant},
               {"cosine", LrSchedule::cosine}, {"step", LrSchedule::step})
VAE_ENUM_NAMES(Objective, "objective", {"elbo", Objective::elbo}, {"iwae", Objective::iwae})
VAE_ENUM_NAMES(Estimator, "gradient estimator", {"reparam", Estimator::reparam}, {"score", Estimator::score})
VAE_ENUM_NAMES(Schedule, "schedule", {"joint", Schedule::joint}, {"alternating", Schedule::alternating})
#undef VAE_ENUM_NAMES

template <class E>
const char* enum_name(E value) {
  for (const auto& [name, v] : EnumNames<E>::names)
    if (v == value) return name;
  return "?";
}

template <class E>
std::vector<std::string> enum_names() {
  std::vector<std::string> out;
  for (const auto& nv : EnumNames<E>::names) out.emplace_back(nv.first);
  return out;
}

// "512,256" -> {512, 256}, "none" -> {}; returns why the text is not such a list (empty when
// it is one).
std::string parse_widths(const std::string& text, std::vector<int>* out);

// Throws vae::Error listing the accepted names.
template <class E>
E parse_enum(const std::string& text) {
  for (const auto& [name, value] : EnumNames<E>::names)
    if (text == name) return value;
  std::string list;
  for (const auto& name : enum_names<E>()) list += (list.empty() ? "" : ", ") + name;
  throw_error("unknown ", EnumNames<E>::what, " '", text, "'; expected one of: ", list);
}

// An option's member, read: its accessor only forms a reference, so reading through it is const.
template <class X>
const X& field_value(OptionField<X> f, const ModelConfig& m, const TrainConfig& t) {
  return f(const_cast<ModelConfig&>(m), const_cast<TrainConfig&>(t));
}

}  // namespace vae
