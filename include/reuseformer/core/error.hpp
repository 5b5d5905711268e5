#pragma once
// The library's single error type and the helpers that build its messages.
//
// Every failure a caller can trigger (a wrong shape, a bad configuration, a mask
// value that is not 0/1, a workspace that is too small) throws reuseformer::error
// or a type derived from it. Messages name the offending tensor or key and state
// what was expected and what was found, so a user can fix the input without
// reading library code.

#include <array>
#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace reuseformer {

// Base of every exception the library throws. Catch this one type to handle all
// library failures.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

template <class... Parts>
[[nodiscard]] std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

template <class Index, std::size_t Rank>
[[nodiscard]] std::string format_shape(const std::array<Index, Rank>& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < Rank; ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

// Throws reuseformer::error built from `parts` when `condition` is false.
template <class... Parts>
void require(bool condition, const Parts&... parts) {
  if (!condition) throw error(concat(parts...));
}

}  // namespace detail
}  // namespace reuseformer
