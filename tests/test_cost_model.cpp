// The FLOP and byte model (analysis/cost_model.hpp) against hand-computed
// BERT-base figures and against what built models report.
#include <algorithm>
#include <vector>

#include <reuseformer/reuseformer.hpp>

#include "support/packed_bytes.hpp"

#include "support/catch.hpp"

namespace rf = reuseformer;

TEST_CASE("cost model: BERT-base multiply-adds, by hand", "[analysis]") {
  rf::encoder_config c;  // BERT-base: d 768, H 12, d_ff 3072, 12 layers
  SECTION("no reuse, B=1, N=128") {
    const auto cost = rf::analysis::cost<float>(c, 1, 128);
    REQUIRE(cost.layers.size() == 12);
    const auto& layer = cost.layers[0];
    CHECK(layer.query_key_projection == 2.0 * 128 * 768 * 768);
    CHECK(layer.value_projection == 128.0 * 768 * 768);
    CHECK(layer.scores == 12.0 * 128 * 128 * 64);
    CHECK(layer.context == 12.0 * 128 * 128 * 64);
    CHECK(layer.feed_forward == 2.0 * 128 * 768 * 3072);
    CHECK(layer.softmax_exponentials == 12.0 * 128 * 128);
    CHECK(layer.multiply_adds() == 931135488.0);  // 128 (4 d^2 + 2 d d_ff) + 2 N^2 d
    CHECK(cost.multiply_adds == 12 * 931135488.0);
    CHECK(cost.parameter_bytes == 12 * 7087872 * sizeof(float));  // 7,087,872 parameters per BERT-base layer
  }
  SECTION("reuse saves exactly the skipped query/key projections, scores and exponentials") {
    c.reuse_schedule = rf::reference_reuse_schedule(6, 11, 12, 12);
    const auto plain = rf::analysis::cost<float>(rf::encoder_config{}, 1, 512);
    const auto reuse = rf::analysis::cost<float>(c, 1, 512);
    CHECK(reuse.layers[0].multiply_adds() == plain.layers[0].multiply_adds());
    for (int l = 1; l < 12; ++l) {
      CHECK(plain.layers[l].multiply_adds() - reuse.layers[l].multiply_adds() ==
            2.0 * 512 * 768 * 6 * 64 + 6.0 * 512 * 512 * 64);
      CHECK(plain.layers[l].softmax_exponentials - reuse.layers[l].softmax_exponentials == 6.0 * 512 * 512);
      CHECK(plain.layers[l].parameter_bytes - reuse.layers[l].parameter_bytes ==
            2 * (6 * 64 * 768 + 6 * 64) * sizeof(float));
    }
  }
  SECTION("a causal mask counts the blocked lower triangle") {
    c.causal = true;
    // N = 130 in blocks of q rows: block b multiplies the keys up to its last row.
    const rf::index_t q = rf::attention::query_block<float>;
    REQUIRE((q >= 64 && q <= 72));
    const rf::index_t expected = 2 * q < 130 ? q * q + q * 2 * q + (130 - 2 * q) * 130 : q * q + (130 - q) * 130;
    CHECK(rf::attention::block_query_key_pairs<float>(130, true) == expected);
    CHECK(rf::attention::block_query_key_pairs<float>(130, false) == 130 * 130);
    CHECK(rf::analysis::cost<float>(c, 2, 130).layers[0].scores == 12.0 * 2 * double(expected) * 64);
  }
}

TEST_CASE("cost model: symmetric and pairwise scores on BERT-base, by hand", "[analysis][scores]") {
  const rf::encoder_config standard;
  const auto base = rf::analysis::cost<float>(standard, 1, 512).layers[0];
  const double rows = 512, d = 768, dh = 64, heads = 12;
  const double triangle = heads * (512.0 * 513 / 2) * dh;  // N(N+1)/2 logits per head
  for (const rf::score_function f : {rf::score_function::symmetric, rf::score_function::pairwise,
                                     rf::score_function::pairwise_diagonal, rf::score_function::pairwise_symmetric}) {
    CAPTURE(rf::name_of(f));
    rf::encoder_config c;
    c.score = f;
    const auto layer = rf::analysis::cost<float>(c, 1, 512).layers[0];
    // No key projection: the projections halve. Parameters: the key weight and
    // bias go (590,592 per BERT-base layer); pairwise adds P, H * dh^2 = 49,152.
    CHECK(layer.query_key_projection == base.query_key_projection / 2);
    const std::size_t factors = rf::has_pairwise_factors(f) ? 12 * 64 * 64 : 0;
    CHECK(base.parameter_bytes - layer.parameter_bytes + factors * sizeof(float) == 590592 * sizeof(float));
    CHECK(layer.scores == (rf::has_symmetric_logits(f) ? triangle : base.scores));
    const double transform = f == rf::score_function::pairwise_diagonal ? rows * heads * dh
                             : rf::has_pairwise_factors(f)              ? rows * heads * dh * dh
                                                                        : 0;
    CHECK(layer.pairwise_transform == transform);
    CHECK(layer.context == base.context);
    CHECK(layer.softmax_exponentials == base.softmax_exponentials);
    CHECK(base.multiply_adds() - layer.multiply_adds() == rows * d * d + base.scores - layer.scores - transform);
  }
  SECTION("causal symmetric logits: the exact lower triangle") {
    rf::encoder_config c;
    c.score = rf::score_function::symmetric;
    c.causal = true;
    CHECK(rf::analysis::cost<float>(c, 2, 130).layers[0].scores == 12.0 * 2 * (130 * 131 / 2) * 64);
  }
}

TEST_CASE("cost model: parameter and memory bytes equal the built model's", "[analysis]") {
  // The reuse state's slots, counted by hand: at its fullest it holds the
  // heads a layer reads plus the fresh heads it keeps for the next layer.
  struct scheduled {
    std::vector<rf::index_t> schedule;
    rf::index_t slots;
  };
  for (const auto& [schedule, slots] :
       {scheduled{{}, 0}, scheduled{{0, 2, 4}, 4},  // layer 1 reads 2, keeps its 2 fresh for layer 2
        scheduled{{0, 4, 4}, 4},                    // the same 4 heads, read twice
        scheduled{{0, 3, 1}, 4}}) {                 // layer 1 reads 3, keeps 1 fresh
    for (const bool relative : {false, true}) {
      for (const rf::score_function f : {rf::score_function::standard, rf::score_function::symmetric,
                                         rf::score_function::pairwise, rf::score_function::pairwise_diagonal}) {
        CAPTURE(schedule, relative, rf::name_of(f));
        rf::encoder_config c;
        c.hidden_size = 32;
        c.num_attention_heads = 4;
        c.intermediate_size = 40;
        c.num_hidden_layers = 3;
        c.reuse_schedule = schedule;
        c.use_relative_pe = relative;
        c.pe_max_seq_length = 7;
        c.score = f;
        rf::encoder_parameters<double> p(c);
        const rf::index_t reuse_slots = slots;
        rf::visit(f, [&]<rf::score_function Score>() {
          const rf::encoder<double, Score> model(c, p.layers());
          const auto measured = rf::analysis::measure(model, 3, 20, 2);
          // The cost model counts the checkpoint's tensors; the model holds
          // them with its packed weights' padding.
          CHECK(measured.parameter_bytes + test_support::packing_padding_bytes<double>(c) == model.parameter_bytes());
          CHECK(measured.parameter_bytes == p.values().size() * sizeof(double));
          // The reuse state: `slots` heads of [N, N] per sequence.
          CHECK(measured.reuse_state_bytes == static_cast<std::size_t>(reuse_slots * 3 * 20 * 20) * sizeof(double));
          // The workspace: that state, in whole cache lines, then the largest
          // layer's own workspace (layers run one at a time and share it).
          std::size_t largest_layer = 0;
          for (const auto& layer : model.layers())
            largest_layer = std::max(largest_layer, layer.workspace_bytes(3, 20, 2));
          CHECK(measured.workspace_bytes ==
                static_cast<std::size_t>(rf::round_to_line<double>(reuse_slots * 3 * 20 * 20)) * sizeof(double) +
                    largest_layer);
        });
      }
    }
  }
}

TEST_CASE("cost model: decoding one token, BERT-base by hand", "[analysis][decoder]") {
  rf::encoder_config c;  // d 768, H 12, dh 64, d_ff 3072
  c.causal = true;
  const auto vanilla = rf::analysis::decoding_cost<float>(c, 8, 512);
  REQUIRE(vanilla.layers.size() == 12);
  const auto& layer = vanilla.layers[0];
  // Q, K, V, output projections + scores and context over 512 keys + feed-forward.
  CHECK(layer.multiply_adds == 4.0 * 768 * 768 + 2.0 * 12 * 512 * 64 + 2.0 * 768 * 3072);
  CHECK(layer.softmax_exponentials == 12.0 * 512);
  CHECK(layer.cache_bytes_per_token == 2 * 768 * sizeof(float));
  CHECK(layer.cache_bytes_read == 2.0 * 768 * 512 * sizeof(float));
  CHECK(layer.weight_bytes == 7087872.0 * sizeof(float) / 8);  // parameters read once per step of 8 tokens
  CHECK(vanilla.cache_bytes(8, 640) == 12 * 2 * 768 * sizeof(float) * 8 * 640);

  SECTION("full reuse on layers 1-11 keeps 13/24 of the cache") {
    c.reuse_schedule = rf::reference_reuse_schedule(-1, 11, 12, 12);
    const auto reuse = rf::analysis::decoding_cost<float>(c, 8, 512);
    CHECK(reuse.cache_bytes_per_token * 24 == vanilla.cache_bytes_per_token * 13);
    for (int l = 1; l < 12; ++l) {
      CHECK(reuse.layers[l].cache_bytes_per_token == 768 * sizeof(float));  // values only
      CHECK(vanilla.layers[l].multiply_adds - reuse.layers[l].multiply_adds ==
            2.0 * 768 * 768 + 12.0 * 512 * 64);  // Q and K projections, scores
    }
  }
  SECTION("K = 6 on layers 1-11: each keeps 18 of its 24 heads' rows") {
    c.reuse_schedule = rf::reference_reuse_schedule(6, 11, 12, 12);
    const auto reuse = rf::analysis::decoding_cost<float>(c, 1, 100);
    CHECK(reuse.layers[0].cache_bytes_per_token == 24 * 64 * sizeof(float));
    CHECK(reuse.layers[5].cache_bytes_per_token == 18 * 64 * sizeof(float));
  }
  SECTION("symmetric and pairwise scores cache Q in K's place: the same bytes, fewer projections") {
    c.score = rf::score_function::symmetric;
    const auto symmetric = rf::analysis::decoding_cost<float>(c, 8, 512);
    CHECK(symmetric.cache_bytes_per_token == vanilla.cache_bytes_per_token);
    CHECK(layer.multiply_adds - symmetric.layers[0].multiply_adds == 768.0 * 768);
    c.score = rf::score_function::pairwise;
    CHECK(rf::analysis::decoding_cost<float>(c, 8, 512).layers[0].multiply_adds ==
          symmetric.layers[0].multiply_adds + 12.0 * 64 * 64);
  }
}

TEST_CASE("cost model: a decoder's cache is the predicted size", "[analysis][decoder]") {
  for (const rf::score_function score : rf::all_score_functions)
    for (const auto& schedule : {std::vector<rf::index_t>{0, 0, 0}, {0, 2, 4}, {0, 4, 4}}) {
      rf::encoder_config c;
      c.hidden_size = 16;
      c.num_attention_heads = 4;
      c.intermediate_size = 20;
      c.num_hidden_layers = 3;
      c.causal = true;
      c.score = score;
      c.reuse_schedule = schedule;
      rf::encoder_parameters<double> params(c);
      params.fill_random(1);
      rf::visit(score, [&]<rf::score_function Score>() {
        const rf::encoder<double, Score> model(c, params.layers());
        const rf::decoder state(model, 3, 17, 2);
        CAPTURE(rf::name_of(score), schedule);
        // By hand: per layer, keys (or queries) of its fresh heads and values
        // of all 4 heads, dh = 4, for 3 sequences of 17 tokens.
        const std::size_t by_hand =
            (4 + 4 + (4 - schedule[1]) + 4 + (4 - schedule[2]) + 4) * 4 * 3 * 17 * sizeof(double);
        CHECK(rf::analysis::decoding_cost<double>(c, 3, 17).cache_bytes(3, 17) == by_hand);
        CHECK(rf::decoder<double, Score>::cache_bytes(model, 3, 17) == by_hand);
        CHECK(state.cache_bytes() == by_hand);
        CHECK(state.workspace_bytes() == rf::decoder<double, Score>::workspace_bytes(model, 3, 17, 2));
      });
    }
}
