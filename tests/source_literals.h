// The string literals of a C++/CUDA or Python source file, for the checks that an option's
// flag is spelled in one place (test_options.cpp). Comments are skipped, and so is what is
// documentation rather than code: the text of a CLI11 footer(...) (a command's help prose and
// examples) and Python's triple-quoted strings (docstrings). Adjacent C++ literals are kept
// apart; each comes with the name of the call it is an argument of ("flag_of", "footer", or
// "" at the top level), so that callers can find option("key") and flag_of("key").
#pragma once
#include <cctype>
#include <string>
#include <vector>

namespace vae::test {

struct Literal {
  std::string text;  // as written, escapes unresolved
  std::string call;  // the innermost call it is an argument of
};

namespace detail {

inline bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// The quoted text starting at s[i] (the opening quote), escapes skipped over; i ends after
// the closing quote.
inline std::string quoted(const std::string& s, std::size_t& i, char q) {
  std::string out;
  for (++i; i < s.size() && s[i] != q && s[i] != '\n'; ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) out += s[i++];
    out += s[i];
  }
  ++i;
  return out;
}

}  // namespace detail

inline std::vector<Literal> cpp_literals(const std::string& s) {
  std::vector<Literal> out;
  std::vector<std::string> calls;
  std::string last_ident;
  std::size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (s.compare(i, 2, "//") == 0) {
      i = s.find('\n', i);
      if (i == std::string::npos) break;
    } else if (s.compare(i, 2, "/*") == 0) {
      i = s.find("*/", i);
      if (i == std::string::npos) break;
      i += 2;
    } else if (c == 'R' && i + 1 < s.size() && s[i + 1] == '"' && (i == 0 || !detail::ident_char(s[i - 1]))) {
      const std::size_t open = s.find('(', i);
      const std::string close = ")" + s.substr(i + 2, open - i - 2) + "\"";
      const std::size_t end = s.find(close, open);
      out.push_back({s.substr(open + 1, end - open - 1), calls.empty() ? "" : calls.back()});
      i = end + close.size();
      last_ident.clear();
    } else if (c == '"') {
      out.push_back({detail::quoted(s, i, '"'), calls.empty() ? "" : calls.back()});
      last_ident.clear();
    } else if (c == '\'') {
      detail::quoted(s, i, '\'');
    } else if (detail::ident_char(c)) {
      const std::size_t b = i;
      while (i < s.size() && detail::ident_char(s[i])) ++i;
      last_ident = s.substr(b, i - b);
      continue;
    } else {
      if (c == '(') calls.push_back(last_ident);
      if (c == ')' && !calls.empty()) calls.pop_back();
      if (!std::isspace(static_cast<unsigned char>(c))) last_ident.clear();
      ++i;
    }
  }
  return out;
}

inline std::vector<Literal> python_literals(const std::string& s) {
  std::vector<Literal> out;
  std::size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '#') {
      i = s.find('\n', i);
      if (i == std::string::npos) break;
    } else if (c == '"' || c == '\'') {
      const std::string triple(3, c);
      if (s.compare(i, 3, triple) == 0) {  // a docstring: documentation
        i = s.find(triple, i + 3);
        if (i == std::string::npos) break;
        i += 3;
      } else {
        out.push_back({detail::quoted(s, i, c), ""});
      }
    } else {
      ++i;
    }
  }
  return out;
}

// Whether `flag` ("--k") stands in text as a whole flag (not as the start of "--kl-warmup").
inline bool mentions_flag(const std::string& text, const std::string& flag) {
  auto part = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-'; };
  for (std::size_t p = text.find(flag); p != std::string::npos; p = text.find(flag, p + 1)) {
    const bool starts = p == 0 || !part(text[p - 1]);
    const bool ends = p + flag.size() == text.size() || !part(text[p + flag.size()]);
    if (starts && ends) return true;
  }
  return false;
}

}  // namespace vae::test
