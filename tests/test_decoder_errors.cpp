// Decoding's error paths (layers/decoder.hpp): the exact message of each, and
// that a refused prefill or step leaves the decoder's state as it was.
#include <cstddef>
#include <vector>

#include <reuseformer/reuseformer.hpp>

#include "support/catch.hpp"
#include "support/errors.hpp"

namespace rf = reuseformer;
using reuseformer_test::error_message;

namespace {

rf::encoder_config causal_config() {
  rf::encoder_config c;
  c.hidden_size = 8;
  c.num_attention_heads = 2;
  c.intermediate_size = 12;
  c.num_hidden_layers = 2;
  c.reuse_schedule = {0, 1};
  c.causal = true;
  return c;
}

using view3 = rf::tensor_view<const float, 3>;
using out3 = rf::tensor_view<float, 3>;

}  // namespace

TEST_CASE("decoding refuses bad input with the expected and found values", "[errors][decoder]") {
  rf::encoder_config c = causal_config();
  rf::encoder_parameters<float> params(c);
  params.fill_random(3, 0.2);
  const rf::encoder<float> model(c, params.layers());
  rf::decoder state(model, 2, 4);
  std::vector<float> x(2 * 5 * 8, 0.5f), y(x.size());

  SECTION("construction") {
    c.causal = false;
    const rf::encoder<float> bidirectional(c, params.layers());
    CHECK(error_message([&] { rf::decoder bad(bidirectional, 2, 4); }) ==
          "decoder: expected a causal model (causal = true), found causal = false");
    CHECK(error_message([&] { rf::decoder bad(model, 2, 0, 1); }) ==
          "decoder: expected batch, max_length and threads >= 1, found batch 2, max_length 0, threads 1");
  }
  SECTION("prefill") {
    CHECK(error_message([&] {
            state.prefill(view3(x.data(), {1, 3, 8}), out3(y.data(), {1, 3, 8}));
          }) == "prompt: expected batch 2 (the decoder's), found 1");
    CHECK(error_message([&] {
            state.prefill(view3(x.data(), {2, 5, 8}), out3(y.data(), {2, 5, 8}));
          }) == "prompt: expected 1 to 4 tokens (the decoder's max_length), found 5");
    CHECK(error_message([&] {
            state.prefill(view3(x.data(), {2, 3, 7}), out3(y.data(), {2, 3, 7}));
          }) == "prompt: expected shape [2, 3, 8], found [2, 3, 7]");
    CHECK(error_message([&] {
            state.prefill(view3(x.data(), {2, 3, 8}), out3(y.data(), {2, 2, 8}));
          }) == "output: expected shape [2, 3, 8], found [2, 2, 8]");
    CHECK(error_message([&] {
            state.prefill(view3(x.data(), {2, 3, 8}), out3(x.data() + 8, {2, 3, 8}));
          }) == "output: expected the input itself or memory that does not overlap it");
    const std::vector<rf::index_t> one{3}, zero{3, 0}, long_one{3, 4};
    CHECK(error_message([&] {
            state.prefill(view3(x.data(), {2, 3, 8}), out3(y.data(), {2, 3, 8}), one);
          }) == "prompt lengths: expected none or 2 (one per sequence), found 1");
    CHECK(error_message([&] {
            state.prefill(view3(x.data(), {2, 3, 8}), out3(y.data(), {2, 3, 8}), zero);
          }) == "prompt lengths[1]: expected a value in [1, 3], found 0");
    CHECK(error_message([&] {
            state.prefill(view3(x.data(), {2, 3, 8}), out3(y.data(), {2, 3, 8}), long_one);
          }) == "prompt lengths[1]: expected a value in [1, 3], found 4");
  }
  SECTION("step") {
    CHECK(error_message([&] {
            state.step(view3(x.data(), {3, 1, 8}), out3(y.data(), {3, 1, 8}));
          }) == "token: expected shape [2, 1, 8], found [3, 1, 8]");
    CHECK(error_message([&] {
            state.step(view3(x.data(), {2, 1, 8}), out3(y.data(), {2, 2, 8}));
          }) == "output: expected shape [2, 1, 8], found [2, 2, 8]");
    const std::vector<rf::index_t> lengths{4, 2};
    state.prefill(view3(x.data(), {2, 4, 8}), out3(y.data(), {2, 4, 8}), lengths);
    CHECK(error_message([&] {
            state.step(view3(x.data(), {2, 1, 8}), out3(y.data(), {2, 1, 8}));
          }) == "step: sequence 0 holds 4 tokens, the decoder's max_length: expected fewer than 4, found 4");
  }
}

TEST_CASE("a refused call leaves the decoder's state as it was", "[errors][decoder]") {
  const rf::encoder_config c = causal_config();
  rf::encoder_parameters<float> params(c);
  params.fill_random(3, 0.2);
  const rf::encoder<float> model(c, params.layers());
  rf::decoder refused(model, 2, 6), clean(model, 2, 6);
  std::vector<float> prompt(2 * 3 * 8), out(prompt.size()), token(2 * 8, 0.25f), a(token.size()), b(token.size());
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<float>(i % 7) / 7.0f;
  const std::vector<rf::index_t> lengths{3, 2}, bad{3, 9};
  for (rf::decoder<float>* state : {&refused, &clean})
    state->prefill(view3(prompt.data(), {2, 3, 8}), out3(out.data(), {2, 3, 8}), lengths);

  // A rejected prefill (bad lengths) and a rejected step (wrong shape) change nothing.
  CHECK_THROWS_AS(refused.prefill(view3(prompt.data(), {2, 3, 8}), out3(out.data(), {2, 3, 8}), bad), rf::error);
  CHECK_THROWS_AS(refused.step(view3(token.data(), {1, 1, 8}), out3(a.data(), {1, 1, 8})), rf::error);
  CHECK(std::vector<rf::index_t>(refused.lengths().begin(), refused.lengths().end()) == lengths);
  refused.step(view3(token.data(), {2, 1, 8}), out3(a.data(), {2, 1, 8}));
  clean.step(view3(token.data(), {2, 1, 8}), out3(b.data(), {2, 1, 8}));
  CHECK(a == b);
}
