#pragma once
// The bodies of the fuzz targets, shared by the libFuzzer entry points
// (fuzz/fuzz_*.cpp, built with clang by fuzz/CMakeLists.txt) and by
// tests/test_fuzz_regressions.cpp, which replays the committed seed corpora and
// every input a fuzzer found to break something.
//
// Each function takes untrusted bytes and returns "" when the library accepted
// them, or the message of the reuseformer::error it threw: rejecting bad input
// with a reuseformer::error is the expected outcome. Everything else escapes and
// is a finding: a crash, a sanitizer report, an exception of another type, or a
// broken invariant (thrown as reuseformer_fuzz::finding, which deliberately is
// not a reuseformer::error).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <reuseformer/io.hpp>

namespace reuseformer_fuzz {

namespace rf = reuseformer;
namespace io = reuseformer::io;
using bytes = std::span<const std::byte>;
using rf::index_t;

// The name every fuzzed input goes by; documented messages start with it.
inline constexpr std::string_view source = "<fuzz>";

// A property of the library that an input broke.
struct finding : std::logic_error {
  using std::logic_error::logic_error;
};

inline void expect(bool condition, const std::string& what) {
  if (!condition) throw finding("fuzz invariant broken: " + what);
}

// "" when f() returns, the message when it throws reuseformer::error; any
// other exception escapes.
template <class F>
std::string rejected(F&& f) {
  try {
    f();
  } catch (const rf::error& e) {
    return e.what();
  }
  return {};
}

// The message of a documented error, which must name the input.
inline std::string named(std::string message) {
  expect(message.starts_with(std::string(source) + ": "), "message does not start with the source: " + message);
  return message;
}

// Reads every value, so that the sanitizers see each byte the library hands out.
inline volatile double sink = 0;
template <class T>
void touch(const T* data, index_t count) {
  double sum = 0;
  for (index_t i = 0; i < count; ++i) sum += static_cast<double>(data[i]);
  sink = sum;
}

inline bool is_float(io::dtype t) {
  using enum io::dtype;
  return t == F64 || t == F32 || t == F16 || t == BF16;
}
inline bool is_integer(io::dtype t) {
  using enum io::dtype;
  return t == I64 || t == I32 || t == I16 || t == I8 || t == U32 || t == U16 || t == U8;
}

template <class T, std::size_t Rank>
void check_view(const io::loaded_tensor<T>& t, const std::string& name) {
  const std::string message = rejected([&] { static_cast<void>(t.template view<Rank>()); });
  expect(message.empty() == (t.shape().size() == Rank),
         name + ": view<" + std::to_string(Rank) + "> " + (message.empty() ? "accepted" : message));
}

template <class T>
void load_as(const io::safetensors_reader& reader, const std::string& name, const io::tensor_info& info) {
  const io::loaded_tensor<T> t = reader.load<T>(name);
  expect(t.shape() == info.shape && t.size() == info.size(), name + ": loaded shape differs from the header's");
  touch(t.data(), t.size());
  check_view<T, 1>(t, name);
  check_view<T, 2>(t, name);
  check_view<T, 3>(t, name);
}

// What a reader that accepted `input` promises: every tensor lies inside the
// input, holds exactly its shape's bytes, shares none with another, and loads
// as its dtype allows (and is refused with a reuseformer::error otherwise).
inline void check_reader(const io::safetensors_reader& reader, bytes input) {
  const std::vector<std::string> names = reader.names();
  expect(std::ranges::is_sorted(names), "names() is not sorted");
  std::vector<bytes> spans;
  for (const std::string& name : names) {
    expect(reader.contains(name), name + ": listed but not contained");
    const io::tensor_info& info = reader.find(name);
    const bytes b = info.bytes;
    expect(b.empty() || (b.data() >= input.data() && b.data() + b.size() <= input.data() + input.size()),
           name + ": bytes outside the input");
    expect(static_cast<std::size_t>(info.size()) * io::size_in_bytes(info.type) == b.size(),
           name + ": byte count differs from shape times dtype size");
    if (!b.empty()) spans.push_back(b);
    if (is_float(info.type)) {
      load_as<float>(reader, name, info);
      load_as<double>(reader, name, info);
      expect(!named(rejected([&] { static_cast<void>(reader.load_integers(name)); })).empty(),
             name + ": floating-point tensor loaded as integers");
    } else if (is_integer(info.type)) {
      const std::vector<std::int64_t> values = reader.load_integers(name);
      expect(static_cast<index_t>(values.size()) == info.size(), name + ": integer count differs from shape");
      touch(values.data(), info.size());
      expect(!named(rejected([&] { static_cast<void>(reader.load<float>(name)); })).empty(),
             name + ": integer tensor loaded as float");
    } else {  // BOOL, F8_*, U64: readable only as raw bytes
      touch(reinterpret_cast<const unsigned char*>(b.data()), static_cast<index_t>(b.size()));
      expect(!named(rejected([&] { static_cast<void>(reader.load<double>(name)); })).empty(),
             name + ": " + std::string(io::name(info.type)) + " tensor loaded as double");
      expect(!named(rejected([&] { static_cast<void>(reader.load_integers(name)); })).empty(),
             name + ": " + std::string(io::name(info.type)) + " tensor loaded as integers");
    }
  }
  std::ranges::sort(spans, std::less<>{}, [](bytes s) { return s.data(); });
  for (std::size_t i = 1; i < spans.size(); ++i)
    expect(spans[i].data() >= spans[i - 1].data() + spans[i - 1].size(), "two tensors share bytes");
  std::size_t text = 0;
  for (const auto& [key, value] : reader.metadata()) text += key.size() + value.size();
  expect(text <= input.size(), "metadata longer than the input");
  expect(!named(rejected([&] { static_cast<void>(reader.find("\x01not a tensor")); })).empty(),
         "find() of an absent name");
}

// Target 1: the safetensors reader on arbitrary bytes.
inline std::string safetensors(bytes input) {
  std::optional<io::safetensors_reader> reader;
  if (std::string message = rejected([&] { reader.emplace(input, std::string(source)); }); !message.empty())
    return named(message);
  check_reader(*reader, input);
  return {};
}

// Target 2: config.json text.
inline std::string config_json(bytes input) {
  const std::string_view text(reinterpret_cast<const char*>(input.data()), input.size());
  std::optional<io::model_config> config;
  if (std::string message = rejected([&] { config = io::parse_config_json(text, source); }); !message.empty())
    return named(message);
  const std::string invalid = rejected([&] { config->encoder.validate(); });
  expect(invalid.empty(), "accepted config fails validate(): " + invalid);
  const rf::embeddings_options& e = config->embeddings;
  expect(e.hidden_size == config->encoder.hidden_size && e.vocab_size >= 1 && e.max_position_embeddings >= 1 &&
             e.type_vocab_size >= 1,
         "accepted embeddings options out of range");
  return {};
}

// The model the input targets feed: d = 8, H = 2, d_ff = 16, two layers (the
// second reuses one head), random weights; embeddings with 16 ids, 8
// positions, 2 token types. Built once per process.
struct tiny_model {
  static constexpr index_t d = 8;
  rf::encoder_config config = [] {
    rf::encoder_config c;
    c.hidden_size = d;
    c.num_attention_heads = 2;
    c.intermediate_size = 16;
    c.num_hidden_layers = 2;
    c.reuse_schedule = {0, 1};
    return c;
  }();
  rf::encoder_parameters<float> parameters = [&] {
    rf::encoder_parameters<float> p(config);
    p.fill_random(/*seed=*/7, /*stddev=*/0.5);
    return p;
  }();
  rf::encoder<float> encoder{config, parameters.layers()};
  rf::embeddings_options options{
      .hidden_size = d, .vocab_size = 16, .max_position_embeddings = 8, .type_vocab_size = 2, .layer_norm_eps = 1e-12};
  std::vector<float> tables = [] {
    std::vector<float> t((16 + 8 + 2) * d + 2 * d);
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(static_cast<int>(i * 37 % 29) - 14) / 8.0f;
    return t;
  }();
  rf::embeddings<float> embeddings{{{tables.data(), {16, d}},
                                    {tables.data() + 16 * d, {8, d}},
                                    {tables.data() + 24 * d, {2, d}},
                                    {{tables.data() + 26 * d, {d}}, {tables.data() + 27 * d, {d}}}},
                                   options};

  static const tiny_model& get() {
    static const tiny_model model;
    return model;
  }
};

// Target 3: the inputs of reuseformer-encode (io::read_model_input), then what
// the tool does with them: embeddings (ids and token types are range-checked
// there) and the encoder (mask values are checked there). The last byte picks
// a model with (odd) or without (even) embeddings; the rest is the file.
inline std::string model_input(bytes input) {
  if (input.empty()) return {};
  const bool has_embeddings = (std::to_integer<unsigned>(input.back()) & 1u) != 0;
  std::optional<io::safetensors_reader> reader;
  std::optional<io::model_input> x;
  if (std::string message = rejected([&] {
        reader.emplace(input.first(input.size() - 1), std::string(source));
        x.emplace(io::read_model_input(*reader, tiny_model::d, has_embeddings));
      });
      !message.empty())
    return named(message);

  const index_t b = x->batch, n = x->seq, d = tiny_model::d;
  expect(b >= 1 && n >= 1, "accepted input with an empty batch");
  if (x->hidden) {
    expect(x->hidden->shape() == std::vector<index_t>{b, n, d}, "hidden_states shape");
    expect(x->ids.empty() && x->types.empty(), "both hidden_states and ids");
  } else {
    expect(has_embeddings, "input_ids accepted for a model without embeddings");
    expect(static_cast<index_t>(x->ids.size()) == b * n, "input_ids size");
    expect(x->types.empty() || static_cast<index_t>(x->types.size()) == b * n, "token_type_ids size");
  }
  const rf::attention_mask mask = x->mask();
  expect(!mask.present() || mask.shape() == std::array<index_t, 2>{b, n}, "attention_mask shape");

  const tiny_model& m = tiny_model::get();
  std::vector<float> hidden(static_cast<std::size_t>(b * n * d));
  const rf::tensor_view<float, 3> out(hidden.data(), {b, n, d});
  rf::workspace ws = m.encoder.make_workspace(b, n, 1);
  const std::string message = rejected([&] {
    if (mask.present()) {
      std::vector<float> additive(static_cast<std::size_t>(b * n));
      mask.to_additive(b, n, additive.data());
    }
    if (x->hidden) {
      m.encoder.forward(x->hidden->view<3>(), out, ws, mask);
    } else {
      m.embeddings.forward(rf::tensor_view<const std::int64_t, 2>(x->ids.data(), {b, n}),
                           rf::tensor_view<const std::int64_t, 2>(x->types.empty() ? nullptr : x->types.data(),
                                                                  {x->types.empty() ? 0 : b, n}),
                           out, 1);
      m.encoder.forward(out, out, ws, mask);
    }
  });
  if (!message.empty()) return message;  // a bad id, token type or mask value
  // Post-LN output of moderate finite input is finite, padding or not.
  const bool moderate = !x->hidden || std::all_of(x->hidden->data(), x->hidden->data() + x->hidden->size(),
                                                  [](float v) { return std::abs(v) <= 1e4f; });
  if (moderate)
    expect(std::all_of(hidden.begin(), hidden.end(), [](float v) { return std::isfinite(v); }),
           "non-finite output for moderate input");
  return {};
}

// Target 4: binding a checkpoint to a fixed tiny config (io::bert_model): tensor
// names (the "bert." root, layer indices), missing, unexpected and misshapen
// tensors, dtype conversion; then one forward pass through what was bound. The
// last byte picks the config: even = standard scores, two layers, the second
// reusing one of two heads; odd = pairwise_symmetric scores with
// relative-position bias (P = 4), the second layer reusing both heads.
inline io::model_config bert_config(bool pairwise) {
  io::model_config c;
  rf::encoder_config& e = c.encoder;
  e.hidden_size = 8;
  e.num_attention_heads = 2;
  e.intermediate_size = 16;
  e.num_hidden_layers = 2;
  e.layer_norm_eps = 1e-12;
  if (pairwise) {
    e.score = rf::score_function::pairwise_symmetric;
    e.use_relative_pe = true;
    e.pe_max_seq_length = 4;
    e.reuse_schedule = {0, 2};
  } else {
    e.reuse_schedule = {0, 1};
  }
  c.embeddings = {
      .hidden_size = 8, .vocab_size = 16, .max_position_embeddings = 8, .type_vocab_size = 2, .layer_norm_eps = 1e-12};
  return c;
}

template <rf::score_function Score>
std::string bind(const io::model_config& config, bytes file) {
  std::optional<io::bert_model<float, Score>> model;
  if (std::string message = rejected([&] { model.emplace(config, io::safetensors_reader(file, std::string(source))); });
      !message.empty())
    return named(message);

  constexpr index_t b = 1, n = 3, d = 8;
  std::vector<float> hidden(static_cast<std::size_t>(b * n * d), 0.25f);
  const rf::tensor_view<float, 3> out(hidden.data(), {b, n, d});
  const std::string message = rejected([&] {
    rf::workspace ws = model->encoder().make_workspace(b, n, 1);
    if (model->embeddings()) {
      const std::array<std::int64_t, 3> ids{0, 15, 7}, types{0, 1, 0};
      model->embeddings()->forward(rf::tensor_view<const std::int64_t, 2>(ids.data(), {b, n}),
                                   rf::tensor_view<const std::int64_t, 2>(types.data(), {b, n}), out, 1);
    }
    const std::array<std::int64_t, 3> mask{1, 1, 0};
    model->encoder().forward(out, out, ws, rf::tensor_view<const std::int64_t, 2>(mask.data(), {b, n}));
  });
  expect(message.empty(), "forward pass of a bound model failed: " + message);
  touch(hidden.data(), b * n * d);
  return {};
}

inline std::string bert_model(bytes input) {
  if (input.empty()) return {};
  const bytes file = input.first(input.size() - 1);
  if ((std::to_integer<unsigned>(input.back()) & 1u) != 0)
    return bind<rf::score_function::pairwise_symmetric>(bert_config(true), file);
  return bind<rf::score_function::standard>(bert_config(false), file);
}

}  // namespace reuseformer_fuzz
