// vae::Error: the one exception type the library throws. Its message names the file,
// argument or call that failed and what was expected.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace vae {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// throw_error("file ", path, ": expected ", n, " bytes")
template <class... Args>
[[noreturn]] void throw_error(Args&&... args) {
  throw Error(detail::concat(std::forward<Args>(args)...));
}

}  // namespace vae
