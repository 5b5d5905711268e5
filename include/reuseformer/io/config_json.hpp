#pragma once
// Reads a Hugging Face BERT config.json (docs/checkpoints.md §config.json keys)
// into the library's configs.
//
// Keys read: hidden_size, num_attention_heads, intermediate_size,
// num_hidden_layers, hidden_act ("gelu", "gelu_new" / "gelu_pytorch_tanh",
// "relu"), layer_norm_eps, vocab_size, max_position_embeddings, type_vocab_size;
// plpi_affinity_function ("vanilla", "symmetric", "pairwise", and this library's
// "pairwise_diagonal", "pairwise_symmetric"); TF ReuseTransformer's
// reuse_attention and max_reuse_layer_idx, and the library's reuse_schedule (a
// list of K_l; when both forms are given they must agree); norm_first,
// use_relative_pe, pe_max_seq_length, causal. A missing key keeps BERT-base's
// value (TF's for max_reuse_layer_idx: 6); unknown keys are ignored, as
// Hugging Face configs carry many that do not concern an encoder.
// Every error throws reuseformer::error naming the file and the key, with what
// was expected and what was found: "model/config.json: hidden_act: expected one
// of "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", found "swish"".

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "reuseformer/core/error.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/embeddings.hpp"

namespace reuseformer::io {

// What a config.json describes: the encoder and, for checkpoints that carry
// them, the embedding tables' sizes (hidden size and eps are the encoder's).
struct model_config {
  encoder_config encoder;
  embeddings_options embeddings;
};

}  // namespace reuseformer::io

namespace reuseformer::detail {

class config_reader {
 public:
  config_reader(const nlohmann::json& json, std::string_view source) : json_(json), source_(source) {}

  [[nodiscard]] const nlohmann::json* find(const char* key) const {
    const auto it = json_.find(key);
    return it == json_.end() || it->is_null() ? nullptr : &*it;
  }

  // Integers above 2^63 - 1 would wrap to negative values (18446744073709551615 to -1).
  static bool fits(const nlohmann::json& v) {
    return v.is_number_integer() &&
           !(v.is_number_unsigned() &&
             v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
  }
  void integer(const char* key, index_t& out) const {
    if (const nlohmann::json* v = find(key)) {
      require(fits(*v), key, "expected an integer", *v);
      out = v->get<index_t>();
    }
  }
  void boolean(const char* key, bool& out) const {
    if (const nlohmann::json* v = find(key)) {
      require(v->is_boolean(), key, "expected true or false", *v);
      out = v->get<bool>();
    }
  }
  void number(const char* key, double& out) const {
    if (const nlohmann::json* v = find(key)) {
      require(v->is_number(), key, "expected a number", *v);
      out = v->get<double>();
    }
  }
  // A string that must be one of `names` (the message lists them); returns its index.
  std::optional<std::size_t> choice(const char* key, const std::vector<std::string_view>& names) const {
    const nlohmann::json* v = find(key);
    if (!v) return std::nullopt;
    for (std::size_t i = 0; v->is_string() && i < names.size(); ++i)
      if (v->get<std::string>() == names[i]) return i;
    std::string expected = "expected one of ";
    for (std::size_t i = 0; i < names.size(); ++i) expected += (i ? ", \"" : "\"") + std::string(names[i]) + "\"";
    fail(key, expected, *v);
  }
  std::optional<std::vector<index_t>> integers(const char* key) const {
    const nlohmann::json* v = find(key);
    if (!v) return std::nullopt;
    bool ok = v->is_array();
    for (std::size_t i = 0; ok && i < v->size(); ++i) ok = fits((*v)[i]);
    require(ok, key, "expected a list of integers", *v);
    return v->get<std::vector<index_t>>();
  }

  void require(bool condition, const char* key, std::string_view expected, const nlohmann::json& found) const {
    if (!condition) fail(key, expected, found);
  }
  [[noreturn]] void fail(const char* key, std::string_view expected, const nlohmann::json& found) const {
    throw error(concat(source_, ": ", key, ": ", expected, ", found ", found.dump()));
  }

 private:
  const nlohmann::json& json_;
  std::string_view source_;
};

}  // namespace reuseformer::detail

namespace reuseformer::io {

// The most layers a config with TF's reuse_attention form may have: its
// schedule is built with one entry per layer (deep models have hundreds).
inline constexpr index_t max_reuse_layers = 1 << 16;

// Parses config.json text; `source` names it in messages.
[[nodiscard]] inline model_config parse_config_json(std::string_view text, std::string_view source = "config.json") {
  nlohmann::json json;
  // Nesting is bounded (as serde_json bounds it, at 128): error messages dump
  // the offending value recursively, and {"hidden_size": [[[…]]]} 100,000 deep
  // overflowed the stack (found with the fuzz/fuzz_config_json target).
  constexpr int max_nesting = 128;
  const auto bounded = [&](int depth, nlohmann::json::parse_event_t event, const nlohmann::json&) {
    using event_t = nlohmann::json::parse_event_t;
    detail::require(!((event == event_t::object_start || event == event_t::array_start) && depth >= max_nesting),
                    source, ": expected JSON nested at most ", max_nesting, " levels deep, found deeper nesting");
    return true;
  };
  try {
    json = nlohmann::json::parse(text, bounded);
  } catch (const nlohmann::json::exception& e) {
    throw error(detail::concat(source, ": expected JSON, found a syntax error: ", e.what()));
  }
  detail::require(json.is_object(), source, ": expected a JSON object, found ", json.type_name());
  const detail::config_reader r(json, source);

  model_config m;
  encoder_config& c = m.encoder;
  r.integer("hidden_size", c.hidden_size);
  r.integer("num_attention_heads", c.num_attention_heads);
  r.integer("intermediate_size", c.intermediate_size);
  r.integer("num_hidden_layers", c.num_hidden_layers);
  if (const auto act = r.choice("hidden_act", {"gelu", "gelu_new", "gelu_pytorch_tanh", "relu"}))
    c.hidden_act = *act == 0 ? activation::gelu : *act == 3 ? activation::relu : activation::gelu_tanh;
  r.number("layer_norm_eps", c.layer_norm_eps);
  std::vector<std::string_view> score_names;
  for (const score_function f : all_score_functions) score_names.push_back(name_of(f));
  if (const auto score = r.choice("plpi_affinity_function", score_names)) c.score = all_score_functions[*score];
  bool norm_first = false;
  r.boolean("norm_first", norm_first);
  c.norm = norm_first ? norm_placement::pre : norm_placement::post;
  r.boolean("causal", c.causal);
  r.boolean("use_relative_pe", c.use_relative_pe);
  r.integer("pe_max_seq_length", c.pe_max_seq_length);

  try {
    if (const auto schedule = r.integers("reuse_schedule")) c.reuse_schedule = *schedule;
    if (r.find("reuse_attention")) {
      index_t reuse_attention = 0, max_reuse_layer_idx = 6;
      r.integer("reuse_attention", reuse_attention);
      r.integer("max_reuse_layer_idx", max_reuse_layer_idx);
      detail::require_heads(c.hidden_size, c.num_attention_heads);
      // The schedule has one entry per layer: a negative count threw
      // std::length_error and a huge one exhausted memory here, before
      // validate() (found with the fuzz/fuzz_config_json target).
      detail::require(c.num_hidden_layers >= 0, "num_hidden_layers: expected >= 0, found ", c.num_hidden_layers);
      detail::require(c.num_hidden_layers <= max_reuse_layers, "num_hidden_layers: expected at most ", max_reuse_layers,
                      " with reuse_attention (one schedule entry per layer), found ", c.num_hidden_layers);
      const std::vector<index_t> reference =
          reference_reuse_schedule(reuse_attention, max_reuse_layer_idx, c.num_attention_heads, c.num_hidden_layers);
      if (c.reuse_schedule.empty())
        c.reuse_schedule = reference;
      else if (c.reuse_schedule != reference)
        r.fail(
            "reuse_schedule",
            "expected the schedule reuse_attention and max_reuse_layer_idx give, " + nlohmann::json(reference).dump(),
            *r.find("reuse_schedule"));
    }
    c.validate();
  } catch (const error& e) {
    const std::string what = e.what();
    if (what.rfind(std::string(source) + ": ", 0) == 0) throw;
    throw error(detail::concat(source, ": ", what));
  }

  m.embeddings.hidden_size = c.hidden_size;
  m.embeddings.layer_norm_eps = c.layer_norm_eps;
  r.integer("vocab_size", m.embeddings.vocab_size);
  r.integer("max_position_embeddings", m.embeddings.max_position_embeddings);
  r.integer("type_vocab_size", m.embeddings.type_vocab_size);
  for (const auto& [key, value] : {std::pair{"vocab_size", m.embeddings.vocab_size},
                                   std::pair{"max_position_embeddings", m.embeddings.max_position_embeddings},
                                   std::pair{"type_vocab_size", m.embeddings.type_vocab_size}})
    r.require(value >= 1, key, "expected >= 1", nlohmann::json(value));
  return m;
}

// Reads and parses the file at `path`.
[[nodiscard]] inline model_config read_config_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  detail::require(in.good(), path, ": cannot open: ", std::strerror(errno));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_config_json(text, path);
}

}  // namespace reuseformer::io
