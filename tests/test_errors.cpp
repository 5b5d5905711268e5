// Every error path a caller can reach: the exception type and its exact message.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <reuseformer/reuseformer.hpp>

#include "support/catch.hpp"
#include "support/errors.hpp"

namespace rf = reuseformer;
using reuseformer_test::error_message;

namespace {

rf::encoder_config small_config() {
  rf::encoder_config c;
  c.hidden_size = 8;
  c.num_attention_heads = 2;
  c.intermediate_size = 12;
  c.num_hidden_layers = 2;
  return c;
}

}  // namespace

TEST_CASE("invalid configurations name the key, the expectation and the value", "[errors][config]") {
  rf::encoder_config c = small_config();
  SECTION("heads that do not divide the hidden size") {
    c.hidden_size = 30;
    c.num_attention_heads = 4;
    CHECK(error_message([&] { c.validate(); }) == "num_attention_heads: expected a divisor of hidden_size 30, found 4");
  }
  SECTION("zero heads") {
    c.num_attention_heads = 0;
    CHECK(error_message([&] { c.validate(); }) == "num_attention_heads: expected >= 1, found 0");
  }
  SECTION("zero hidden size") {
    c.hidden_size = 0;
    CHECK(error_message([&] { c.validate(); }) == "hidden_size: expected >= 1, found 0");
  }
  SECTION("zero intermediate size") {
    c.intermediate_size = 0;
    CHECK(error_message([&] { c.validate(); }) == "intermediate_size: expected >= 1, found 0");
  }
  SECTION("negative layer count") {
    c.num_hidden_layers = -1;
    CHECK(error_message([&] { c.validate(); }) == "num_hidden_layers: expected >= 0, found -1");
  }
  SECTION("non-positive or non-finite epsilon") {
    c.layer_norm_eps = 0;
    CHECK(error_message([&] { c.validate(); }) == "layer_norm_eps: expected a finite value > 0, found 0");
    c.layer_norm_eps = std::numeric_limits<double>::quiet_NaN();
    CHECK(error_message([&] { c.validate(); }) == "layer_norm_eps: expected a finite value > 0, found nan");
  }
  SECTION("models and parameter stores validate at construction") {
    c.num_attention_heads = 3;
    CHECK(error_message([&] { rf::encoder_parameters<float> p(c); }) ==
          "num_attention_heads: expected a divisor of hidden_size 8, found 3");
    CHECK(error_message([&] { rf::encoder<float> e(c, {}); }) ==
          "num_attention_heads: expected a divisor of hidden_size 8, found 3");
  }
}

TEST_CASE("weights of the wrong shape name the Hugging Face tensor", "[errors][weights]") {
  const rf::encoder_config c = small_config();
  rf::encoder_parameters<float> p(c);
  std::vector<rf::encoder_layer_weights<float>> layers = p.layers();
  const std::vector<float> spare(64);

  SECTION("layer count differs from the config") {
    layers.pop_back();
    CHECK(error_message([&] { rf::encoder<float> e(c, layers); }) ==
          "num_hidden_layers: expected 2 layers of weights, found 1");
  }
  SECTION("query weight [8, 9]") {
    layers[1].attention.query.weight = {spare.data(), {8, 9}};
    CHECK(error_message([&] { rf::encoder<float> e(c, layers); }) ==
          "encoder.layer.1.attention.self.query.weight: expected shape [8, 8], found [8, 9]");
  }
  SECTION("key bias [7]") {
    layers[0].attention.key.bias = {spare.data(), {7}};
    CHECK(error_message([&] { rf::encoder<float> e(c, layers); }) ==
          "encoder.layer.0.attention.self.key.bias: expected shape [8], found [7]");
  }
  SECTION("a missing value weight") {
    layers[0].attention.value.weight = {};
    CHECK(error_message([&] { rf::encoder<float> e(c, layers); }) ==
          "encoder.layer.0.attention.self.value.weight: expected shape [8, 8], found [0, 0]");
  }
  SECTION("null data behind a non-empty shape") {
    layers[0].attention.output.weight = {nullptr, {8, 8}};
    CHECK(error_message([&] { rf::encoder<float> e(c, layers); }) ==
          "encoder.layer.0.attention.output.dense.weight: expected a tensor of shape [8, 8], found none (null data)");
  }
  SECTION("attention LayerNorm gain [9]") {
    layers[1].attention_norm.weight = {spare.data(), {9}};
    CHECK(error_message([&] { rf::encoder<float> e(c, layers); }) ==
          "encoder.layer.1.attention.output.LayerNorm.weight: expected shape [8], found [9]");
  }
  SECTION("intermediate weight transposed") {
    layers[0].feed_forward.intermediate.weight = {spare.data(), {8, 12}};
    CHECK(error_message([&] { rf::encoder<float> e(c, layers); }) ==
          "encoder.layer.0.intermediate.dense.weight: expected shape [12, 8], found [8, 12]");
  }
  SECTION("output bias [12]") {
    layers[1].feed_forward.output.bias = {spare.data(), {12}};
    CHECK(error_message([&] { rf::encoder<float> e(c, layers); }) ==
          "encoder.layer.1.output.dense.bias: expected shape [8], found [12]");
  }
  SECTION("output LayerNorm bias [4]") {
    layers[0].output_norm.bias = {spare.data(), {4}};
    CHECK(error_message([&] { rf::encoder<float> e(c, layers); }) ==
          "encoder.layer.0.output.LayerNorm.bias: expected shape [8], found [4]");
  }
  SECTION("a standalone attention layer with heads not dividing d") {
    CHECK(error_message([&] {
            rf::multi_head_attention<float> a(layers[0].attention, {.hidden_size = 8, .num_attention_heads = 3});
          }) == "num_attention_heads: expected a divisor of hidden_size 8, found 3");
  }
}

TEST_CASE("bad forward inputs are rejected before any work", "[errors][forward]") {
  const rf::encoder_config c = small_config();
  rf::encoder_parameters<float> p(c);
  const rf::encoder<float> model(c, p.layers());
  std::vector<float> x(2 * 3 * 9), y(2 * 3 * 9);
  auto ws = model.make_workspace(2, 3);
  const auto run = [&](std::array<rf::index_t, 3> in, std::array<rf::index_t, 3> out,
                       const rf::attention_mask& mask = {}) {
    return error_message([&] {
      model.forward(rf::tensor_view<const float, 3>(x.data(), in), rf::tensor_view<float, 3>(y.data(), out), ws, mask);
    });
  };

  CHECK(run({2, 3, 9}, {2, 3, 9}) == "input: expected shape [2, 3, 8], found [2, 3, 9]");
  CHECK(run({2, 3, 8}, {2, 4, 8}) == "output: expected shape [2, 3, 8], found [2, 4, 8]");
  CHECK(run({2, 0, 8}, {2, 0, 8}) == "input: expected sequence length >= 1, found 0");
  CHECK(run({0, 3, 8}, {0, 3, 8}) == "input: expected batch size >= 1, found 0");

  std::vector<std::int64_t> mask(2 * 4, 1);
  CHECK(run({2, 3, 8}, {2, 3, 8}, rf::tensor_view<const std::int64_t, 2>(mask.data(), {2, 4})) ==
        "attention_mask: expected shape [2, 3], found [2, 4]");
  CHECK(run({2, 3, 8}, {2, 3, 8}, rf::tensor_view<const std::int64_t, 2>(mask.data(), {3, 2})) ==
        "attention_mask: expected shape [2, 3], found [3, 2]");
  mask[4] = 2;
  CHECK(run({2, 3, 8}, {2, 3, 8}, rf::tensor_view<const std::int64_t, 2>(mask.data(), {2, 3})) ==
        "attention_mask[1, 1]: expected 0 (padding) or 1 (token), found 2");
  std::vector<float> soft_mask(6, 0.5f);
  CHECK(run({2, 3, 8}, {2, 3, 8}, rf::tensor_view<const float, 2>(soft_mask.data(), {2, 3})) ==
        "attention_mask[0, 0]: expected 0 (padding) or 1 (token), found 0.5");

  SECTION("a workspace planned for a smaller batch") {
    auto small = model.make_workspace(1, 3);
    const std::string expected = "workspace: expected at least " + std::to_string(model.workspace_bytes(2, 3)) +
                                 " bytes for batch 2, seq 3, threads 1, found " + std::to_string(small.size_bytes());
    CHECK(error_message([&] {
            model.forward(rf::tensor_view<const float, 3>(x.data(), {2, 3, 8}),
                          rf::tensor_view<float, 3>(y.data(), {2, 3, 8}), small);
          }) == expected);
    rf::workspace none;
    CHECK(error_message([&] {
            model.forward(rf::tensor_view<const float, 3>(x.data(), {2, 3, 8}),
                          rf::tensor_view<float, 3>(y.data(), {2, 3, 8}), none);
          }).find("workspace: expected at least ") == 0);
  }
  SECTION("workspace requests") {
    CHECK(error_message([&] { (void)model.make_workspace(0, 3); }) ==
          "workspace: expected batch, seq and threads >= 1, found batch 0, seq 3, threads 1");
    CHECK(error_message([&] { (void)model.workspace_bytes(2, 3, 0); }) ==
          "workspace: expected batch, seq and threads >= 1, found batch 2, seq 3, threads 0");
    CHECK(error_message([&] { rf::workspace w(64, 0); }) == "workspace: expected threads >= 1, found 0");
    // A caller-set limit fails up front, before any allocation.
    const std::size_t needed = model.workspace_bytes(2, 3, 1);
    CHECK(model.make_workspace(2, 3, 1, needed).size_bytes() == needed);
    CHECK(error_message([&] { (void)model.make_workspace(2, 3, 1, needed - 1); }) ==
          "workspace: batch 2, seq 3 on 1 threads needs " + std::to_string(needed) + " bytes, over the limit of " +
              std::to_string(needed - 1) + " bytes");
    // Sizes that cannot be represented, and memory the system refuses.
    CHECK(error_message([&] { (void)model.workspace_bytes(1, std::int64_t{1} << 31); }) ==
          "workspace: batch 1, seq 2147483648 on 1 threads needs more memory than can be addressed");
    CHECK(error_message([&] { rf::workspace w(std::size_t{1} << 62, 1); }) ==
          "workspace: cannot allocate 4611686018427387904 bytes");
  }
  SECTION("attention output that overlaps its input") {
    const rf::multi_head_attention<float> attention(p.layers()[0].attention,
                                                    {.hidden_size = 8, .num_attention_heads = 2});
    auto attention_ws = attention.make_workspace(2, 3);
    CHECK(error_message([&] {
            attention.forward(rf::tensor_view<const float, 3>(x.data(), {2, 3, 8}),
                              rf::tensor_view<float, 3>(x.data() + 4, {2, 3, 8}), attention_ws);
          }) == "output: expected memory that does not overlap the input");
  }
}

TEST_CASE("invalid reuse schedules are rejected with the offending entry", "[errors][reuse]") {
  rf::encoder_config c = small_config();  // H = 2, 2 layers
  SECTION("wrong length") {
    c.reuse_schedule = {0, 1, 1};
    CHECK(error_message([&] { c.validate(); }) == "reuse_schedule: expected 2 entries (one per layer), found 3");
  }
  SECTION("layer 0 reusing") {
    c.reuse_schedule = {1, 0};
    CHECK(error_message([&] { c.validate(); }) ==
          "reuse_schedule[0]: expected 0 (layer 0 has no earlier layer to reuse from), found 1");
  }
  SECTION("negative and too many heads") {
    c.reuse_schedule = {0, -1};
    CHECK(error_message([&] { c.validate(); }) == "reuse_schedule[1]: expected a head count in [0, 2], found -1");
    c.reuse_schedule = {0, 3};
    CHECK(error_message([&] { c.validate(); }) == "reuse_schedule[1]: expected a head count in [0, 2], found 3");
  }
  SECTION("TF's two-number form") {
    CHECK(error_message([] { (void)rf::reference_reuse_schedule(-2, 6, 12, 12); }) ==
          "reuse_attention: expected -1 (all heads) or a head count in [0, 12], found -2");
    CHECK(error_message([] { (void)rf::reference_reuse_schedule(13, 6, 12, 12); }) ==
          "reuse_attention: expected -1 (all heads) or a head count in [0, 12], found 13");
    CHECK(error_message([] { (void)rf::reference_reuse_schedule(3, -1, 12, 12); }) ==
          "max_reuse_layer_idx: expected >= 0, found -1");
  }
  SECTION("relative positions need a positive table size") {
    c.use_relative_pe = true;
    c.pe_max_seq_length = 0;
    CHECK(error_message([&] { c.validate(); }) == "pe_max_seq_length: expected >= 1, found 0");
  }
  SECTION("a standalone attention reusing more heads than it has") {
    rf::encoder_parameters<float> p(small_config());
    CHECK(error_message([&] {
            rf::multi_head_attention<float> a(p.layers()[0].attention,
                                              {.hidden_size = 8, .num_attention_heads = 2, .reused_heads = 3});
          }) == "reused heads: expected a head count in [0, 2], found 3");
  }
}

TEST_CASE("weights that do not fit the reuse schedule name the tensor", "[errors][reuse]") {
  rf::encoder_config c = small_config();       // d = 8, H = 2, dh = 4
  rf::encoder_parameters<float> full_size(c);  // no reuse: [8, 8] query/key everywhere
  c.reuse_schedule = {0, 1};
  SECTION("a full-size query where one head is reused") {
    CHECK(error_message([&] { rf::encoder<float> e(c, full_size.layers()); }) ==
          "encoder.layer.1.attention.self.query.weight: expected shape [4, 8], found [8, 8]");
  }
  SECTION("a key under full reuse") {
    c.reuse_schedule = {0, 2};
    rf::encoder_parameters<float> p(c);
    auto layers = p.layers();
    layers[1].attention.key = full_size.layers()[1].attention.key;
    CHECK(error_message([&] { rf::encoder<float> e(c, layers); }) ==
          "encoder.layer.1.attention.self.key.weight: expected shape [0, 8], found [8, 8]");
  }
  SECTION("relative-position tables: missing, unexpected, wrong shape") {
    c.use_relative_pe = true;
    c.pe_max_seq_length = 3;
    rf::encoder_parameters<float> p(c);
    auto layers = p.layers();
    CHECK(layers[1].attention.relative_position.shape() == std::array<rf::index_t, 2>{1, 5});
    layers[1].attention.relative_position = {};
    CHECK(error_message([&] { rf::encoder<float> e(c, layers); }) ==
          "encoder.layer.1.attention.self.relative_position_embeddings: expected shape [1, 5], found [0, 0]");
    layers[1].attention.relative_position = {p.values().data(), {1, 7}};
    CHECK(error_message([&] { rf::encoder<float> e(c, layers); }) ==
          "encoder.layer.1.attention.self.relative_position_embeddings: expected shape [1, 5], found [1, 7]");
    c.use_relative_pe = false;
    CHECK(error_message([&] { rf::encoder<float> e(c, p.layers()); })
              .find("encoder.layer.0.attention.self.relative_position_embeddings: expected no tensor (no "
                    "relative-position bias), found shape [2, 5]") == 0);
  }
}

TEST_CASE("reused and returned probabilities of the wrong shape", "[errors][reuse]") {
  rf::encoder_config c = small_config();
  c.reuse_schedule = {0, 1};
  rf::encoder_parameters<float> p(c);
  const rf::multi_head_attention<float> reuse_one(p.layers()[1].attention,
                                                  {.hidden_size = 8, .num_attention_heads = 2, .reused_heads = 1});
  const rf::encoder<float> model(c, p.layers());
  std::vector<float> x(2 * 3 * 8), y(x.size()), probabilities(2 * 2 * 3 * 3);
  auto ws = model.make_workspace(2, 3);
  auto attention_ws = reuse_one.make_workspace(2, 3);
  const rf::tensor_view<const float, 3> in(x.data(), {2, 3, 8});
  const rf::tensor_view<float, 3> out(y.data(), {2, 3, 8});

  CHECK(error_message([&] { reuse_one.forward(in, out, attention_ws); }) ==
        "reused attention probabilities: expected shape [2, 1, 3, 3], found [0, 0, 0, 0]");
  CHECK(error_message([&] {
          reuse_one.forward(in, out, attention_ws, {},
                            {.reused = rf::tensor_view<const float, 4>(probabilities.data(), {2, 2, 3, 3})});
        }) == "reused attention probabilities: expected shape [2, 1, 3, 3], found [2, 2, 3, 3]");
  CHECK(
      error_message([&] {
        model.forward(in, out, ws, {}, {.reused = rf::tensor_view<const float, 4>(probabilities.data(), {2, 1, 3, 3})});
      }) == "reused attention probabilities: expected none (the first layer reuses no head), found shape [2, 1, 3, 3]");
  const rf::tensor_view<float, 4> one(probabilities.data(), {2, 2, 3, 3});
  CHECK(error_message([&] { model.forward(in, out, ws, {}, {.attentions = std::span(&one, 1)}); }) ==
        "attentions: expected 2 views (one per attention layer), found 1");
  const std::vector<rf::tensor_view<float, 4>> wrong = {one,
                                                        rf::tensor_view<float, 4>(probabilities.data(), {2, 2, 3, 2})};
  CHECK(error_message([&] { model.forward(in, out, ws, {}, {.attentions = wrong}); }) ==
        "attentions: expected shape [2, 2, 3, 3], found [2, 2, 3, 2]");
}

TEST_CASE("packed batches: offsets, shapes, workspace and padding::skip masks", "[errors][packed]") {
  rf::encoder_config c = small_config();
  rf::encoder_parameters<float> p(c);
  const rf::encoder<float> model(c, p.layers());
  std::vector<float> x(5 * 8), y(5 * 8);
  const std::vector<rf::index_t> offsets{0, 2, 5};
  auto ws = model.make_workspace(offsets);
  const auto run = [&](const std::vector<rf::index_t>& o, rf::index_t tokens = 5, rf::index_t d = 8) {
    return error_message([&] {
      model.forward(rf::tensor_view<const float, 2>(x.data(), {tokens, d}),
                    rf::tensor_view<float, 2>(y.data(), {tokens, 8}), o, ws);
    });
  };
  CHECK(run({0, 2, 5}, 5, 7) == "input: expected shape [5, 8], found [5, 7]");
  CHECK(run({0}) == "offsets: expected B + 1 >= 2 values (at least one sequence), found 1");
  CHECK(run({1, 2, 5}) == "offsets[0]: expected 0, found 1");
  CHECK(run({0, 3, 2, 5}) == "offsets[2]: expected a value >= offsets[1] = 3 (non-decreasing), found 2");
  CHECK(run({0, 2, 4}) == "offsets[2]: expected 5 (the token count T of the packed input), found 4");
  CHECK(error_message([&] {
          (void)model.workspace_bytes(std::vector<rf::index_t>{0, 4, 3});
        }) == "offsets[2]: expected a value >= offsets[1] = 4 (non-decreasing), found 3");
  CHECK(error_message([&] { (void)model.workspace_bytes(offsets, 0); }) == "workspace: expected threads >= 1, found 0");
  const std::size_t needed = model.workspace_bytes(offsets);
  CHECK(error_message([&] { (void)model.make_workspace(offsets, 1, needed - 1); }) ==
        "workspace: 2 sequences of 5 tokens on 1 threads need " + std::to_string(needed) +
            " bytes, over the limit of " + std::to_string(needed - 1) + " bytes");
  // A workspace for shorter sequences is too small: the message names the batch.
  auto small = model.make_workspace(std::vector<rf::index_t>{0, 2, 4});
  CHECK(error_message([&] {
          model.forward(rf::tensor_view<const float, 2>(x.data(), {5, 8}), rf::tensor_view<float, 2>(y.data(), {5, 8}),
                        offsets, small);
        }) == "workspace: expected at least " + std::to_string(needed) +
                  " bytes for 2 sequences of 5 tokens (longest 3), threads 1, found " +
                  std::to_string(small.size_bytes()));

  // Packed probabilities: heads * sum of N_b² = 2 * (4 + 9) values per layer.
  std::vector<float> probabilities(26);
  const rf::tensor_view<float, 1> short_view(probabilities.data(), {25});
  const std::vector<rf::tensor_view<float, 1>> views{short_view, short_view};
  CHECK(error_message([&] {
          model.forward(rf::tensor_view<const float, 2>(x.data(), {5, 8}), rf::tensor_view<float, 2>(y.data(), {5, 8}),
                        offsets, ws, {.attentions = views});
        }) == "attentions: expected shape [26], found [25]");

  // padding::skip needs right padding.
  std::vector<float> padded(2 * 3 * 8), out(padded.size());
  auto padded_ws = model.make_workspace(2, 3);
  const std::vector<std::int64_t> left_padded{1, 1, 1, 0, 1, 1};
  CHECK(error_message([&] {
          model.forward(rf::view(padded, {2, 3, 8}), rf::view(out, {2, 3, 8}), padded_ws,
                        rf::tensor_view<const std::int64_t, 2>(left_padded.data(), {2, 3}), rf::padding::skip);
        }) ==
        "attention_mask[1, 1]: expected 0 (right padding: no token after padding, as padding::skip requires), "
        "found 1 after attention_mask[1, 0] = 0");
  // ... and a module that takes no reused heads.
  c.reuse_schedule = {0, 1};
  rf::encoder_parameters<float> reuse_p(c);
  const rf::encoder_layer<float> reusing(c, reuse_p.layers()[1], 1);
  auto layer_ws = reusing.make_workspace(2, 3);
  CHECK(error_message([&] {
          reusing.forward(rf::view(padded, {2, 3, 8}), rf::view(out, {2, 3, 8}), layer_ws, {}, rf::padding::skip);
        }) ==
        "padding::skip: expected a module whose first layer reuses no head (it takes no attention_io), found 1 "
        "reused heads");
}

TEST_CASE("a rejected call leaves the output untouched; partial overlap is refused", "[errors][forward]") {
  const rf::encoder_config c = small_config();
  rf::encoder_parameters<float> p(c);
  const rf::encoder<float> model(c, p.layers());
  std::vector<float> x(2 * 3 * 8, 1.f), y(2 * 3 * 8, 7.f);
  auto ws = model.make_workspace(2, 3);
  std::vector<std::int64_t> bad_mask(6, 1);
  bad_mask[2] = 5;
  CHECK(error_message([&] {
          model.forward(rf::tensor_view<const float, 3>(x.data(), {2, 3, 8}),
                        rf::tensor_view<float, 3>(y.data(), {2, 3, 8}), ws,
                        rf::tensor_view<const std::int64_t, 2>(bad_mask.data(), {2, 3}));
        }) == "attention_mask[0, 2]: expected 0 (padding) or 1 (token), found 5");
  CHECK(y == std::vector<float>(2 * 3 * 8, 7.f));
  std::vector<float> buffer(2 * 3 * 8 + 8);
  CHECK(error_message([&] {
          model.forward(rf::tensor_view<const float, 3>(buffer.data(), {2, 3, 8}),
                        rf::tensor_view<float, 3>(buffer.data() + 8, {2, 3, 8}), ws);
        }) == "output: expected the input itself or memory that does not overlap it");
  CHECK(error_message([&] { rf::encoder_layer<float> layer(c, p.layers()[0], 2); }) ==
        "layer index: expected a value in [0, 2), found 2");
}

TEST_CASE("weights that do not fit the score function name the tensor", "[errors][scores]") {
  rf::encoder_config c = small_config();  // d = 8, H = 2, dh = 4
  rf::encoder_parameters<float> vanilla(c);
  using enum rf::score_function;
  SECTION("a model compiled for another score function than the config names") {
    CHECK(error_message([&] { rf::encoder<float, symmetric> e(c, vanilla.layers()); }) ==
          "plpi_affinity_function: expected symmetric (the score function the model is compiled for), found vanilla");
    c.score = pairwise;
    CHECK(error_message([&] { rf::encoder_layer<float> layer(c, vanilla.layers()[0]); }) ==
          "plpi_affinity_function: expected vanilla (the score function the model is compiled for), found pairwise");
  }
  SECTION("a key projection where the score function has none") {
    c.score = symmetric;
    CHECK(error_message([&] { rf::encoder<float, symmetric> e(c, vanilla.layers()); }) ==
          "encoder.layer.0.attention.self.key.weight: expected no tensor (symmetric scores have no key projection), "
          "found shape [8, 8]");
    c.score = pairwise;
    rf::encoder_parameters<float> pairwise_params(c);
    auto layers = pairwise_params.layers();
    layers[1].attention.key.bias = vanilla.layers()[1].attention.key.bias;
    CHECK(error_message([&] { rf::encoder<float, pairwise> e(c, layers); }) ==
          "encoder.layer.1.attention.self.key.bias: expected no tensor (pairwise scores have no key projection), "
          "found shape [8]");
  }
  SECTION("pairwise factors: missing, wrong shape, or where the score function has none") {
    c.score = pairwise;
    c.reuse_schedule = {0, 1};
    rf::encoder_parameters<float> p(c);
    auto layers = p.layers();
    CHECK(layers[1].attention.pairwise_factors.shape() == std::array<rf::index_t, 3>{1, 4, 4});
    layers[1].attention.pairwise_factors = {};
    CHECK(error_message([&] { rf::encoder<float, pairwise> e(c, layers); }) ==
          "encoder.layer.1.attention.self.pairwise_factors: expected shape [1, 4, 4], found [0, 0, 0]");
    layers[1].attention.pairwise_factors = p.layers()[0].attention.pairwise_factors;
    CHECK(error_message([&] { rf::encoder<float, pairwise> e(c, layers); }) ==
          "encoder.layer.1.attention.self.pairwise_factors: expected shape [1, 4, 4], found [2, 4, 4]");
    layers = vanilla.layers();
    layers[0].attention.pairwise_factors = p.layers()[0].attention.pairwise_factors;
    CHECK(
        error_message([&] { rf::encoder<float> e(small_config(), layers); }) ==
        "encoder.layer.0.attention.self.pairwise_factors: expected no tensor (vanilla scores), found shape [2, 4, 4]");
  }
  SECTION("factors that break the constraint of their variant") {
    c.score = pairwise;
    rf::encoder_parameters<float> p(c);  // unconstrained factors
    p.fill_random(1);
    const auto factors = p.layers()[0].attention.pairwise_factors;  // a view: copied out of the temporary vector
    const std::string values = rf::detail::concat(factors(0, 1, 0), " and [0, 0, 1] = ", factors(0, 0, 1));
    c.score = pairwise_diagonal;
    CHECK(error_message([&] { rf::encoder<float, pairwise_diagonal> e(c, p.layers()); }) ==
          "encoder.layer.0.attention.self.pairwise_factors: expected diagonal matrices (pairwise_diagonal scores), "
          "found [0, 1, 0] = " +
              values);
    c.score = pairwise_symmetric;
    rf::encoder_parameters<float> s(c);  // symmetric factors but for one entry
    s.fill_random(2);
    const auto symmetric_factors = s.layers()[0].attention.pairwise_factors;
    float& changed = s.values()[static_cast<std::size_t>(&symmetric_factors(1, 0, 2) - s.values().data())];
    changed += 1.0f;
    CHECK(error_message([&] { rf::encoder<float, pairwise_symmetric> e(c, s.layers()); }) ==
          "encoder.layer.0.attention.self.pairwise_factors: expected symmetric matrices (pairwise_symmetric scores), "
          "found [1, 2, 0] = " +
              rf::detail::concat(symmetric_factors(1, 2, 0), " but [1, 0, 2] = ", changed));
  }
}

TEST_CASE("score function names follow config.json's plpi_affinity_function", "[errors][scores]") {
  using enum rf::score_function;
  for (const rf::score_function f : {standard, symmetric, pairwise, pairwise_diagonal, pairwise_symmetric})
    CHECK(rf::score_function_named(rf::name_of(f)) == f);
  CHECK(rf::name_of(standard) == "vanilla");
  CHECK_FALSE(rf::score_function_named("standard").has_value());
  CHECK_FALSE(rf::score_function_named("").has_value());
}

TEST_CASE("embeddings: ids, token types and lengths outside the tables", "[errors][embeddings]") {
  const rf::embeddings_options o{.hidden_size = 4, .vocab_size = 5, .max_position_embeddings = 3, .type_vocab_size = 2};
  std::vector<float> word(5 * 4, 0.5f), position(3 * 4, 0.25f), type(2 * 4, 1.f), gain(4, 1.f), bias(4, 0.f);
  const rf::embeddings_weights<float> w{{word.data(), {5, 4}},
                                        {position.data(), {3, 4}},
                                        {type.data(), {2, 4}},
                                        {{gain.data(), {4}}, {bias.data(), {4}}}};
  const rf::embeddings<float> e(w, o);
  std::vector<std::int64_t> ids{0, 4, 1, 2, 3, 1}, types(6, 1);
  std::vector<float> out(2 * 3 * 4, 7.f);
  const auto run = [&](rf::index_t seq, const std::vector<std::int64_t>& t) {
    e.forward(rf::tensor_view<const std::int64_t, 2>(ids.data(), {2, seq}),
              rf::tensor_view<const std::int64_t, 2>(t.data(), {t.empty() ? 0 : 2, seq}),
              rf::tensor_view<float, 3>(out.data(), {2, seq, 4}));
  };
  ids[4] = 5;
  CHECK(error_message([&] { run(3, types); }) == "input_ids[1, 1]: expected a value in [0, 5), found 5");
  ids[4] = 3;
  types[2] = -1;
  CHECK(error_message([&] { run(3, types); }) == "token_type_ids[0, 2]: expected a value in [0, 2), found -1");
  CHECK(out == std::vector<float>(2 * 3 * 4, 7.f));  // rejected before anything was written
  ids.resize(8, 0);
  CHECK(error_message([&] { run(4, {}); }) ==
        "input_ids: expected at most 3 tokens (max_position_embeddings), found 4");
  CHECK(error_message([&] {
          rf::embeddings<float> bad(
              w, {.hidden_size = 4, .vocab_size = 6, .max_position_embeddings = 3, .type_vocab_size = 2});
        }) == "embeddings.word_embeddings.weight: expected shape [6, 4], found [5, 4]");
}

TEST_CASE("view() checks the container's size against the extents", "[errors][view]") {
  std::vector<float> values(24);
  const rf::tensor_view<float, 3> v = rf::view(values, {2, 3, 4});
  CHECK(v.data() == values.data());
  CHECK(v.shape() == std::array<rf::index_t, 3>{2, 3, 4});
  const std::vector<float>& constant = values;
  const rf::tensor_view<const float, 2> c = rf::view(constant, {6, 4});
  CHECK(c.extent(0) == 6);
  CHECK(error_message([&] {
          (void)rf::view(values, {5, 5});
        }) == "view: expected 25 elements for shape [5, 5], found 24");
}

TEST_CASE("packed weights the system cannot hold are refused, naming their bytes", "[errors]") {
  // A weight of 2^40 rows that all view one row (row stride 0): nothing is
  // read before the packed copy is allocated, and its allocation fails.
  const std::vector<float> row = {1.0F, 2.0F};
  const rf::gemm::matrix<const float> parts[] = {{row.data(), std::int64_t{1} << 40, 2, 0}};
  CHECK(error_message([&] { const rf::gemm::packed_weights<float> w(parts, 2); }) ==
        "packed weights: cannot allocate 8796093022208 bytes");
  CHECK(error_message([&] {
          const rf::gemm::bf16_packed_weights<> w(std::span<const rf::gemm::matrix<const float>>(parts), 2);
        }) == "bf16 packed weights: cannot allocate 4398046511104 bytes");
  // int8: 1 byte per weight (depth 2 padded to 4) and 8 per column.
  CHECK(error_message([&] {
          const rf::gemm::int8_packed_weights<> w(std::span<const rf::gemm::matrix<const float>>(parts), 2);
        }) == "int8 packed weights: cannot allocate 13194139533312 bytes");
}

TEST_CASE("int8 weights deeper than 32-bit sums allow are refused, naming the limit", "[errors]") {
  // Checked before any value is read.
  const rf::gemm::matrix<const float> parts[] = {{nullptr, 1, 65537, 65537}};
  CHECK(error_message([&] {
          const rf::gemm::int8_packed_weights<> w(std::span<const rf::gemm::matrix<const float>>(parts), 65537);
        }) == "int8 packed weights: inner size 65537 exceeds 65536, the deepest whose 32-bit sums cannot overflow");
}
