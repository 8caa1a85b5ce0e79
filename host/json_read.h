// Strict integer reads from nlohmann::json for the configuration and safetensors readers.
// nlohmann's get<int>() turns 2.5 into 2, wraps -1 into a huge unsigned value, and converts
// an out-of-range float (1e300, or an integer literal too long for 64 bits, which it parses
// as a float) with undefined behaviour. These accept only JSON integers within T's range and
// otherwise throw a vae::Error naming the field.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "vae/error.h"

namespace vae {

// `what` names the field in the error, e.g. "configuration field train.batch".
template <class T>
T json_integer(const nlohmann::json& v, const std::string& what) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  constexpr auto lo = std::numeric_limits<T>::min();
  constexpr auto hi = std::numeric_limits<T>::max();
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u <= static_cast<std::uint64_t>(hi)) return static_cast<T>(u);
  } else if (v.is_number_integer()) {  // negative (non-negative integers parse as unsigned)
    const auto s = v.get<std::int64_t>();
    if (std::is_signed_v<T> && s >= static_cast<std::int64_t>(lo)) return static_cast<T>(s);
  }
  std::string got = v.dump();
  if (got.size() > 40) got = got.substr(0, 37) + "...";
  throw_error(what, " must be an integer in [", +lo, ", ", +hi, "], got ", got);
}

template <class T>
std::vector<T> json_integers(const nlohmann::json& v, const std::string& what) {
  if (!v.is_array()) throw_error(what, " must be a list of integers, got a JSON ", v.type_name());
  std::vector<T> out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i)
    out.push_back(json_integer<T>(v[i], what + "[" + std::to_string(i) + "]"));
  return out;
}

}  // namespace vae
