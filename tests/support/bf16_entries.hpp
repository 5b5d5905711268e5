#pragma once
// Checkpoint entries in BF16: for tests that write a BF16 file from the F32
// entries io::encoder_tensors gives.
#include <span>
#include <vector>

#include <reuseformer/io.hpp>

namespace reuseformer_test {

// `f32` (an F32 entry) rounded to bfloat16, to nearest even, as a BF16 entry
// of the same name and shape. Its values are appended to `storage`, which must
// outlive the entry.
inline reuseformer::io::tensor_entry rounded_to_bf16(const reuseformer::io::tensor_entry& f32,
                                                     std::vector<std::vector<reuseformer::bfloat16>>& storage) {
  const std::span<const float> values(reinterpret_cast<const float*>(f32.bytes.data()),
                                      f32.bytes.size() / sizeof(float));
  std::vector<reuseformer::bfloat16>& rounded = storage.emplace_back();
  for (const float v : values) rounded.push_back(reuseformer::to_bfloat16(v));
  return reuseformer::io::make_entry(f32.name, rounded, f32.shape);
}

}  // namespace reuseformer_test
