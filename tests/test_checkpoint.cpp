// Loading Hugging Face BERT-style checkpoints (docs/checkpoints.md): config.json keys and
// their errors, binding model.safetensors by tensor name and its errors, and
// parity with PyTorch through the C++ API (io::bert_model) for every fixture that
// has a config.json: every score function, reuse schedule, relative positions,
// pre-/post-LN, causal masks, embeddings from input_ids, a "bert." prefix and F16
// weights.
#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <utility>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <reuseformer/io.hpp>

#include "support/bf16_entries.hpp"
#include "support/catch.hpp"
#include "support/compare.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
namespace io = reuseformer::io;
namespace rf = reuseformer;
using reuseformer_test::error_message;
using reuseformer_test::temp_dir;

namespace {

const fs::path fixtures = REUSEFORMER_FIXTURE_DIR;

// Every fixture with a config.json: a checkpoint directory's two files.
std::vector<std::string> checkpoint_fixtures() {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(fixtures)) {
    const std::string file = entry.path().filename().string();
    if (file.ends_with(".config.json"))
      names.push_back(file.substr(0, file.size() - std::string(".config.json").size()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Runs a loaded checkpoint on the input of fixture `name` (its .safetensors) on
// 2 threads; returns the output [B, N, d] and every layer's attention probabilities.
template <class Model>
auto run_model(const Model& model, const std::string& name) {
  using T = typename Model::value_type;
  const io::safetensors_reader file(fixtures / (name + ".safetensors"));
  std::vector<T> out;
  std::vector<std::vector<T>> stacks;
  {
    const auto& encoder = model.encoder();
    const bool from_ids = file.contains("input_ids");
    const std::vector<rf::index_t>& shape = file.find(from_ids ? "input_ids" : "hidden_states").shape;
    const rf::index_t b = shape[0], n = shape[1], d = encoder.hidden_size(), h = encoder.heads();
    out.resize(static_cast<std::size_t>(b * n * d));
    const rf::tensor_view<T, 3> y(out.data(), {b, n, d});
    stacks.assign(static_cast<std::size_t>(encoder.attention_layers()),
                  std::vector<T>(static_cast<std::size_t>(b * h * n * n)));
    std::vector<rf::tensor_view<T, 4>> views;
    for (auto& s : stacks) views.emplace_back(s.data(), std::array<rf::index_t, 4>{b, h, n, n});

    // The mask as stored: integers, or F32 read as float.
    const bool has_mask = file.contains("attention_mask");
    const bool float_stored = has_mask && file.find("attention_mask").type == io::dtype::F32;
    std::vector<std::int64_t> mask;
    std::vector<float> float_mask;
    if (float_stored) {
      const auto loaded = file.load<float>("attention_mask");
      float_mask.assign(loaded.data(), loaded.data() + loaded.size());
    } else if (has_mask) {
      mask = file.load_integers("attention_mask");
    }
    const rf::attention_mask m =
        !float_mask.empty() ? rf::attention_mask(rf::tensor_view<const float, 2>(float_mask.data(), {b, n}))
        : !mask.empty()     ? rf::attention_mask(rf::tensor_view<const std::int64_t, 2>(mask.data(), {b, n}))
                            : rf::attention_mask();
    auto ws = encoder.make_workspace(b, n, 2);
    if (from_ids) {
      REQUIRE(model.embeddings().has_value());
      const std::vector<std::int64_t> ids = file.load_integers("input_ids"),
                                      types = file.load_integers("token_type_ids");
      model.embeddings()->forward(rf::tensor_view<const std::int64_t, 2>(ids.data(), {b, n}),
                                  rf::tensor_view<const std::int64_t, 2>(types.data(), {b, n}), y, 2);
      encoder.forward(y, y, ws, m, {.attentions = views});
    } else {
      const auto x = file.load<T>("hidden_states");
      encoder.forward(x.template view<3>(), y, ws, m, {.attentions = views});
    }
  }
  return std::pair{out, stacks};
}

// Runs the checkpoint `name` (config from its .config.json, weights and input
// from its .safetensors) with scalar type T, compiled for its score function.
template <class T>
std::pair<std::vector<T>, std::vector<std::vector<T>>> run_checkpoint(const std::string& name) {
  const io::model_config config = io::read_config_json((fixtures / (name + ".config.json")).string());
  return rf::visit(config.encoder.score, [&]<rf::score_function Score>() {
    return run_model(io::bert_model<T, Score>(config, io::safetensors_reader(fixtures / (name + ".safetensors"))),
                     name);
  });
}

rf::encoder_config tiny_config() {
  rf::encoder_config c;
  c.hidden_size = 8;
  c.num_attention_heads = 2;
  c.intermediate_size = 12;
  c.num_hidden_layers = 2;
  return c;
}

// config.json text for tiny_config() with `extra` keys added (a JSON fragment).
std::string tiny_json(const std::string& extra = "") {
  return R"({"hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 12, "num_hidden_layers": 2)" +
         (extra.empty() ? "" : ", " + extra) + "}";
}

// Writes `config`'s parameters (filled at random) under Hugging Face names into
// dir/model.safetensors, minus the tensors `drop` and with `extra` ones, and
// returns the file's path.
fs::path write_checkpoint(const fs::path& dir, const rf::encoder_config& config,
                          const std::vector<std::string>& drop = {},
                          const std::vector<std::pair<std::string, std::vector<float>>>& extra = {}) {
  rf::encoder_parameters<float> p(config);
  p.fill_random(5, 0.1);
  std::vector<io::tensor_entry> tensors = io::encoder_tensors(config, p.layers());
  std::erase_if(tensors,
                [&](const io::tensor_entry& t) { return std::find(drop.begin(), drop.end(), t.name) != drop.end(); });
  for (const auto& [name, values] : extra)
    tensors.push_back(io::make_entry(name, values, {static_cast<rf::index_t>(values.size())}));
  const fs::path path = dir / "model.safetensors";
  io::write_safetensors(path, tensors);
  return path;
}

// The message building `Score`'s model (product backend Products) from `config` and `file` throws.
template <rf::score_function Score = rf::score_function::standard, class Products = rf::packed_products>
std::string bind_error(const rf::encoder_config& config, const fs::path& file) {
  io::model_config m;
  m.encoder = config;
  return error_message(
      [&] { io::bert_model<float, Score, rf::simd::default_arch, Products> model(m, io::safetensors_reader(file)); });
}

// A checkpoint's tensors with int8 Linear weights, from the F32 entries `f32`:
// each Linear's `X.weight` [out, in] becomes I8 values q with `X.weight_scale`
// F32 [out] (`int8`), and the same checkpoint with F32 weights q · s is
// `dequantized`. The scales are dyadic with 7 significant bits, so q · s is
// exact in float, and every row holds ±127, so quantizing q · s per row as
// int8_products does (max |w| / 127) gives back s and q exactly (checked
// below): the two files describe the same int8 weights. (Not so for every
// float scale: fl(fl(127 · s) / 127) differs from s for about one float in 130.)
struct int8_checkpoint {
  std::deque<std::vector<std::int8_t>> q;
  std::deque<std::vector<float>> scales, weights;
  std::vector<io::tensor_entry> int8, dequantized;

  explicit int8_checkpoint(const std::vector<io::tensor_entry>& f32) {
    std::mt19937 bits(29);
    for (const io::tensor_entry& e : f32) {
      if (!(e.name.ends_with(".weight") && e.shape.size() == 2)) {
        int8.push_back(e);
        dequantized.push_back(e);
        continue;
      }
      const rf::index_t out = e.shape[0], in = e.shape[1];
      std::vector<std::int8_t>& values = q.emplace_back(static_cast<std::size_t>(out * in));
      std::vector<float>& scale = scales.emplace_back(static_cast<std::size_t>(out));
      std::vector<float>& w = weights.emplace_back(values.size());
      for (rf::index_t r = 0; r < out; ++r) {
        scale[r] = std::ldexp(static_cast<float>(64 + bits() % 64), -15);
        REQUIRE(rf::gemm::column_scale(127 * scale[r]) == scale[r]);
        for (rf::index_t p = 0; p < in; ++p) {
          const std::int8_t v = p == r % in ? (r % 2 ? 127 : -127) : static_cast<std::int8_t>(int(bits() % 255) - 127);
          values[r * in + p] = v;
          w[r * in + p] = static_cast<float>(v) * scale[r];
        }
      }
      int8.push_back(io::make_entry(e.name, values, e.shape));
      int8.push_back(io::make_entry(e.name + "_scale", scale, {out}));
      dequantized.push_back(io::make_entry(e.name, w, e.shape));
    }
  }
};

}  // namespace

TEST_CASE("config.json: Hugging Face BERT keys, the reuse forms and the library's keys", "[io][config]") {
  SECTION("a BERT-base config with keys the reader does not use") {
    const io::model_config m = io::parse_config_json(R"({
      "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
      "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-12,
      "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 12,
      "pad_token_id": 0, "position_embedding_type": "absolute", "type_vocab_size": 2, "vocab_size": 30522})");
    CHECK(m.encoder.hidden_size == 768);
    CHECK(m.encoder.num_hidden_layers == 12);
    CHECK(m.encoder.hidden_act == rf::activation::gelu);
    CHECK(m.encoder.layer_norm_eps == 1e-12);
    CHECK(m.encoder.score == rf::score_function::standard);
    CHECK(m.encoder.reuse_schedule.empty());
    CHECK(m.encoder.norm == rf::norm_placement::post);
    CHECK(m.embeddings.vocab_size == 30522);
    CHECK(m.embeddings.max_position_embeddings == 512);
    CHECK(m.embeddings.type_vocab_size == 2);
    CHECK(m.embeddings.hidden_size == 768);
  }
  SECTION("TF's two-number reuse form, an explicit schedule, and both when they agree") {
    const auto two = io::parse_config_json(tiny_json(R"("reuse_attention": -1, "max_reuse_layer_idx": 1)"));
    CHECK(two.encoder.reuse_schedule == std::vector<rf::index_t>{0, 2});
    const auto list = io::parse_config_json(tiny_json(R"("reuse_schedule": [0, 1])"));
    CHECK(list.encoder.reuse_schedule == std::vector<rf::index_t>{0, 1});
    const auto both =
        io::parse_config_json(tiny_json(R"("reuse_schedule": [0, 1], "reuse_attention": 1, "max_reuse_layer_idx": 6)"));
    CHECK(both.encoder.reuse_schedule == std::vector<rf::index_t>{0, 1});
  }
  SECTION("score function, activation, norm placement, relative positions, causal") {
    const auto m = io::parse_config_json(tiny_json(
        R"("plpi_affinity_function": "pairwise_symmetric", "hidden_act": "gelu_pytorch_tanh", "norm_first": true,
           "use_relative_pe": true, "pe_max_seq_length": 16, "causal": true, "layer_norm_eps": 1e-5)"));
    CHECK(m.encoder.score == rf::score_function::pairwise_symmetric);
    CHECK(m.encoder.hidden_act == rf::activation::gelu_tanh);
    CHECK(m.encoder.norm == rf::norm_placement::pre);
    CHECK(m.encoder.use_relative_pe);
    CHECK(m.encoder.pe_max_seq_length == 16);
    CHECK(m.encoder.causal);
    CHECK(m.encoder.layer_norm_eps == 1e-5);
    CHECK(io::parse_config_json(tiny_json(R"("hidden_act": "relu")")).encoder.hidden_act == rf::activation::relu);
    CHECK(io::parse_config_json(tiny_json(R"("hidden_act": "gelu_new")")).encoder.hidden_act ==
          rf::activation::gelu_tanh);
  }
}

TEST_CASE("config.json: invalid files name the file, the key, the expectation and the value", "[io][config][errors]") {
  const auto message = [](const std::string& text) {
    return error_message([&] { (void)io::parse_config_json(text, "m/config.json"); });
  };
  CHECK(message("{").find("m/config.json: expected JSON, found a syntax error: ") == 0);
  CHECK(message("[1, 2]") == "m/config.json: expected a JSON object, found array");
  CHECK(message(R"({"hidden_size": "768"})") == R"(m/config.json: hidden_size: expected an integer, found "768")");
  CHECK(message(R"({"hidden_size": 76.8})") == "m/config.json: hidden_size: expected an integer, found 76.8");
  CHECK(message(R"({"reuse_attention": 18446744073709551615})") ==
        "m/config.json: reuse_attention: expected an integer, found 18446744073709551615");  // not -1 wrapped
  CHECK(message(R"({"hidden_act": "swish"})") ==
        R"(m/config.json: hidden_act: expected one of "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", found "swish")");
  CHECK(
      message(R"({"plpi_affinity_function": "cosine"})") ==
      R"(m/config.json: plpi_affinity_function: expected one of "vanilla", "symmetric", "pairwise", "pairwise_diagonal", "pairwise_symmetric", found "cosine")");
  CHECK(message(R"({"norm_first": "yes"})") == R"(m/config.json: norm_first: expected true or false, found "yes")");
  CHECK(message(R"({"layer_norm_eps": "1e-12"})") ==
        R"(m/config.json: layer_norm_eps: expected a number, found "1e-12")");
  CHECK(message(R"({"reuse_schedule": [0, "2"]})") ==
        R"(m/config.json: reuse_schedule: expected a list of integers, found [0,"2"])");
  CHECK(message(tiny_json(R"("reuse_schedule": [0, 1, 1])")) ==
        "m/config.json: reuse_schedule: expected 2 entries (one per layer), found 3");
  CHECK(message(tiny_json(R"("reuse_schedule": [0, 1], "reuse_attention": 2, "max_reuse_layer_idx": 1)")) ==
        "m/config.json: reuse_schedule: expected the schedule reuse_attention and max_reuse_layer_idx give, [0,2], "
        "found [0,1]");
  CHECK(message(tiny_json(R"("reuse_attention": 3)")) ==
        "m/config.json: reuse_attention: expected -1 (all heads) or a head count in [0, 2], found 3");
  CHECK(message(R"({"num_attention_heads": 5})") ==
        "m/config.json: num_attention_heads: expected a divisor of hidden_size 768, found 5");
  CHECK(message(R"({"vocab_size": 0})") == "m/config.json: vocab_size: expected >= 1, found 0");
  CHECK(error_message([] { (void)io::read_config_json("/no/such/dir/config.json"); }) ==
        "/no/such/dir/config.json: cannot open: No such file or directory");
}

TEST_CASE("checkpoints match PyTorch through the C++ API", "[io][checkpoint][pytorch]") {
  const std::vector<std::string> names = checkpoint_fixtures();
  REQUIRE(names.size() == 18);  // every encoder fixture of generate_fixtures.py
  for (const std::string& name : names) {
    const io::safetensors_reader file(fixtures / (name + ".safetensors"));
    const auto expected = file.load<double>("expected");
    const std::vector<double> want(expected.data(), expected.data() + expected.size());
    const auto check = [&]<class T>(T, double tolerance) {
      INFO(name << (std::is_same_v<T, float> ? ", float" : ", double"));
      const auto [out, stacks] = run_checkpoint<T>(name);
      CHECK_CLOSE(reuseformer_test::compare(out, want, tolerance, tolerance));
      for (std::size_t l = 0; l < stacks.size() && file.contains("expected_attentions.0"); ++l) {
        const auto s = file.load<double>("expected_attentions." + std::to_string(l));
        CHECK_CLOSE(reuseformer_test::compare(stacks[l], std::vector<double>(s.data(), s.data() + s.size()), tolerance,
                                              tolerance));
      }
    };
    check(float{}, 1e-5);  // the tolerances of test_pytorch_parity.cpp
    check(double{}, 1e-10);
  }
}

TEST_CASE("io::load_model: the score function config.json names, chosen at run time", "[io][checkpoint]") {
  for (const std::string& name : checkpoint_fixtures()) {
    INFO(name);
    const temp_dir dir;  // a checkpoint directory, as Hugging Face lays it out
    fs::copy_file(fixtures / (name + ".config.json"), dir / "config.json");
    fs::copy_file(fixtures / (name + ".safetensors"), dir / "model.safetensors");
    const io::model<float> model = io::load_model<float>(dir.path);
    const io::model_config config = io::read_config_json((fixtures / (name + ".config.json")).string());
    CHECK(model.config().encoder.score == config.encoder.score);
    CHECK(model.encoder().score() == config.encoder.score);

    // The same numbers, bit for bit, and the same sizes as the compiled model.
    CHECK(run_model(model, name) == run_checkpoint<float>(name));
    rf::visit(config.encoder.score, [&]<rf::score_function Score>() {
      const io::bert_model<float, Score> compiled(dir.path);
      CHECK(model.parameter_bytes() == compiled.parameter_bytes());
      CHECK(model.referenced_parameter_bytes() == compiled.referenced_parameter_bytes());
      CHECK(model.workspace_bytes(2, 7, 2) == compiled.workspace_bytes(2, 7, 2));
      CHECK(model.reuse_state_bytes(2, 7) == compiled.reuse_state_bytes(2, 7));
      CHECK(model.encoder().workspace_bytes(3, 5) == compiled.encoder().workspace_bytes(3, 5));
    });
  }
  // Errors name the file, as the compiled loader's do.
  const temp_dir empty;
  CHECK(error_message([&] { (void)io::load_model<float>(empty.path); }) ==
        (empty / "config.json").string() + ": cannot open: No such file or directory");
}

TEST_CASE("export and binding read one table: every score function, reuse count and relative positions",
          "[io][checkpoint]") {
  for (const rf::score_function score : rf::all_score_functions)
    for (const bool relative : {false, true}) {
      rf::encoder_config c = tiny_config();
      c.num_hidden_layers = 3;
      c.reuse_schedule = {0, 1, 2};  // a partly and a fully reusing layer
      c.score = score;
      c.use_relative_pe = relative;
      c.pe_max_seq_length = 3;
      INFO(rf::name_of(score) << (relative ? ", relative positions" : ""));
      rf::encoder_parameters<float> p(c);
      p.fill_random(11, 0.1);

      // One entry per tensor the table lists, holding every parameter once.
      const std::vector<io::tensor_entry> entries = io::encoder_tensors(c, p.layers());
      std::size_t bytes = 0;
      for (const io::tensor_entry& e : entries) bytes += e.bytes.size();
      CHECK(bytes == p.values().size() * sizeof(float));
      rf::index_t count = 0;
      for (rf::index_t l = 0; l < c.num_hidden_layers; ++l) count += rf::layer_parameter_count(c, l);
      CHECK(count == static_cast<rf::index_t>(p.values().size()));

      // Written and loaded back, the model computes what the one built on the
      // parameters computes.
      const temp_dir dir;
      io::write_safetensors(dir / "model.safetensors", entries);
      std::ofstream(dir / "config.json")
          << R"({"hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 12, "num_hidden_layers": 3, )"
          << R"("reuse_schedule": [0, 1, 2], "pe_max_seq_length": 3, "use_relative_pe": )"
          << (relative ? "true" : "false") << R"(, "plpi_affinity_function": ")" << rf::name_of(score) << "\"}";
      const io::model<float> loaded = io::load_model<float>(dir.path);
      const rf::any_encoder<float> built(c, p.layers());
      std::vector<float> x(2 * 3 * 8), y_loaded(x.size()), y_built(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
      rf::workspace ws = built.make_workspace(2, 3);
      loaded.forward(rf::view(x, {2, 3, 8}), rf::view(y_loaded, {2, 3, 8}), ws);
      built.forward(rf::view(x, {2, 3, 8}), rf::view(y_built, {2, 3, 8}), ws);
      CHECK(y_loaded == y_built);
    }
}

TEST_CASE("export: views that do not fit the table name the tensor", "[io][checkpoint][errors]") {
  rf::encoder_config c = tiny_config();
  rf::encoder_parameters<float> p(c);
  std::vector<rf::encoder_layer_weights<float>> layers = p.layers();
  layers[1].feed_forward.output.bias = {p.values().data(), {12}};
  CHECK(error_message([&] { (void)io::encoder_tensors(c, layers); }) ==
        "encoder.layer.1.output.dense.bias: expected shape [8], found [12]");
  layers.pop_back();
  CHECK(error_message([&] { (void)io::encoder_tensors(c, layers); }) ==
        "num_hidden_layers: expected 2 layers of weights, found 1");
}

TEST_CASE("binding: the embeddings, the bert. prefix, F16 weights converted once", "[io][checkpoint]") {
  const io::model_config config = io::read_config_json((fixtures / "bert_f16_embeddings.config.json").string());
  const io::bert_model<float> model(config, io::safetensors_reader(fixtures / "bert_f16_embeddings.safetensors"));
  CHECK(model.root() == "bert.");
  REQUIRE(model.embeddings().has_value());
  CHECK(model.embeddings()->parameter_bytes() == (50 + 8 + 2 + 2) * 32 * sizeof(float));
  CHECK(model.parameter_bytes() == model.encoder().parameter_bytes() + model.embeddings()->parameter_bytes());
  const io::bert_model<float, rf::score_function::pairwise> plain(
      io::read_config_json((fixtures / "pairwise.config.json").string()),
      io::safetensors_reader(fixtures / "pairwise.safetensors"));
  CHECK_FALSE(plain.embeddings().has_value());
}

TEST_CASE("binding: a BF16 checkpoint for bf16 products keeps only the packed weights", "[io][checkpoint][bf16]") {
  // The same random weights written as BF16 and as F32. The F32 file's
  // Linear weights are the unrounded values (bf16_products rounds them once,
  // to nearest even, when packing); its other tensors, which stay float, hold
  // the BF16 file's values widened.
  rf::encoder_config c = tiny_config();
  c.use_relative_pe = true;  // a referenced tensor besides the LayerNorms
  c.pe_max_seq_length = 3;
  rf::encoder_parameters<float> p(c);
  p.fill_random(13, 0.1);
  std::vector<io::tensor_entry> f32 = io::encoder_tensors(c, p.layers()), bf16;
  std::vector<std::vector<rf::bfloat16>> rounded;
  std::vector<std::vector<float>> widened;
  for (io::tensor_entry& e : f32) {
    bf16.push_back(reuseformer_test::rounded_to_bf16(e, rounded));
    const std::vector<rf::bfloat16>& r = rounded.back();
    const bool linear_weight = e.name.ends_with(".weight") && e.shape.size() == 2;
    if (linear_weight) continue;
    std::vector<float>& w = widened.emplace_back();
    for (const rf::bfloat16 v : r) w.push_back(rf::to_float(v));
    e.bytes = std::as_bytes(std::span<const float>(w));
  }
  // A third file mixes dtypes among the Linear weights (one of them F32, the
  // others BF16): its weights are all bound as float, then rounded as packed.
  std::vector<io::tensor_entry> mixed = bf16;
  for (std::size_t i = 0; i < mixed.size(); ++i)
    if (mixed[i].name == "encoder.layer.1.output.dense.weight") mixed[i] = f32[i];
  const temp_dir f32_dir, bf16_dir, mixed_dir;
  io::write_safetensors(f32_dir / "model.safetensors", f32);
  io::write_safetensors(bf16_dir / "model.safetensors", bf16);
  io::write_safetensors(mixed_dir / "model.safetensors", mixed);
  io::model_config m;
  m.encoder = c;
  using model = io::bert_model<float, rf::score_function::standard, rf::simd::default_arch, rf::bf16_products>;
  const model from_f32(m, io::safetensors_reader(f32_dir / "model.safetensors"));
  const model from_bf16(m, io::safetensors_reader(bf16_dir / "model.safetensors"));
  const model from_mixed(m, io::safetensors_reader(mixed_dir / "model.safetensors"));

  // The same packed bf16 weights: the same outputs, bit for bit, and the same sizes.
  std::vector<float> x(2 * 3 * 8), y_f32(x.size()), y_bf16(x.size()), y_mixed(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
  rf::workspace ws = from_f32.make_workspace(2, 3);
  from_f32.forward(rf::view(x, {2, 3, 8}), rf::view(y_f32, {2, 3, 8}), ws);
  from_bf16.forward(rf::view(x, {2, 3, 8}), rf::view(y_bf16, {2, 3, 8}), ws);
  from_mixed.forward(rf::view(x, {2, 3, 8}), rf::view(y_mixed, {2, 3, 8}), ws);
  CHECK(y_f32 == y_bf16);
  CHECK(y_mixed == y_bf16);
  CHECK(from_bf16.parameter_bytes() == from_f32.parameter_bytes());
  CHECK(from_bf16.referenced_parameter_bytes() == from_f32.referenced_parameter_bytes());

  // The F32 file's referenced tensors are read in place; the BF16 file's are
  // converted, and only they are kept: no float copy of a Linear's weight or bias.
  // Per layer: two LayerNorms [8] x 2 and the relative-position table [2, 5].
  const std::size_t referenced = 2 * (4 * 8 + 2 * 5) * sizeof(float);
  CHECK(from_f32.referenced_parameter_bytes() == referenced);
  CHECK(from_f32.converted_parameter_bytes() == 0);
  CHECK(from_bf16.converted_parameter_bytes() == referenced);
}

// The outputs of `model` on a fixed input [2, 3, 8].
template <class Model>
std::vector<float> outputs(const Model& model) {
  std::vector<float> x(2 * 3 * 8), y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
  rf::workspace ws = model.make_workspace(2, 3);
  model.forward(rf::view(x, {2, 3, 8}), rf::view(y, {2, 3, 8}), ws);
  return y;
}

TEST_CASE("binding: int8 weights with their scales are packed as they are, or dequantized", "[io][checkpoint][int8]") {
  const rf::encoder_config c = tiny_config();
  rf::encoder_parameters<float> p(c);
  p.fill_random(17, 0.1);
  const int8_checkpoint tensors(io::encoder_tensors(c, p.layers()));
  // A file mixing I8 and F32 Linear weights: every I8 one is dequantized.
  std::vector<io::tensor_entry> mixed = tensors.int8;
  std::erase_if(mixed,
                [](const io::tensor_entry& e) { return e.name.starts_with("encoder.layer.1.output.dense.weight"); });
  for (const io::tensor_entry& e : tensors.dequantized)
    if (e.name == "encoder.layer.1.output.dense.weight") mixed.push_back(e);
  const temp_dir int8_dir, f32_dir, mixed_dir;
  io::write_safetensors(int8_dir / "model.safetensors", tensors.int8);
  io::write_safetensors(f32_dir / "model.safetensors", tensors.dequantized);
  io::write_safetensors(mixed_dir / "model.safetensors", mixed);
  io::model_config m;
  m.encoder = c;
  const auto run = [&]<class Products>(Products, const temp_dir& dir) {
    const io::model<float, rf::simd::default_arch, Products> model(m,
                                                                   io::safetensors_reader(dir / "model.safetensors"));
    return std::pair{outputs(model), model.parameter_bytes()};
  };
  // int8_products: the I8 file's values and scales as they are, the F32 file's
  // quantized back to them, the mixed file's both ways: the same packed
  // weights, the same outputs bit for bit.
  const auto int8 = run(rf::int8_products{}, int8_dir);
  CHECK(int8 == run(rf::int8_products{}, f32_dir));
  CHECK(int8 == run(rf::int8_products{}, mixed_dir));
  // The other backends take the I8 file's weights dequantized, q · s (here
  // exact), as the F32 file's.
  CHECK(run(rf::packed_products{}, int8_dir) == run(rf::packed_products{}, f32_dir));
  CHECK(run(rf::bf16_products{}, int8_dir) == run(rf::bf16_products{}, f32_dir));
}

TEST_CASE("binding: int8 weights' scales: missing, of the wrong dtype, shape or value, or scaling no I8 weight",
          "[io][checkpoint][int8][errors]") {
  const rf::encoder_config c = tiny_config();
  rf::encoder_parameters<float> p(c);
  p.fill_random(17, 0.1);
  const std::vector<io::tensor_entry> f32 = io::encoder_tensors(c, p.layers());
  const int8_checkpoint tensors(f32);
  const temp_dir dir;
  const fs::path path = dir.path / "model.safetensors";
  const std::string file = path.string(), weight = "encoder.layer.0.attention.self.query.weight",
                    scale = weight + "_scale";
  // The int8 file with `scale` replaced by `with` (none when empty).
  const auto write = [&](std::optional<io::tensor_entry> with) {
    std::vector<io::tensor_entry> t = tensors.int8;
    std::erase_if(t, [&](const io::tensor_entry& e) { return e.name == scale; });
    if (with) t.push_back(*with);
    io::write_safetensors(path, t);
  };
  // Both ways of binding check the scales: packed as they are, or dequantized.
  const auto both = [&](const std::string& expected) {
    CHECK(bind_error<rf::score_function::standard, rf::int8_products>(c, path) == expected);
    CHECK(bind_error<rf::score_function::standard, rf::packed_products>(c, path) == expected);
  };
  SECTION("missing") {
    write(std::nullopt);
    both(file + ": tensor '" + scale + "': missing ('" + weight +
         "' is I8, which needs its scale per output row, F32 [out])");
  }
  SECTION("of another dtype") {
    const std::vector<double> doubles(8, 0.01);
    write(io::make_entry(scale, doubles, {8}));
    both(file + ": tensor '" + scale + "': expected dtype F32, found F64");
  }
  SECTION("of the wrong shape") {
    const std::vector<float> three(3, 0.01f);
    write(io::make_entry(scale, three, {3}));
    both(file + ": " + scale + ": expected shape [8], found [3]");
  }
  SECTION("zero, negative or not finite") {
    for (const float bad :
         {0.0f, -0.5f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
      std::vector<float> values(8, 0.01f);
      values[5] = bad;
      write(io::make_entry(scale, values, {8}));
      std::ostringstream found;
      found << bad;
      both(file + ": " + scale + ": expected finite scales > 0, found " + found.str() + " at row 5");
    }
  }
  SECTION("beside a weight that is not I8, or no weight") {
    std::vector<io::tensor_entry> t = f32;
    const std::vector<float> values(8, 0.01f);
    t.push_back(io::make_entry(scale, values, {8}));
    io::write_safetensors(path, t);
    both(file + ": tensor '" + scale + "': unexpected (it scales an I8 weight; '" + weight + "' is F32)");
    t.back() = io::make_entry("encoder.layer.0.attention.output.LayerNorm.weight_scale", values, {8});
    io::write_safetensors(path, t);
    both(file +
         ": tensor 'encoder.layer.0.attention.output.LayerNorm.weight_scale': unexpected (it scales an I8 "
         "weight; 'encoder.layer.0.attention.output.LayerNorm.weight' is F32)");
    t.back() = io::make_entry("encoder.layer.0.attention.self.gate.weight_scale", values, {8});
    io::write_safetensors(path, t);
    both(file +
         ": tensor 'encoder.layer.0.attention.self.gate.weight_scale': unexpected (no tensor "
         "'encoder.layer.0.attention.self.gate.weight' for it to scale)");
  }
}

TEST_CASE("binding: missing, unexpected and wrongly shaped tensors name the file and the tensor",
          "[io][checkpoint][errors]") {
  const temp_dir dir;
  rf::encoder_config c = tiny_config();
  const std::string file = (dir.path / "model.safetensors").string();
  SECTION("a missing tensor") {
    const fs::path path = write_checkpoint(dir.path, c, {"encoder.layer.1.output.dense.bias"});
    CHECK(bind_error(c, path) == file + ": tensor 'encoder.layer.1.output.dense.bias': missing");
  }
  SECTION("a wrongly shaped tensor") {
    rf::encoder_config wide = c;
    wide.intermediate_size = 13;
    const fs::path path = write_checkpoint(dir.path, wide);
    CHECK(bind_error(c, path) ==
          file + ": encoder.layer.0.intermediate.dense.weight: expected shape [12, 8], found [13, 8]");
  }
  SECTION("a tensor of the wrong rank") {
    const fs::path path = write_checkpoint(dir.path, c, {"encoder.layer.0.output.dense.weight"},
                                           {{"encoder.layer.0.output.dense.weight", std::vector<float>(96)}});
    CHECK(bind_error(c, path) ==
          file + ": tensor 'encoder.layer.0.output.dense.weight': expected rank 2, found rank 1 ([96])");
  }
  SECTION("a key projection in a symmetric checkpoint") {
    const fs::path path = write_checkpoint(dir.path, c);  // vanilla: has keys
    c.score = rf::score_function::symmetric;
    CHECK(bind_error<rf::score_function::symmetric>(c, path) ==
          file +
              ": tensor 'encoder.layer.0.attention.self.key.weight': unexpected (symmetric scores have no key "
              "projection)");
  }
  SECTION("pairwise factors: missing, or unexpected for vanilla scores") {
    rf::encoder_config pairwise = c;
    pairwise.score = rf::score_function::pairwise;
    const fs::path path = write_checkpoint(dir.path, pairwise, {"encoder.layer.1.attention.self.pairwise_factors"});
    CHECK(bind_error<rf::score_function::pairwise>(pairwise, path) ==
          file + ": tensor 'encoder.layer.1.attention.self.pairwise_factors': missing");
    write_checkpoint(dir.path, c, {}, {{"encoder.layer.0.attention.self.pairwise_factors", std::vector<float>(32)}});
    CHECK(bind_error(c, path) == file +
                                     ": tensor 'encoder.layer.0.attention.self.pairwise_factors': unexpected (vanilla "
                                     "scores have no pairwise factors)");
  }
  SECTION("query and key under full reuse, relative positions without use_relative_pe") {
    const fs::path path = write_checkpoint(dir.path, c);
    c.reuse_schedule = {0, 2};
    CHECK(bind_error(c, path) ==
          file + ": tensor 'encoder.layer.1.attention.self.query.weight': unexpected (layer 1 reuses all 2 heads)");
    rf::encoder_config relative = tiny_config();
    relative.use_relative_pe = true;
    relative.pe_max_seq_length = 3;
    write_checkpoint(dir.path, relative);
    CHECK(bind_error(tiny_config(), path) ==
          file +
              ": tensor 'encoder.layer.0.attention.self.relative_position_embeddings': unexpected (use_relative_pe is "
              "false)");
  }
  SECTION("a layer past num_hidden_layers") {
    rf::encoder_config three = c;
    three.num_hidden_layers = 3;
    const fs::path path = write_checkpoint(dir.path, three);
    CHECK(bind_error(c, path).find(file + ": tensor 'encoder.layer.2.") == 0);
    CHECK(bind_error(c, path).ends_with("': unexpected (num_hidden_layers is 2)"));
  }
  SECTION("a config compiled for another score function") {
    const fs::path path = write_checkpoint(dir.path, c);
    CHECK(bind_error<rf::score_function::symmetric>(c, path) ==
          file +
              ": plpi_affinity_function: expected symmetric (the score function the model is compiled for), found "
              "vanilla");
  }
}
