// config.json: the configuration as JSON and back, one field per recorded option of the
// table (options_table.cpp), in its order, under "model" and "train".
#include <nlohmann/json.hpp>

#include <string>
#include <type_traits>

#include "config_text.h"
#include "json_read.h"
#include "vae/config.h"
#include "vae/error.h"
#include "vae/options.h"

namespace vae {
namespace {

using ordered_json = nlohmann::ordered_json;

const char* section_name(OptionSection s) { return s == OptionSection::model ? "model" : "train"; }

ordered_json to_json(const Option& o, const ModelConfig& m, const TrainConfig& t) {
  return std::visit(
      [&](auto f) -> ordered_json {
        const auto& v = field_value(f, m, t);
        if constexpr (std::is_enum_v<std::decay_t<decltype(v)>>) return enum_name(v);
        else return v;
      },
      o.field);
}

// Sets the option from its JSON value; errors name "configuration field <section>.<key>".
void from_json(const Option& o, const nlohmann::json& v, ModelConfig& m, TrainConfig& t) {
  const std::string what = std::string("configuration field ") + section_name(o.section) + "." + o.key;
  std::visit(
      [&](auto f) {
        auto& field = f(m, t);
        using X = std::decay_t<decltype(field)>;
        if constexpr (std::is_same_v<X, std::vector<int>>) {
          field = json_integers<int>(v, what);
        } else if constexpr (std::is_integral_v<X> && !std::is_same_v<X, bool>) {
          field = json_integer<X>(v, what);
        } else if constexpr (std::is_same_v<X, double>) {
          if (!v.is_number()) throw_error(what, " must be a number, got a JSON ", v.type_name());
          field = v.get<double>();
        } else if constexpr (std::is_same_v<X, bool>) {
          if (!v.is_boolean()) throw_error(what, " must be true or false, got a JSON ", v.type_name());
          field = v.get<bool>();
        } else {
          if (!v.is_string()) throw_error(what, " must be a string, got a JSON ", v.type_name());
          if constexpr (std::is_enum_v<X>) {
            try {
              field = parse_enum<X>(v.get<std::string>());
            } catch (const Error& e) {
              throw_error(what, ": ", e.what());
            }
          } else {
            field = v.get<std::string>();
          }
        }
      },
      o.field);
}

// Every key must be one config_to_json writes (a misspelt "latnet" would otherwise be
// ignored in silence): the default configuration's own JSON is the list of known keys.
void check_keys(const nlohmann::json& obj, const nlohmann::json& ref, const std::string& where) {
  if (!obj.is_object()) throw_error("the configuration", where, " must be a JSON object, got ", obj.type_name());
  for (const auto& item : obj.items())
    if (!ref.contains(item.key())) {
      std::string keys;
      for (const auto& r : ref.items()) keys += (keys.empty() ? "" : ", ") + r.key();
      throw_error("the configuration", where, " has an unknown field '", item.key(), "' (known: ", keys, ")");
    }
}

}  // namespace

std::string config_to_json(const ModelConfig& m, const TrainConfig& t, const std::string& device_used) {
  ordered_json j;
  j["model"] = ordered_json::object();
  j["train"] = ordered_json::object();
  for (const Option& o : options())
    if (o.recorded) j[section_name(o.section)][o.key] = to_json(o, m, t);
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
  const nlohmann::json known = nlohmann::json::parse(config_to_json(ModelConfig{}, TrainConfig{}, "cpu"));
  check_keys(j, known, "");
  for (const char* section : {"model", "train"})
    if (j.contains(section)) check_keys(j[section], known[section], std::string("'s ") + section + " section");
  for (const Option& o : options()) {
    const char* section = section_name(o.section);
    if (o.recorded && j.contains(section) && j[section].contains(o.key)) from_json(o, j[section][o.key], m, t);
  }
}

}  // namespace vae
