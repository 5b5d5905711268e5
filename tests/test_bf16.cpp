// The bfloat16 products (gemm/bf16_gemm.hpp, layers/bf16_products.hpp) in
// whichever SIMD build this file is compiled for: the AVX512-BF16 kernel where
// the flags enable it, the widening kernel elsewhere.
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <type_traits>
#include <vector>

#include <reuseformer/core/bfloat16.hpp>
#include <reuseformer/core/workspace.hpp>
#include <reuseformer/gemm/bf16_gemm.hpp>
#include <reuseformer/gemm/bf16_packed_weights.hpp>
#include <reuseformer/layers/bf16_products.hpp>
#include <reuseformer/layers/encoder.hpp>
#include <reuseformer/layers/encoder_parameters.hpp>
#include <reuseformer/layers/layer_tensors.hpp>
#include <reuseformer/layers/linear.hpp>

#include "support/catch.hpp"
#include "support/compare.hpp"
#include "support/random.hpp"

namespace rf = reuseformer;
using reuseformer_test::compare;
using reuseformer_test::random_vector;

namespace {

float from_bits(std::uint32_t u) { return std::bit_cast<float>(u); }

}  // namespace

TEST_CASE("bfloat16: rounding to nearest, ties to even; NaN, infinity, overflow", "[bf16]") {
  CHECK(rf::to_bfloat16(1.0F).bits == 0x3f80);
  CHECK(rf::to_float(rf::bfloat16{0x3f80}) == 1.0F);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even 1.
  CHECK(rf::to_bfloat16(from_bits(0x3f808000)).bits == 0x3f80);
  // (1 + 2^-7) + 2^-8 is halfway to 1 + 2^-6: the even neighbour is above.
  CHECK(rf::to_bfloat16(from_bits(0x3f818000)).bits == 0x3f82);
  CHECK(rf::to_bfloat16(from_bits(0x3f808001)).bits == 0x3f81);  // just above half: up
  CHECK(rf::to_bfloat16(from_bits(0x3f807fff)).bits == 0x3f80);  // just below: down
  CHECK(rf::to_bfloat16(-2.5F).bits == 0xc020);
  CHECK(rf::to_bfloat16(std::numeric_limits<float>::infinity()).bits == 0x7f80);
  CHECK(rf::to_bfloat16(std::numeric_limits<float>::max()).bits == 0x7f80);  // beyond bf16's largest
  const rf::bfloat16 nan = rf::to_bfloat16(-std::numeric_limits<float>::quiet_NaN());
  CHECK(std::isnan(rf::to_float(nan)));
  CHECK((nan.bits & 0x8000) != 0);
  CHECK(std::isnan(rf::to_float(rf::to_bfloat16(from_bits(0x7f800001)))));  // a signalling NaN stays NaN
  // Every bf16 value survives the round trip.
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const rf::bfloat16 x{static_cast<std::uint16_t>(b)};
    if (!std::isnan(rf::to_float(x))) CHECK(rf::to_bfloat16(rf::to_float(x)) == x);
  }
}

TEST_CASE("bf16 products: the vdpbf16ps kernel wherever the build enables AVX512-BF16", "[bf16][gemm]") {
  // The tests_isa build enables it: without this, a change to the selection
  // could leave every build on the widening kernel and no test would notice.
#if defined(__AVX512BF16__) && defined(__AVX512F__)
  CHECK(rf::simd::has_bf16_dot<rf::simd::default_arch>());
#else
  CHECK_FALSE(rf::simd::has_bf16_dot<rf::simd::default_arch>());
#endif
}

TEST_CASE("bf16 products: scratch planned for an inner size serves every smaller one", "[bf16][gemm]") {
  // Depth blocks are cut evenly (k = 800: two of 400), so the deepest block of
  // a smaller k (768: one block) can be deeper than k's own.
  rf::index_t previous = 0;
  bool never_decreases = true;
  for (rf::index_t k = 0; k <= 4 * 768 + 1; ++k) {
    const rf::index_t elements = rf::gemm::bf16_scratch_elements(k);
    never_decreases = never_decreases && elements >= previous;
    previous = elements;
  }
  CHECK(never_decreases);
}

TEST_CASE("bf16 products: every shape against a reference rounding inputs to bf16", "[bf16][gemm]") {
  // Shapes straddle the register tile (MR 4..12 rows, NR 2..32 columns; with
  // 12-row tiles, m = 8 and 20 end in a strip of 8 rows, which runs its own
  // tile), the column panel (512) and the depth block (768 for bf16: 769 makes two blocks, one of odd
  // depth). The reference multiplies the bf16-rounded inputs in double: the
  // products are exact in float as in double, so the kernel differs from it
  // only by float summation: k <= 769 terms with sum |a b| ~ k/4 <= 192, each
  // partial sum rounding at 2^-24 relative, random-walk ~sqrt(k)·2^-24·|partial
  // sums| ~ 1e-5 in the worst of these shapes (observed at most 3.6e-6). One
  // operand left unrounded (a bf16 error of 2^-9 per term) would be off by
  // ~sqrt(k)·2^-9/3 ~ 2e-2, and a misplaced pair by O(1).
  for (const rf::index_t m : {1, 3, 8, 17, 20, 70}) {
    for (const rf::index_t n : {1, 5, 33, 130, 600}) {
      for (const rf::index_t k : {1, 2, 8, 65, 400, 769}) {
        for (const auto mode : {rf::gemm::update::overwrite, rf::gemm::update::accumulate})
          for (const int threads : {1, 2}) {
            const bool overwrite = mode == rf::gemm::update::overwrite;
            CAPTURE(m, n, k, overwrite, threads);
            // Strided operands; the weight in two stacked parts cut mid-strip.
            const rf::index_t lda = k + 3, ldb = k + 2, ldc = n + 1, cut = n / 3;
            const std::vector<float> a = random_vector<float>(m * lda, 1), b = random_vector<float>(n * ldb, 2);
            std::vector<float> c = random_vector<float>(m * ldc, 3);
            std::vector<double> expected(c.begin(), c.end());
            for (rf::index_t i = 0; i < m; ++i)
              for (rf::index_t j = 0; j < n; ++j) {
                if (overwrite) expected[i * ldc + j] = 0;
                for (rf::index_t p = 0; p < k; ++p)
                  expected[i * ldc + j] +=
                      double(rf::round_to_bfloat16(a[i * lda + p])) * double(rf::round_to_bfloat16(b[j * ldb + p]));
              }
            const std::vector<rf::gemm::matrix<const float>> parts = {{b.data(), cut, k, ldb},
                                                                      {b.data() + cut * ldb, n - cut, k, ldb}};
            const rf::gemm::bf16_packed_weights<> packed(std::span<const rf::gemm::matrix<const float>>(parts), k);
            CHECK(packed.out_features() == n);
            CHECK(packed.in_features() == k);
            const rf::index_t stride = rf::round_to_line<float>(rf::gemm::bf16_scratch_elements(k));
            rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(float), threads);
            rf::arena arena = ws.make_arena();
            rf::gemm::parallel_multiply_add({a.data(), m, k, lda}, packed.view(), {c.data(), m, n, ldc}, mode,
                                            {arena.take<float>(stride * threads), stride, threads});
            CHECK_CLOSE(compare(c, expected, 1e-5, 2e-5));
          }
      }
    }
  }
}

TEST_CASE("bf16 packed weights: from bf16 equal those rounded from float; half the float bytes", "[bf16][gemm]") {
  for (const rf::index_t n : {1, 33, 600}) {
    for (const rf::index_t k : {1, 64, 769}) {
      CAPTURE(n, k);
      const std::vector<float> w = random_vector<float>(n * k, 4);
      std::vector<rf::bfloat16> w16(w.size());
      for (std::size_t i = 0; i < w.size(); ++i) w16[i] = rf::to_bfloat16(w[i]);
      const rf::gemm::matrix<const float> from_float[] = {{w.data(), n, k, k}};
      const rf::gemm::matrix<const rf::bfloat16> from_bf16[] = {{w16.data(), n, k, k}};
      const rf::gemm::bf16_packed_weights<> a(std::span<const rf::gemm::matrix<const float>>(from_float), k);
      const rf::gemm::bf16_packed_weights<> b(std::span<const rf::gemm::matrix<const rf::bfloat16>>(from_bf16), k);
      REQUIRE(a.bytes() == b.bytes());
      CHECK(std::equal(a.view().data, a.view().data + a.bytes() / 2, b.view().data));
      // Padding: the last strip's columns, one depth step per odd depth block.
      const rf::index_t kc = rf::gemm::detail::depth_block<rf::bfloat16>(k);
      rf::index_t depth = 0;
      for (rf::index_t pc = 0; pc < k; pc += kc) depth += (std::min(kc, k - pc) + 1) / 2 * 2;
      CHECK(a.bytes() == static_cast<std::size_t>(rf::ceil_div(n, a.nr) * a.nr * depth) * 2);
      // A copy owns equal values.
      const rf::gemm::bf16_packed_weights<> copy = a;
      CHECK(copy.view().data != a.view().data);
      CHECK(std::equal(a.view().data, a.view().data + a.bytes() / 2, copy.view().data));
    }
  }
}

TEST_CASE("bf16_products: a Linear equals the float Linear on bf16-rounded operands", "[bf16][layers]") {
  // y = gelu(x Wᵀ + b) with the rows epilogue (a residual LayerNorm's hook):
  // the bf16 backend against the float backend given the rounded x and W, which
  // computes the same exact products, summed in another order.
  const rf::index_t rows = 37, in = 96, out = 200;
  const std::vector<float> x = random_vector<float>(rows * in, 5), w = random_vector<float>(out * in, 6),
                           bias = random_vector<float>(out, 7);
  std::vector<float> x16 = x, w16 = w;
  for (float& v : x16) v = rf::round_to_bfloat16(v);
  for (float& v : w16) v = rf::round_to_bfloat16(v);
  const rf::linear_weights<float> weights{{w.data(), {out, in}}, {bias.data(), {out}}};
  const rf::linear_weights<float> rounded{{w16.data(), {out, in}}, {bias.data(), {out}}};
  const rf::linear<float, rf::simd::default_arch, rf::bf16_products> bf16(weights, in, out, "bf16");
  const rf::linear<float> reference(rounded, in, out, "float");
  CHECK(bf16.parameter_bytes() < reference.parameter_bytes());
  for (const int threads : {1, 2}) {
    CAPTURE(threads);
    const rf::index_t stride =
        rf::round_to_line<float>(std::max(bf16.scratch_elements(), reference.scratch_elements()));
    rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(float), threads);
    rf::arena arena = ws.make_arena();
    const rf::thread_scratch<float> scratch{arena.take<float>(stride * threads), stride, threads};
    std::vector<float> y(static_cast<std::size_t>(rows * out)), expected = y;
    std::atomic<rf::index_t> rows_seen = 0;  // the epilogue runs on the product's threads
    bf16.forward<rf::simd::gelu_erf>({x.data(), rows, in, in}, {y.data(), rows, out, out}, rf::gemm::update::overwrite,
                                     scratch, [&](rf::index_t, rf::index_t count) { rows_seen += count; });
    reference.forward<rf::simd::gelu_erf>({x16.data(), rows, in, in}, {expected.data(), rows, out, out},
                                          rf::gemm::update::overwrite, scratch);
    CHECK(rows_seen == rows);
    CHECK_CLOSE(compare(y, expected, 1e-5, 1e-6));
  }
}

TEST_CASE("bf16_products: an encoder from bfloat16 weights equals the one from those values in float",
          "[bf16][layers]") {
  // The Linears' weights given as bfloat16 (as a BF16 checkpoint stores them)
  // or widened to float (then rounded back, exactly): the same packed weights,
  // so the same outputs bit for bit. Every score function (symmetric and
  // pairwise have no key projection), with partial and full reuse (layer 2
  // has no query).
  rf::encoder_config c;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.intermediate_size = 48;
  c.num_hidden_layers = 3;
  c.reuse_schedule = {0, 2, 4};
  c.score = GENERATE(from_range(std::begin(rf::all_score_functions), std::end(rf::all_score_functions)));
  CAPTURE(rf::name_of(c.score));
  rf::encoder_parameters<float> p(c);
  p.fill_random(8, 0.1);
  for (float& v : p.values()) v = rf::round_to_bfloat16(v);
  const std::vector<rf::encoder_layer_weights<float>> widened = p.layers();

  // The same views, but each Linear weight a bfloat16 copy of its values.
  std::vector<rf::encoder_layer_weights<float, rf::bfloat16>> narrow(widened.size());
  std::deque<std::vector<rf::bfloat16>> storage;
  for (std::size_t l = 0; l < widened.size(); ++l)
    rf::for_each_layer_tensor([&](const auto& row) {
      const auto& from = row.field(widened[l]);
      auto& to = row.field(narrow[l]);
      if constexpr (std::is_same_v<std::remove_cvref_t<decltype(to)>, std::remove_cvref_t<decltype(from)>>) {
        to = from;
      } else if (!from.empty()) {
        std::vector<rf::bfloat16>& values = storage.emplace_back();
        for (rf::index_t i = 0; i < from.size(); ++i) values.push_back(rf::to_bfloat16(from.data()[i]));
        to = {values.data(), from.shape()};
      }
    });

  rf::visit(c.score, [&]<rf::score_function Score>() {
    using model = rf::encoder<float, Score, rf::simd::default_arch, rf::bf16_products>;
    const model from_float(c, widened), from_bf16(c, narrow);
    CHECK(from_bf16.parameter_bytes() == from_float.parameter_bytes());
    const rf::index_t batch = 2, seq = 5, d = c.hidden_size;
    const std::vector<float> x = random_vector<float>(batch * seq * d, 9);
    std::vector<float> y_float(x.size()), y_bf16(x.size());
    rf::workspace ws = from_float.make_workspace(batch, seq, 2);
    from_float.forward(rf::tensor_view<const float, 3>(x.data(), {batch, seq, d}),
                       rf::tensor_view<float, 3>(y_float.data(), {batch, seq, d}), ws);
    from_bf16.forward(rf::tensor_view<const float, 3>(x.data(), {batch, seq, d}),
                      rf::tensor_view<float, 3>(y_bf16.data(), {batch, seq, d}), ws);
    CHECK(y_bf16 == y_float);
  });
}
