// Score reuse (docs/semantics.md §Score reuse) against the double-precision reference, the exact
// head bookkeeping of reused stacks, and the bounded reuse state, in this
// file's SIMD build.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <reuseformer/reuseformer.hpp>

#include "support/catch.hpp"
#include "support/compare.hpp"
#include "support/packed_bytes.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace rf = reuseformer;
using reuseformer_test::compare;
using reuseformer_test::random_vector;
using reuseformer_test::reference::tolerance;

namespace {

rf::encoder_config reuse_config(std::vector<rf::index_t> schedule, rf::index_t hidden = 32, rf::index_t heads = 4) {
  rf::encoder_config c;
  c.hidden_size = hidden;
  c.num_attention_heads = heads;
  c.intermediate_size = 2 * hidden + 3;
  c.num_hidden_layers = static_cast<rf::index_t>(schedule.size());
  c.reuse_schedule = std::move(schedule);
  return c;
}

std::vector<int> padding(rf::index_t batch, rf::index_t seq) {
  std::vector<int> mask(static_cast<std::size_t>(batch * seq), 1);
  for (rf::index_t j = seq - std::min<rf::index_t>(seq - 1, 3); j < seq; ++j) mask[(batch - 1) * seq + j] = 0;
  return mask;
}

template <class T>
struct outputs {
  std::vector<T> hidden;
  std::vector<std::vector<T>> stacks;  // [B, H, N, N] per layer
};

// Runs the encoder asking for every layer's probability stack.
template <class T>
outputs<T> run_encoder(const rf::encoder<T>& model, const std::vector<T>& x, rf::index_t batch, rf::index_t seq,
                       const std::vector<int>& mask, int threads) {
  const rf::index_t d = model.hidden_size(), h = model.heads(), layers = model.attention_layers();
  outputs<T> out{std::vector<T>(x.size()), {}};
  std::vector<rf::tensor_view<T, 4>> views;
  out.stacks.assign(static_cast<std::size_t>(layers), std::vector<T>(static_cast<std::size_t>(batch * h * seq * seq)));
  for (auto& stack : out.stacks) views.emplace_back(stack.data(), std::array<rf::index_t, 4>{batch, h, seq, seq});
  auto ws = model.make_workspace(batch, seq, threads);
  model.forward(rf::tensor_view<const T, 3>(x.data(), {batch, seq, d}),
                rf::tensor_view<T, 3>(out.hidden.data(), {batch, seq, d}), ws,
                rf::tensor_view<const int, 2>(mask.data(), {batch, seq}), {.attentions = views});
  return out;
}

// Head `head` of batch element b of a [B, H, N, N] stack.
template <class T>
std::vector<T> head_of(const std::vector<T>& stack, rf::index_t b, rf::index_t heads, rf::index_t head,
                       rf::index_t seq) {
  const auto first = stack.begin() + (b * heads + head) * seq * seq;
  return {first, first + seq * seq};
}

}  // namespace

TEMPLATE_TEST_CASE("a reuse layer equals attention with the reused probabilities injected", "[reuse]", float, double) {
  using T = TestType;
  const rf::index_t reused = GENERATE(1, 2, 3, 4);
  const bool causal = GENERATE(false, true);
  const rf::index_t batch = 2, seq = 75, heads = 4, d = 32;  // 75 rows: two query blocks (of 64 to 72)
  CAPTURE(reused, causal);

  rf::encoder_config c = reuse_config({0, reused});
  c.causal = causal;
  rf::encoder_parameters<T> params(c);
  params.fill_random(21, 1.0 / std::sqrt(double(d)));
  rf::encoder_parameters<double> exact(c);
  exact.assign_from(params);
  const rf::multi_head_attention<T> attention(
      params.layers()[1].attention,
      {.hidden_size = d, .num_attention_heads = heads, .causal = causal, .reused_heads = reused});

  // Injected probabilities [B, K, N, N]: distinct random rows (causal ones zero
  // beyond the diagonal, as any causal layer's are), so a head taken from the
  // wrong position or a wrong row cannot go unnoticed.
  std::vector<T> injected = random_vector<T>(static_cast<std::size_t>(batch * reused * seq * seq), 4, 0, 1);
  for (rf::index_t r = 0; r < batch * reused * seq; ++r) {
    const rf::index_t i = r % seq;
    T sum = 0;
    for (rf::index_t j = 0; j < seq; ++j) sum += injected[r * seq + j] *= (causal && j > i) ? T(0) : T(1);
    for (rf::index_t j = 0; j < seq; ++j) injected[r * seq + j] /= sum;
  }
  const std::vector<T> x = random_vector<T>(static_cast<std::size_t>(batch * seq * d), 8);
  const std::vector<int> mask = padding(batch, seq);
  std::vector<T> y(x.size()), stack(static_cast<std::size_t>(batch * heads * seq * seq));
  const rf::tensor_view<T, 4> stack_view(stack.data(), {batch, heads, seq, seq});
  auto ws = attention.make_workspace(batch, seq);
  attention.forward(rf::tensor_view<const T, 3>(x.data(), {batch, seq, d}),
                    rf::tensor_view<T, 3>(y.data(), {batch, seq, d}), ws,
                    rf::tensor_view<const int, 2>(mask.data(), {batch, seq}),
                    {.reused = rf::tensor_view<const T, 4>(injected.data(), {batch, reused, seq, seq}),
                     .attentions = std::span(&stack_view, 1)});

  const auto expected = reuseformer_test::reference::attention(
      std::vector<double>(x.begin(), x.end()), batch, seq, heads, exact.layers()[1].attention, mask, causal, reused,
      std::vector<double>(injected.begin(), injected.end()), reused);
  CHECK_CLOSE(compare(y, expected.output, tolerance<T>, tolerance<T>));
  CHECK_CLOSE(compare(stack, expected.stack, tolerance<T>, tolerance<T>));
  // Fresh heads first, then injected head j at position H - K + j, bit for bit.
  for (rf::index_t b = 0; b < batch; ++b)
    for (rf::index_t j = 0; j < reused; ++j)
      CHECK(head_of(stack, b, heads, heads - reused + j, seq) == head_of(injected, b, reused, j, seq));
}

TEMPLATE_TEST_CASE("encoders with reuse schedules match the double reference", "[reuse]", float, double) {
  using T = TestType;
  struct schedule_case {
    const char* name;
    std::vector<rf::index_t> schedule;
    bool relative;
  };
  const schedule_case sc =
      GENERATE(schedule_case{"partial", {0, 2, 2}, false}, schedule_case{"full", {0, 4, 4}, false},
               schedule_case{"chained", {0, 3, 1, 4}, false}, schedule_case{"chained twice", {0, 3, 3, 0}, false},
               schedule_case{"relative position", {0, 2, 1}, true});
  const bool causal = GENERATE(false, true);
  const int threads = GENERATE(1, 2);
  const rf::index_t batch = 2, seq = 67;
  CAPTURE(sc.name, causal, threads);

  rf::encoder_config c = reuse_config(sc.schedule);
  c.causal = causal;
  c.use_relative_pe = sc.relative;
  c.pe_max_seq_length = 40;  // < seq: the table index clamps at both ends
  rf::encoder_parameters<T> params(c);
  params.fill_random(5, 1.0 / std::sqrt(32.0));
  rf::encoder_parameters<double> exact(c);
  exact.assign_from(params);
  const rf::encoder<T> model(c, params.layers());

  const std::vector<T> x = random_vector<T>(static_cast<std::size_t>(batch * seq * 32), 6);
  const std::vector<int> mask = padding(batch, seq);
  const outputs<T> out = run_encoder(model, x, batch, seq, mask, threads);

  std::vector<std::vector<double>> stacks;
  const auto expected = reuseformer_test::reference::encoder(std::vector<double>(x.begin(), x.end()), batch, seq, c,
                                                             exact.layers(), mask, &stacks);
  CHECK_CLOSE(compare(out.hidden, expected, tolerance<T>, tolerance<T>));
  for (std::size_t l = 0; l < stacks.size(); ++l) {
    CAPTURE(l);
    CHECK_CLOSE(compare(out.stacks[l], stacks[l], tolerance<T>, tolerance<T>));
  }
}

TEST_CASE("reused heads are the previous stack's heads, bit for bit, however far back", "[reuse]") {
  // H = 4. Schedule [0, 3, 3, 4, 0]:
  //   S1 = [A1_0, S0_0, S0_1, S0_2]
  //   S2 = [A2_0, S1_0, S1_1, S1_2] = [A2_0, A1_0, S0_0, S0_1]   (S0_0 from two layers back)
  //   S3 = S2                                                    (full reuse)
  //   S4 fresh
  const rf::encoder_config c = reuse_config({0, 3, 3, 4, 0});
  rf::encoder_parameters<float> params(c);
  params.fill_random(9, 0.2);
  const rf::encoder<float> model(c, params.layers());
  const rf::index_t batch = 2, seq = 9, heads = 4;
  const std::vector<float> x = random_vector<float>(static_cast<std::size_t>(batch * seq * 32), 1);
  const outputs<float> out = run_encoder(model, x, batch, seq, padding(batch, seq), 2);
  const auto& s = out.stacks;
  for (rf::index_t b = 0; b < batch; ++b) {
    CAPTURE(b);
    for (rf::index_t j = 0; j < 3; ++j) CHECK(head_of(s[1], b, heads, 1 + j, seq) == head_of(s[0], b, heads, j, seq));
    for (rf::index_t j = 0; j < 3; ++j) CHECK(head_of(s[2], b, heads, 1 + j, seq) == head_of(s[1], b, heads, j, seq));
    CHECK(head_of(s[2], b, heads, 2, seq) == head_of(s[0], b, heads, 0, seq));
    CHECK(head_of(s[3], b, heads, 0, seq) == head_of(s[2], b, heads, 0, seq));
    CHECK(s[4] != s[3]);
  }
  CHECK(s[3] == s[2]);
}

TEST_CASE("the reuse state holds only what the next layer reads", "[reuse][memory]") {
  SECTION("per-layer occupancy and the slot count") {
    for (const std::vector<rf::index_t>& schedule :
         {std::vector<rf::index_t>{0, 0, 0}, {0, 2, 2}, {0, 4, 4}, {0, 3, 1, 4}, {0, 3, 3, 4, 0}, {0, 1, 4, 2, 4}}) {
      CAPTURE(schedule);
      const rf::index_t heads = 4, layers = static_cast<rf::index_t>(schedule.size());
      const rf::attention::reuse_state_plan plan(schedule, heads);
      rf::index_t most = 0;
      for (rf::index_t l = 0; l < layers; ++l) {
        const rf::index_t k = schedule[l], next = l + 1 < layers ? schedule[l + 1] : 0;
        CHECK(plan.heads_after(l) == next);  // exactly what layer l+1 reads
        CHECK(static_cast<rf::index_t>(plan.reads(l).size()) == k);
        most = std::max(most, k + std::min(next, heads - k));  // read now + fresh ones kept
      }
      CHECK(plan.slots() == most);
    }
  }
  SECTION("TF default on BERT-base: 12 heads kept after layer 0, carried without copies") {
    const auto schedule = rf::reference_reuse_schedule(-1, 6, 12, 12);
    CHECK(schedule == std::vector<rf::index_t>{0, 12, 12, 12, 12, 12, 12, 0, 0, 0, 0, 0});
    const rf::attention::reuse_state_plan plan(schedule, 12);
    CHECK(plan.slots() == 12);
    for (rf::index_t l = 1; l < 6; ++l) CHECK(plan.reads(l + 1) == plan.reads(l));  // same slots: no copy
  }
  SECTION("bytes reported by the encoder") {
    const rf::index_t batch = 2, seq = 33;
    rf::encoder_config c = reuse_config({0, 2, 3, 0});
    rf::encoder_parameters<float> params(c);
    const rf::encoder<float> with_reuse(c, params.layers());
    // Slots: layer 0 keeps 2 for layer 1; layer 1 reads 2 and keeps min(3, 2) = 2 fresh: 4.
    CHECK(with_reuse.reuse_plan().slots() == 4);
    CHECK(with_reuse.reuse_state_bytes(batch, seq) == 4 * batch * seq * seq * sizeof(float));
    c.reuse_schedule.clear();
    rf::encoder_parameters<float> plain_params(c);
    const rf::encoder<float> plain(c, plain_params.layers());
    CHECK(plain.reuse_state_bytes(batch, seq) == 0);
    // The pool comes first, a whole number of cache lines; then the largest
    // layer, which is layer 0 in both (it reuses nothing, and later layers
    // that reuse need less).
    for (const int threads : {1, 2})
      CHECK(with_reuse.workspace_bytes(batch, seq, threads) ==
            plain.workspace_bytes(batch, seq, threads) +
                static_cast<std::size_t>(rf::round_to_line<float>(4 * batch * seq * seq)) * sizeof(float));
  }
}

TEST_CASE("parameters follow the schedule: short query and key, none under full reuse", "[reuse][parameters]") {
  rf::encoder_config c = reuse_config({0, 1, 4});
  c.use_relative_pe = true;
  c.pe_max_seq_length = 5;
  rf::encoder_parameters<float> params(c);
  const auto layers = params.layers();
  CHECK(layers[1].attention.query.weight.shape() == std::array<rf::index_t, 2>{24, 32});
  CHECK(layers[1].attention.key.bias.shape() == std::array<rf::index_t, 1>{24});
  CHECK(layers[1].attention.relative_position.shape() == std::array<rf::index_t, 2>{3, 9});
  CHECK(layers[2].attention.query.weight.size() == 0);
  CHECK(layers[2].attention.relative_position.empty());
  const rf::encoder<float> model(c, layers);
  // The checkpoint's bytes, plus the zero padding of the packed weights' last strips.
  CHECK(model.parameter_bytes() ==
        params.values().size() * sizeof(float) + test_support::packing_padding_bytes<float>(c));
}

TEST_CASE("an encoder built one layer at a time reads a layer's copied tensors only until the next call",
          "[reuse][parameters]") {
  // The source hands out each layer's Linear weights and biases from one buffer,
  // which the next call fills with NaN before writing the next layer's values
  // there: a layer that went on reading its own copied tensors would read
  // another layer's (or NaN). Referenced tensors (LayerNorms, relative-position
  // tables) stay the parameters' own, as they must.
  rf::encoder_config c = reuse_config({0, 2, 4});
  c.use_relative_pe = true;
  c.pe_max_seq_length = 5;
  rf::encoder_parameters<float> params(c);
  params.fill_random(9);
  const auto layers = params.layers();
  std::vector<float> shared(params.values().size());  // never reallocated
  std::vector<rf::index_t> calls;
  const auto one_at_a_time = [&](rf::index_t l) {
    calls.push_back(l);
    std::fill(shared.begin(), shared.end(), std::nanf(""));
    rf::encoder_layer_weights<float> w = layers[static_cast<std::size_t>(l)];
    float* cursor = shared.data();
    rf::for_each_layer_tensor([&](const auto& row) {
      auto& view = row.field(w);
      if (row.use != rf::tensor_use::copied || view.empty()) return;
      std::copy(view.data(), view.data() + view.size(), cursor);
      view = std::remove_cvref_t<decltype(view)>(cursor, view.shape());
      cursor += view.size();
    });
    return w;
  };
  const rf::encoder<float> whole(c, layers), by_layer(c, one_at_a_time);
  CHECK(calls == std::vector<rf::index_t>{0, 1, 2});
  const rf::any_encoder<float> any_by_layer(c, one_at_a_time);
  CHECK(calls == std::vector<rf::index_t>{0, 1, 2, 0, 1, 2});
  CHECK(by_layer.parameter_bytes() == whole.parameter_bytes());

  const rf::index_t batch = 2, seq = 5, d = c.hidden_size;
  const std::vector<float> x = random_vector<float>(batch * seq * d, 11);
  std::vector<float> expected(x.size()), out(x.size()), any_out(x.size());
  auto ws = whole.make_workspace(batch, seq, 2);
  whole.forward(rf::view(x, {batch, seq, d}), rf::view(expected, {batch, seq, d}), ws);
  by_layer.forward(rf::view(x, {batch, seq, d}), rf::view(out, {batch, seq, d}), ws);
  any_by_layer.forward(rf::view(x, {batch, seq, d}), rf::view(any_out, {batch, seq, d}), ws);
  CHECK(out == expected);
  CHECK(any_out == expected);
}

TEST_CASE("an encoder built for another SIMD architecture packs and multiplies with that one's kernels",
          "[reuse][arch]") {
  // The scalar path exists in every build and its tile (2 columns) is narrower
  // than any vector tile, so the packed weights' padding shows whose kernels
  // the layers were built for; the outputs show that those kernels compute.
  const rf::encoder_config c = reuse_config({0, 2, 4}, 36);  // d_ff = 75: not a multiple of any tile
  rf::encoder_parameters<float> params(c);
  params.fill_random(3);
  const auto layers = params.layers();
  const rf::encoder<float, rf::score_function::standard, rf::simd::scalar> scalar_model(c, layers);
  const rf::encoder<float> default_model(c, layers);
  const std::size_t checkpoint = params.values().size() * sizeof(float);
  CHECK(scalar_model.parameter_bytes() == checkpoint + test_support::packing_padding_bytes<float, rf::simd::scalar>(c));
  CHECK(default_model.parameter_bytes() == checkpoint + test_support::packing_padding_bytes<float>(c));

  const rf::index_t batch = 2, seq = 9, d = c.hidden_size;
  const std::vector<float> x = random_vector<float>(batch * seq * d, 5);
  std::vector<float> scalar_out(x.size()), default_out(x.size());
  const auto run = [&](const auto& model, std::vector<float>& out) {
    auto ws = model.make_workspace(batch, seq, 2);
    model.forward(rf::view(x, {batch, seq, d}), rf::view(out, {batch, seq, d}), ws);
  };
  run(scalar_model, scalar_out);
  run(default_model, default_out);
  CHECK_CLOSE(compare(scalar_out, default_out, tolerance<float>, tolerance<float>));
}
