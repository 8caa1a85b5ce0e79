// Names of the enums, validation of the configuration, and its JSON form (config.json).
#include "vae/config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <type_traits>

#include "json_read.h"
#include "vae/error.h"

namespace vae {
namespace {

template <class E, std::size_t N>
E parse_enum(const std::string& text, const char* what, const std::pair<const char*, E> (&names)[N]) {
  for (const auto& [name, value] : names)
    if (text == name) return value;
  std::string list;
  for (const auto& nv : names) list += (list.empty() ? "" : ", ") + std::string(nv.first);
  throw_error("unknown ", what, " '", text, "'; expected one of: ", list);
}

const std::pair<const char*, Activation> kActivations[] = {
    {"relu", Activation::relu}, {"tanh", Activation::tanh},
    {"leaky_relu", Activation::leaky_relu}, {"softplus", Activation::softplus}};
const std::pair<const char*, Likelihood> kLikelihoods[] = {
    {"bernoulli", Likelihood::bernoulli}, {"gaussian", Likelihood::gaussian}};
const std::pair<const char*, Binarize> kBinarize[] = {
    {"none", Binarize::none}, {"static", Binarize::static_threshold}, {"dynamic", Binarize::dynamic}};
const std::pair<const char*, Device> kDevices[] = {
    {"auto", Device::automatic}, {"cpu", Device::cpu}, {"cuda", Device::cuda}};
const std::pair<const char*, Precision> kPrecisions[] = {
    {"fp32", Precision::fp32}, {"fp64", Precision::fp64}};
const std::pair<const char*, NanPolicy> kNanPolicies[] = {{"stop", NanPolicy::stop}, {"skip", NanPolicy::skip}};
const std::pair<const char*, Optimizer> kOptimizers[] = {
    {"adam", Optimizer::adam}, {"adamw", Optimizer::adamw}, {"sgd", Optimizer::sgd}, {"rmsprop", Optimizer::rmsprop}};
const std::pair<const char*, LrSchedule> kLrSchedules[] = {
    {"constant", LrSchedule::constant}, {"cosine", LrSchedule::cosine}, {"step", LrSchedule::step}};
const std::pair<const char*, Objective> kObjectives[] = {{"elbo", Objective::elbo}, {"iwae", Objective::iwae}};
const std::pair<const char*, Estimator> kEstimators[] = {{"reparam", Estimator::reparam}, {"score", Estimator::score}};
const std::pair<const char*, Schedule> kSchedules[] = {{"joint", Schedule::joint}, {"alternating", Schedule::alternating}};

template <class E, std::size_t N>
const char* name_of(E value, const std::pair<const char*, E> (&names)[N]) {
  for (const auto& [name, v] : names)
    if (v == value) return name;
  return "?";
}

}  // namespace

const char* to_string(Activation a) { return name_of(a, kActivations); }
const char* to_string(Likelihood l) { return name_of(l, kLikelihoods); }
const char* to_string(Binarize b) { return name_of(b, kBinarize); }
const char* to_string(Device d) { return name_of(d, kDevices); }
const char* to_string(Precision p) { return name_of(p, kPrecisions); }
const char* to_string(NanPolicy p) { return name_of(p, kNanPolicies); }
const char* to_string(Optimizer o) { return name_of(o, kOptimizers); }
const char* to_string(LrSchedule s) { return name_of(s, kLrSchedules); }
const char* to_string(Objective o) { return name_of(o, kObjectives); }
const char* to_string(Estimator e) { return name_of(e, kEstimators); }
const char* to_string(Schedule s) { return name_of(s, kSchedules); }
Activation parse_activation(const std::string& s) { return parse_enum(s, "activation", kActivations); }
Likelihood parse_likelihood(const std::string& s) { return parse_enum(s, "likelihood", kLikelihoods); }
Binarize parse_binarize(const std::string& s) { return parse_enum(s, "binarization", kBinarize); }
Device parse_device(const std::string& s) { return parse_enum(s, "device", kDevices); }
Precision parse_precision(const std::string& s) { return parse_enum(s, "precision", kPrecisions); }
NanPolicy parse_nan_policy(const std::string& s) { return parse_enum(s, "--on-nan policy", kNanPolicies); }
Optimizer parse_optimizer(const std::string& s) { return parse_enum(s, "optimizer", kOptimizers); }
LrSchedule parse_lr_schedule(const std::string& s) { return parse_enum(s, "learning-rate schedule", kLrSchedules); }
Objective parse_objective(const std::string& s) { return parse_enum(s, "objective", kObjectives); }
Estimator parse_estimator(const std::string& s) { return parse_enum(s, "gradient estimator", kEstimators); }
Schedule parse_schedule(const std::string& s) { return parse_enum(s, "schedule", kSchedules); }

std::vector<int> parse_int_list(const std::string& text, const std::string& what) {
  std::vector<int> out;
  if (text == "none") return out;  // no hidden layer: a linear map
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
      throw_error(what, ": '", text, "' is not a comma-separated list of positive integers (for example 512,256)");
    out.push_back(static_cast<int>(v));
  }
  if (out.empty()) throw_error(what, ": empty list; give widths such as 400 or 512,256, or 'none' for no hidden layer");
  return out;
}

void ModelConfig::validate() const {
  if (input_dim <= 0) throw_error("model: input dimension must be positive, got ", input_dim);
  if (latent <= 0 || latent > 65536) throw_error("latent (--latent) must be in [1, 65536], got ", latent);
  for (int h : encoder_hidden)
    if (h <= 0 || h > kMaxLayerWidth) throw_error("encoder_hidden (--hidden): widths must be in [1, ", kMaxLayerWidth, "], got ", h);
  for (int h : decoder_hidden)
    if (h <= 0 || h > kMaxLayerWidth)
      throw_error("decoder_hidden (--decoder-hidden): widths must be in [1, ", kMaxLayerWidth, "], got ", h);
  if (samples < 1 || samples > 4096) throw_error("samples (--samples) must be in [1, 4096], got ", samples);
  if (!(beta >= 0) || !std::isfinite(beta)) throw_error("beta (--beta) must be a finite number >= 0, got ", beta);
  if (likelihood == Likelihood::gaussian && !(sigma > 0 && std::isfinite(sigma)))
    throw_error("sigma (--sigma) must be a finite number > 0, got ", sigma);
}

void TrainConfig::validate() const {
  if (epochs < 0) throw_error("epochs (--epochs) must be >= 0, got ", epochs);
  if (batch < 1 || batch > (1 << 20)) throw_error("batch (--batch) must be in [1, 1048576], got ", batch);
  if (eval_batch < 1 || eval_batch > (1 << 20)) throw_error("eval_batch (--eval-batch) must be in [1, 1048576], got ", eval_batch);
  const OptimizerConfig& o = optimizer;
  if (!(o.lr > 0) || !std::isfinite(o.lr)) throw_error("optimizer.lr (--lr) must be a finite number > 0, got ", o.lr);
  if (!(o.beta1 >= 0 && o.beta1 < 1)) throw_error("optimizer.beta1 (Adam's beta1) must be in [0, 1), got ", o.beta1);
  if (!(o.beta2 >= 0 && o.beta2 < 1)) throw_error("optimizer.beta2 (Adam's beta2) must be in [0, 1), got ", o.beta2);
  if (!(o.eps > 0) || !std::isfinite(o.eps)) throw_error("optimizer.eps must be > 0, got ", o.eps);
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay))
    throw_error("optimizer.weight_decay (--weight-decay) must be a finite number >= 0, got ", o.weight_decay);
  if (o.kind == Optimizer::adamw && o.weight_decay * o.lr >= 1)
    throw_error("adamw (--optimizer adamw) needs lr * weight_decay < 1 (it multiplies the parameters by 1 - lr * wd), got ",
                o.lr * o.weight_decay);
  if (!(o.momentum >= 0 && o.momentum < 1)) throw_error("optimizer.momentum (--momentum) must be in [0, 1), got ", o.momentum);
  if (!(o.alpha >= 0 && o.alpha < 1)) throw_error("optimizer.alpha (--rmsprop-alpha) must be in [0, 1), got ", o.alpha);
  if (!(o.lr_min >= 0) || o.lr_min > o.lr) throw_error("optimizer.lr_min (--lr-min) must be in [0, lr], got ", o.lr_min);
  if (o.lr_step_epochs < 1) throw_error("optimizer.lr_step_epochs (--lr-step) must be >= 1 epoch, got ", o.lr_step_epochs);
  if (!(o.lr_gamma > 0 && o.lr_gamma <= 1)) throw_error("optimizer.lr_gamma (--lr-gamma) must be in (0, 1], got ", o.lr_gamma);
  if (iw_k < 1 || iw_k > 100000) throw_error("iw_k (--k) must be in [1, 100000], got ", iw_k);
  if (kl_warmup_steps < 0) throw_error("kl_warmup_steps (--kl-warmup) must be >= 0 steps, got ", kl_warmup_steps);
  if (e_steps < 1 || m_steps < 1) throw_error("e_steps and m_steps (--e-steps, --m-steps) must be >= 1, got ", e_steps, " and ", m_steps);
  if (objective == Objective::iwae && estimator == Estimator::score)
    throw_error("estimator score (--estimator score) is for the ELBO; objective iwae (--objective iwae) uses the reparameterization gradient");
  if (threads < 0) throw_error("threads (--threads) must be >= 0 (0 = all cores), got ", threads);
  if (checkpoint_every < 1) throw_error("checkpoint_every (--checkpoint-every) must be >= 1, got ", checkpoint_every);
}

std::string config_to_json(const ModelConfig& m, const TrainConfig& t, const std::string& device_used) {
  nlohmann::ordered_json j;
  j["model"] = {{"input_dim", m.input_dim},
                {"hidden", m.encoder_hidden},
                {"decoder_hidden", m.decoder_hidden},
                {"latent", m.latent},
                {"activation", to_string(m.activation)},
                {"likelihood", to_string(m.likelihood)},
                {"sigma", m.sigma},
                {"learn_sigma", m.learn_sigma},
                {"samples", m.samples},
                {"beta", m.beta}};
  j["train"] = {{"train", t.train_path},
                {"test", t.test_path},
                {"test_labels", t.test_labels_path},
                {"epochs", t.epochs},
                {"batch", t.batch},
                {"eval_batch", t.eval_batch},
                {"optimizer", to_string(t.optimizer.kind)},
                {"lr", t.optimizer.lr},
                {"adam_beta1", t.optimizer.beta1},
                {"adam_beta2", t.optimizer.beta2},
                {"eps", t.optimizer.eps},
                {"weight_decay", t.optimizer.weight_decay},
                {"momentum", t.optimizer.momentum},
                {"rmsprop_alpha", t.optimizer.alpha},
                {"lr_schedule", to_string(t.optimizer.schedule)},
                {"lr_min", t.optimizer.lr_min},
                {"lr_step", t.optimizer.lr_step_epochs},
                {"lr_gamma", t.optimizer.lr_gamma},
                {"objective", to_string(t.objective)},
                {"k", t.iw_k},
                {"estimator", to_string(t.estimator)},
                {"kl_warmup", t.kl_warmup_steps},
                {"schedule", to_string(t.schedule)},
                {"e_steps", t.e_steps},
                {"m_steps", t.m_steps},
                {"seed", t.seed},
                {"binarize", to_string(t.binarize)},
                {"device", to_string(t.device)},
                {"precision", to_string(t.precision)},
                {"threads", t.threads},
                {"stream_data", t.stream_data},
                {"checkpoint_every", t.checkpoint_every},
                {"on_nan", to_string(t.on_nan)},
                {"out", t.out}};
  if (!device_used.empty()) j["device_used"] = device_used;
  return j.dump(2) + "\n";
}

void config_from_json(const std::string& text, ModelConfig& m, TrainConfig& t) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw_error("configuration JSON does not parse: ", e.what());
  }
  // Every key must be one config_to_json writes (a misspelt "latnet" would otherwise be
  // ignored in silence): the default configuration's own JSON is the list of known keys.
  const nlohmann::json known = nlohmann::json::parse(config_to_json(ModelConfig{}, TrainConfig{}, "cpu"));
  auto check_keys = [](const nlohmann::json& obj, const nlohmann::json& ref, const std::string& where) {
    if (!obj.is_object()) throw_error("the configuration", where, " must be a JSON object, got ", obj.type_name());
    for (const auto& item : obj.items())
      if (!ref.contains(item.key())) {
        std::string keys;
        for (const auto& r : ref.items()) keys += (keys.empty() ? "" : ", ") + r.key();
        throw_error("the configuration", where, " has an unknown field '", item.key(), "' (known: ", keys, ")");
      }
  };
  check_keys(j, known, "");
  for (const char* section : {"model", "train"})
    if (j.contains(section)) check_keys(j[section], known[section], std::string("'s ") + section + " section");
  try {
    // Integer fields, strictly (json_read.h): "configuration field <section>.<key>" in errors.
    auto name = [](const char* section, const char* key) {
      return std::string("configuration field ") + section + "." + key;
    };
    auto integer = [&](const nlohmann::json& sect, const char* section, const char* key, auto& field) {
      using T = std::remove_reference_t<decltype(field)>;
      if (sect.contains(key)) field = json_integer<T>(sect[key], name(section, key));
    };
    auto integers = [&](const nlohmann::json& sect, const char* section, const char* key, std::vector<int>& field) {
      if (sect.contains(key)) field = json_integers<int>(sect[key], name(section, key));
    };
    if (j.contains("model")) {
      const auto& jm = j["model"];
      integer(jm, "model", "input_dim", m.input_dim);
      integers(jm, "model", "hidden", m.encoder_hidden);
      integers(jm, "model", "decoder_hidden", m.decoder_hidden);
      integer(jm, "model", "latent", m.latent);
      if (jm.contains("activation")) m.activation = parse_activation(jm["activation"].get<std::string>());
      if (jm.contains("likelihood")) m.likelihood = parse_likelihood(jm["likelihood"].get<std::string>());
      if (jm.contains("sigma")) m.sigma = jm["sigma"].get<double>();
      if (jm.contains("learn_sigma")) m.learn_sigma = jm["learn_sigma"].get<bool>();
      integer(jm, "model", "samples", m.samples);
      if (jm.contains("beta")) m.beta = jm["beta"].get<double>();
    }
    if (j.contains("train")) {
      const auto& jt = j["train"];
      if (jt.contains("train")) t.train_path = jt["train"].get<std::string>();
      if (jt.contains("test")) t.test_path = jt["test"].get<std::string>();
      if (jt.contains("test_labels")) t.test_labels_path = jt["test_labels"].get<std::string>();
      integer(jt, "train", "epochs", t.epochs);
      integer(jt, "train", "batch", t.batch);
      integer(jt, "train", "eval_batch", t.eval_batch);
      auto& o = t.optimizer;
      if (jt.contains("optimizer")) o.kind = parse_optimizer(jt["optimizer"].get<std::string>());
      if (jt.contains("lr")) o.lr = jt["lr"].get<double>();
      if (jt.contains("adam_beta1")) o.beta1 = jt["adam_beta1"].get<double>();
      if (jt.contains("adam_beta2")) o.beta2 = jt["adam_beta2"].get<double>();
      if (jt.contains("eps")) o.eps = jt["eps"].get<double>();
      if (jt.contains("weight_decay")) o.weight_decay = jt["weight_decay"].get<double>();
      if (jt.contains("momentum")) o.momentum = jt["momentum"].get<double>();
      if (jt.contains("rmsprop_alpha")) o.alpha = jt["rmsprop_alpha"].get<double>();
      if (jt.contains("lr_schedule")) o.schedule = parse_lr_schedule(jt["lr_schedule"].get<std::string>());
      if (jt.contains("lr_min")) o.lr_min = jt["lr_min"].get<double>();
      integer(jt, "train", "lr_step", o.lr_step_epochs);
      if (jt.contains("lr_gamma")) o.lr_gamma = jt["lr_gamma"].get<double>();
      if (jt.contains("objective")) t.objective = parse_objective(jt["objective"].get<std::string>());
      integer(jt, "train", "k", t.iw_k);
      if (jt.contains("estimator")) t.estimator = parse_estimator(jt["estimator"].get<std::string>());
      integer(jt, "train", "kl_warmup", t.kl_warmup_steps);
      if (jt.contains("schedule")) t.schedule = parse_schedule(jt["schedule"].get<std::string>());
      integer(jt, "train", "e_steps", t.e_steps);
      integer(jt, "train", "m_steps", t.m_steps);
      integer(jt, "train", "seed", t.seed);
      if (jt.contains("binarize")) t.binarize = parse_binarize(jt["binarize"].get<std::string>());
      if (jt.contains("device")) t.device = parse_device(jt["device"].get<std::string>());
      if (jt.contains("precision")) t.precision = parse_precision(jt["precision"].get<std::string>());
      integer(jt, "train", "threads", t.threads);
      if (jt.contains("stream_data")) t.stream_data = jt["stream_data"].get<bool>();
      integer(jt, "train", "checkpoint_every", t.checkpoint_every);
      if (jt.contains("on_nan")) t.on_nan = parse_nan_policy(jt["on_nan"].get<std::string>());
      if (jt.contains("out")) t.out = jt["out"].get<std::string>();
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw_error("configuration JSON has a field of the wrong type: ", e.what());
  }
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
