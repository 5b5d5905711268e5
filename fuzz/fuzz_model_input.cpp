// libFuzzer entry point: reuseformer_fuzz::model_input (fuzz/harness.hpp).
#include <cstddef>
#include <cstdint>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static_cast<void>(reuseformer_fuzz::model_input({reinterpret_cast<const std::byte*>(data), size}));
  return 0;
}
