#pragma once
// The benchmarks' export of a model in Hugging Face layout, DIR/config.json and
// DIR/model.safetensors: what the peers (bench/peers) load, so that they run
// the very weights the library runs.
#include <filesystem>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>
#include <reuseformer/io.hpp>

namespace bench_support {

inline void export_hf_model(const std::filesystem::path& dir, const reuseformer::encoder_config& config,
                            const std::vector<reuseformer::encoder_layer_weights<float>>& layers) {
  std::filesystem::create_directories(dir);
  nlohmann::ordered_json hf = {{"model_type", "bert"},
                               {"hidden_size", config.hidden_size},
                               {"num_attention_heads", config.num_attention_heads},
                               {"intermediate_size", config.intermediate_size},
                               {"num_hidden_layers", config.num_hidden_layers},
                               {"hidden_act", "gelu"},
                               {"layer_norm_eps", config.layer_norm_eps}};
  if (config.causal) hf["causal"] = true;
  std::ofstream(dir / "config.json") << hf.dump(2) << "\n";
  reuseformer::io::write_safetensors(dir / "model.safetensors", reuseformer::io::encoder_tensors(config, layers));
}

}  // namespace bench_support
