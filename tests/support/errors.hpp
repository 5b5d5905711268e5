#pragma once
// The message of the reuseformer::error that `f` throws ("" and a failed check
// when it throws nothing or another type), so tests can compare messages exactly.
#include <string>
#include <utility>

#include <reuseformer/core/error.hpp>

#include "support/catch.hpp"

namespace reuseformer_test {

template <class F>
std::string error_message(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const reuseformer::error& e) {
    return e.what();
  } catch (...) {
    FAIL("threw an exception not derived from reuseformer::error");
  }
  FAIL("expected a reuseformer::error, nothing was thrown");
  return {};
}

}  // namespace reuseformer_test
