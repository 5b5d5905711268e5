// A checkpoint whose Linear weights are stored as int8: each X.weight I8
// [out, in] with X.weight_scale F32 [out], w ≈ q · scale per output row
// (docs/checkpoints.md §Int8 weights), as a quantizer that ran before
// deployment writes them. Loaded with int8_products, the values and scales are
// packed as they are; loaded with the float products, each weight is
// dequantized once, to q · scale. The example writes such a file from random
// float weights (quantized here as int8_products would quantize them), loads it
// both ways and compares their outputs and parameter bytes.
#include <reuseformer/io.hpp>
#include <reuseformer/reuseformer.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;
namespace rf = reuseformer;

int main() try {
  // The model's config.json, as a checkpoint directory would hold it.
  const rf::io::model_config m = rf::io::parse_config_json(
      R"({"hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 128, "num_hidden_layers": 2})");
  const rf::encoder_config& config = m.encoder;
  rf::encoder_parameters<float> weights(config);
  weights.fill_random(1, 0.2);

  // Every Linear's weight [out, in] becomes int8 values with a scale per row;
  // the other tensors (biases, LayerNorms) stay float.
  std::deque<std::vector<std::int8_t>> values;
  std::deque<std::vector<float>> scales;
  std::vector<rf::io::tensor_entry> tensors;
  for (const rf::io::tensor_entry& e : rf::io::encoder_tensors(config, weights.layers())) {
    if (!(e.name.ends_with(".weight") && e.shape.size() == 2)) {
      tensors.push_back(e);
      continue;
    }
    const auto* w = reinterpret_cast<const float*>(e.bytes.data());
    const rf::index_t out = e.shape[0], in = e.shape[1];
    std::vector<std::int8_t>& q = values.emplace_back(static_cast<std::size_t>(out * in));
    std::vector<float>& scale = scales.emplace_back(static_cast<std::size_t>(out));
    for (rf::index_t r = 0; r < out; ++r) {
      float max_abs = 0;
      for (rf::index_t p = 0; p < in; ++p) max_abs = std::max(max_abs, std::abs(w[r * in + p]));
      scale[r] = rf::gemm::column_scale(max_abs);
      for (rf::index_t p = 0; p < in; ++p) q[r * in + p] = rf::gemm::quantize_weight(w[r * in + p], scale[r]);
    }
    tensors.push_back(rf::io::make_entry(e.name, q, e.shape));
    tensors.push_back(rf::io::make_entry(e.name + "_scale", scale, {out}));
  }
  const fs::path file = fs::temp_directory_path() / ("int8_checkpoint_example-" + std::to_string(::getpid()));
  rf::io::write_safetensors(file, tensors);

  const rf::io::model<float, rf::simd::default_arch, rf::int8_products> int8(m, rf::io::safetensors_reader(file));
  const rf::io::model<float> dequantized(m, rf::io::safetensors_reader(file));
  fs::remove(file);

  const rf::index_t batch = 2, seq = 16, d = config.hidden_size;
  std::vector<float> x(static_cast<std::size_t>(batch * seq * d)), y_int8(x.size()), y_float(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1F * static_cast<float>(i));
  rf::workspace ws = int8.make_workspace(batch, seq, 2);
  int8.forward(rf::view(x, {batch, seq, d}), rf::view(y_int8, {batch, seq, d}), ws);
  dequantized.forward(rf::view(x, {batch, seq, d}), rf::view(y_float, {batch, seq, d}), ws);

  // They differ by the int8 products' quantization of the activations (the
  // weights are the same, up to float rounding of q · scale).
  double max_diff = 0;
  for (std::size_t i = 0; i < x.size(); ++i) max_diff = std::max(max_diff, double(std::abs(y_int8[i] - y_float[i])));
  std::printf("parameter bytes: int8 products %zu, float products on the dequantized weights %zu\n",
              int8.parameter_bytes(), dequantized.parameter_bytes());
  std::printf("max |int8 - float| over the outputs: %.3e\n", max_diff);
  return max_diff < 0.1 && int8.parameter_bytes() < dequantized.parameter_bytes() / 2 ? 0 : 1;
} catch (const rf::error& e) {
  std::fprintf(stderr, "int8_checkpoint: %s\n", e.what());
  return 1;
}
