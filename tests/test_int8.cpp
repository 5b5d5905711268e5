// The int8 products (gemm/int8_gemm.hpp, layers/int8_products.hpp) in whichever
// SIMD build this file is compiled for: the AVX512-VNNI kernel where the flags
// enable it, the portable 32-bit integer kernel elsewhere. Both must give an
// exact integer reference's values bit for bit.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <reuseformer/core/workspace.hpp>
#include <reuseformer/gemm/int8_gemm.hpp>
#include <reuseformer/gemm/int8_packed_weights.hpp>
#include <reuseformer/gemm/int8_quantization.hpp>
#include <reuseformer/layers/decoder.hpp>
#include <reuseformer/layers/encoder.hpp>
#include <reuseformer/layers/encoder_parameters.hpp>
#include <reuseformer/layers/int8_products.hpp>
#include <reuseformer/layers/linear.hpp>
#include <reuseformer/simd/activation.hpp>

#include "support/catch.hpp"
#include "support/compare.hpp"
#include "support/errors.hpp"
#include "support/random.hpp"

namespace rf = reuseformer;
using reuseformer_test::error_message;
using reuseformer_test::random_vector;

namespace {

// The int8 product's values from first principles: rows quantized one value
// at a time (row_quantization_of, quantize), columns likewise, the sums of
// products in 64-bit integers, then the dequantization the kernels document.
struct int8_reference {
  std::vector<std::uint8_t> qa;
  std::vector<rf::gemm::row_quantization> rows;
  std::vector<std::int8_t> qb;
  std::vector<float> col_scales;

  // Weights b [n, k] (stride ldb) quantized here.
  int8_reference(const float* a, rf::index_t m, rf::index_t lda, const float* b, rf::index_t n, rf::index_t ldb,
                 rf::index_t k)
      : int8_reference(a, m, lda, n, k) {
    for (rf::index_t j = 0; j < n; ++j) {
      float max_abs = 0;
      for (rf::index_t p = 0; p < k; ++p) max_abs = std::max(max_abs, std::abs(b[j * ldb + p]));
      col_scales[j] = rf::gemm::column_scale(max_abs);
      for (rf::index_t p = 0; p < k; ++p) qb[j * k + p] = rf::gemm::quantize_weight(b[j * ldb + p], col_scales[j]);
    }
  }

  // Weights given quantized: values q [n, k] (stride ldb) with their scales.
  int8_reference(const float* a, rf::index_t m, rf::index_t lda, const std::int8_t* q, const float* scales,
                 rf::index_t n, rf::index_t ldb, rf::index_t k)
      : int8_reference(a, m, lda, n, k) {
    for (rf::index_t j = 0; j < n; ++j) {
      col_scales[j] = scales[j];
      for (rf::index_t p = 0; p < k; ++p) qb[j * k + p] = q[j * ldb + p];
    }
  }

  // C[i, j] after the product, from its value before (accumulate) or not.
  [[nodiscard]] float value(rf::index_t i, rf::index_t j, rf::index_t k, bool accumulate, float before) const {
    std::int64_t sum = 0;
    for (rf::index_t p = 0; p < k; ++p)
      sum += (std::int64_t{qa[i * k + p]} - rows[i].zero_point) * std::int64_t{qb[j * k + p]};
    const float exact = static_cast<float>(sum), scale = rows[i].scale * col_scales[j];
    return accumulate ? std::fma(exact, scale, before) : exact * scale;
  }

 private:
  // The activations a [m, k] (stride lda) quantized; room for n weight columns.
  int8_reference(const float* a, rf::index_t m, rf::index_t lda, rf::index_t n, rf::index_t k)
      : qa(static_cast<std::size_t>(m * k)),
        rows(static_cast<std::size_t>(m)),
        qb(static_cast<std::size_t>(n * k)),
        col_scales(static_cast<std::size_t>(n)) {
    for (rf::index_t i = 0; i < m; ++i) {
      float lo = 0, hi = 0;
      for (rf::index_t p = 0; p < k; ++p) {
        lo = std::min(lo, a[i * lda + p]);
        hi = std::max(hi, a[i * lda + p]);
      }
      rows[i] = rf::gemm::row_quantization_of(lo, hi);
      for (rf::index_t p = 0; p < k; ++p) qa[i * k + p] = rf::gemm::quantize(a[i * lda + p], rows[i]);
    }
  }
};

// y = x Wᵀ through `packed` (overwrite, 2 threads), x [m, k] (stride lda), y [m, n].
std::vector<float> int8_product(const std::vector<float>& x, rf::index_t m, rf::index_t lda,
                                const rf::gemm::int8_packed_weights<>& packed) {
  const rf::index_t n = packed.out_features(), k = packed.in_features(), threads = 2;
  const rf::index_t stride = rf::round_to_line<float>(rf::gemm::int8_scratch_elements(k));
  rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(float), threads);
  rf::arena arena = ws.make_arena();
  std::vector<float> y(static_cast<std::size_t>(m * n));
  rf::gemm::parallel_multiply_add({x.data(), m, k, lda}, packed.view(), {y.data(), m, n, n},
                                  rf::gemm::update::overwrite,
                                  {arena.take<float>(stride * threads), stride, static_cast<int>(threads)});
  return y;
}

// The reference's y = x Wᵀ, [m, n].
std::vector<float> reference_product(const int8_reference& reference, rf::index_t m, rf::index_t n, rf::index_t k) {
  std::vector<float> y(static_cast<std::size_t>(m * n));
  for (rf::index_t i = 0; i < m; ++i)
    for (rf::index_t j = 0; j < n; ++j) y[i * n + j] = reference.value(i, j, k, false, 0);
  return y;
}

}  // namespace

TEST_CASE("int8 quantization: rows and columns, within half a step; 0 exact", "[int8]") {
  const std::vector<float> x = random_vector<float>(1000, 1, -0.3, 2.0);
  for (const rf::index_t k : {1, 15, 16, 17, 1000}) {
    CAPTURE(k);
    std::vector<std::uint8_t> q(static_cast<std::size_t>(k));
    const rf::gemm::row_quantization r = rf::gemm::quantize_row(x.data(), k, q.data());
    float lo = 0, hi = 0;
    for (rf::index_t p = 0; p < k; ++p) {
      lo = std::min(lo, x[p]);
      hi = std::max(hi, x[p]);
    }
    const rf::gemm::row_quantization expected = rf::gemm::row_quantization_of(lo, hi);
    CHECK(r.scale == expected.scale);
    CHECK(r.zero_point == expected.zero_point);
    CHECK(r.scale == (hi - lo) / 255.0F);
    bool same = true, close = true;
    for (rf::index_t p = 0; p < k; ++p) {
      same = same && q[p] == rf::gemm::quantize(x[p], r);
      close = close && std::abs((q[p] - r.zero_point) * double(r.scale) - x[p]) <= 0.5001 * r.scale;
    }
    CHECK(same);   // the vector path (AVX-512 builds) quantizes as the scalar one
    CHECK(close);  // no value clamped: the grid spans [lo, hi]
    CHECK(rf::gemm::quantize(0.0F, r) == r.zero_point);
  }
  // A row of zeros: scale 0, every level 0, and its products 0.
  const std::vector<float> zeros(40, 0.0F);
  std::vector<std::uint8_t> q(40, 7);
  const rf::gemm::row_quantization r = rf::gemm::quantize_row(zeros.data(), 40, q.data());
  CHECK(r.scale == 0);
  CHECK(std::all_of(q.begin(), q.end(), [](std::uint8_t v) { return v == 0; }));
  // Weights: symmetric, never -128.
  CHECK(rf::gemm::quantize_weight(-1.0F, rf::gemm::column_scale(1.0F)) == -127);
  CHECK(rf::gemm::quantize_weight(0.5F, rf::gemm::column_scale(1.0F)) == 64);  // 63.5: ties to even
  CHECK(rf::gemm::quantize_weight(0.3F, 0.0F) == 0);
}

TEST_CASE("int8 products: every shape bit for bit against an exact integer reference", "[int8][gemm]") {
  // Shapes straddle the register tile (MR 4..12 rows, NR 2..32 columns; with
  // 12-row tiles, m = 8 and 20 end in a strip of 8 rows, which runs its own
  // tile), the column panel (512) and the depth padding to a multiple of 4.
  // The reference sums the same quantized values exactly: the kernels' 32-bit
  // sums are exact too, and the dequantization is the same float operations,
  // so any difference at all is a defect.
  for (const rf::index_t m : {1, 3, 8, 17, 20, 70}) {
    for (const rf::index_t n : {1, 5, 33, 130, 600}) {
      for (const rf::index_t k : {1, 2, 8, 65, 400, 769}) {
        // Strided operands; the weight in two stacked parts cut mid-strip.
        const rf::index_t lda = k + 3, ldb = k + 2, ldc = n + 1, cut = n / 3;
        const std::vector<float> a = random_vector<float>(m * lda, 1, -1.0, 3.0), b = random_vector<float>(n * ldb, 2);
        const int8_reference reference(a.data(), m, lda, b.data(), n, ldb, k);
        const std::vector<rf::gemm::matrix<const float>> parts = {{b.data(), cut, k, ldb},
                                                                  {b.data() + cut * ldb, n - cut, k, ldb}};
        const rf::gemm::int8_packed_weights<> packed(std::span<const rf::gemm::matrix<const float>>(parts), k);
        CHECK(packed.out_features() == n);
        CHECK(packed.in_features() == k);
        for (const auto mode : {rf::gemm::update::overwrite, rf::gemm::update::accumulate})
          for (const int threads : {1, 2}) {
            const bool overwrite = mode == rf::gemm::update::overwrite;
            CAPTURE(m, n, k, overwrite, threads);
            const std::vector<float> before = random_vector<float>(m * ldc, 3);
            std::vector<float> c = before, expected = before;
            for (rf::index_t i = 0; i < m; ++i)
              for (rf::index_t j = 0; j < n; ++j)
                expected[i * ldc + j] = reference.value(i, j, k, !overwrite, before[i * ldc + j]);
            const rf::index_t stride = rf::round_to_line<float>(rf::gemm::int8_scratch_elements(k));
            rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(float), threads);
            rf::arena arena = ws.make_arena();
            rf::gemm::parallel_multiply_add({a.data(), m, k, lda}, packed.view(), {c.data(), m, n, ldc}, mode,
                                            {arena.take<float>(stride * threads), stride, threads});
            CHECK(c == expected);
          }
      }
    }
  }
}

TEST_CASE("int8 packed weights from int8 values: as they are, any int8 and any scale", "[int8][gemm]") {
  // A checkpoint's int8 weights: values over the whole int8 range, -128
  // included, and scales that are not max |w| / 127 (a calibrated quantizer's
  // clipped ones, say), which quantizing the dequantized floats again would
  // not give back. Strided, in two stacked parts cut mid-strip.
  for (const rf::index_t m : {1, 17}) {
    for (const rf::index_t n : {5, 130}) {
      for (const rf::index_t k : {8, 65, 769}) {
        CAPTURE(m, n, k);
        const rf::index_t lda = k + 3, ldb = k + 2, cut = n / 3;
        const std::vector<float> x = random_vector<float>(m * lda, 8, -1.0, 3.0),
                                 scales = random_vector<float>(n, 9, 0.001, 0.1);
        std::vector<std::int8_t> q(static_cast<std::size_t>(n * ldb));
        for (std::size_t i = 0; i < q.size(); ++i) q[i] = static_cast<std::int8_t>(int((i * 7919) % 256) - 128);
        const std::vector<rf::gemm::int8_matrix> parts = {
            {{q.data(), cut, k, ldb}, scales.data()}, {{q.data() + cut * ldb, n - cut, k, ldb}, scales.data() + cut}};
        const rf::gemm::int8_packed_weights<> packed(std::span<const rf::gemm::int8_matrix>(parts), k);
        CHECK(packed.out_features() == n);
        CHECK(packed.in_features() == k);
        const int8_reference reference(x.data(), m, lda, q.data(), scales.data(), n, ldb, k);
        CHECK(int8_product(x, m, lda, packed) == reference_product(reference, m, n, k));
      }
    }
  }
  // The largest sum there can be: -128 against 255 over the deepest product
  // the 32-bit sums allow, 2^31 - 2^23, exact.
  const rf::index_t k = rf::gemm::detail::int8_max_depth;
  const std::vector<float> ones(static_cast<std::size_t>(k), 1.0F), scale = {0.5F};
  const std::vector<std::int8_t> q(static_cast<std::size_t>(k), -128);
  const rf::gemm::int8_matrix part[] = {{{q.data(), 1, k, k}, scale.data()}};
  const rf::gemm::int8_packed_weights<> packed(std::span<const rf::gemm::int8_matrix>(part), k);
  const int8_reference reference(ones.data(), 1, k, q.data(), scale.data(), 1, k, k);
  CHECK(reference.value(0, 0, k, false, 0) == -65536.0F * 128 * 0.5F);
  CHECK(int8_product(ones, 1, k, packed) == reference_product(reference, 1, 1, k));
}

TEST_CASE("int8_products: a Linear of int8 weights packs them with their scales, which it checks", "[int8][layers]") {
  const rf::index_t rows = 9, in = 40, out = 20;
  const std::vector<float> x = random_vector<float>(rows * in, 10), bias(static_cast<std::size_t>(out), 0.0F);
  std::vector<float> scales = random_vector<float>(out, 11, 0.001, 0.1);
  std::vector<std::int8_t> q(static_cast<std::size_t>(out * in));
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = static_cast<std::int8_t>(int((i * 104729) % 256) - 128);
  using int8_linear = rf::linear<float, rf::simd::default_arch, rf::int8_products>;
  const auto weights = [&](rf::vector_view<const float> scale) {
    return rf::linear_weights<float, std::int8_t>{{{q.data(), {out, in}}, scale}, {bias.data(), {out}}};
  };
  const int8_linear linear(weights({scales.data(), {out}}), in, out, "int8");
  const rf::index_t stride = rf::round_to_line<float>(linear.scratch_elements());
  rf::workspace ws(static_cast<std::size_t>(stride) * sizeof(float), 1);
  rf::arena arena = ws.make_arena();
  std::vector<float> y(static_cast<std::size_t>(rows * out));
  linear.forward({x.data(), rows, in, in}, {y.data(), rows, out, out}, rf::gemm::update::overwrite,
                 {arena.take<float>(stride), stride, 1});
  const int8_reference reference(x.data(), rows, in, q.data(), scales.data(), out, in, in);
  CHECK(y == reference_product(reference, rows, out, in));

  CHECK(error_message([&] { int8_linear(weights({}), in, out, "int8"); }) ==
        "int8.weight_scale: expected shape [20], found [0]");
  CHECK(error_message([&] {
          int8_linear(weights({scales.data(), {out - 1}}), in, out, "int8");
        }) == "int8.weight_scale: expected shape [20], found [19]");
  scales[3] = -0.25F;
  CHECK(error_message([&] {
          int8_linear(weights({scales.data(), {out}}), in, out, "int8");
        }) == "int8.weight_scale: expected finite scales > 0, found -0.25 at row 3");
}

TEST_CASE("int8 packed weights: a quarter of the float bytes, scales and sums per column", "[int8][gemm]") {
  for (const rf::index_t n : {1, 33, 600}) {
    for (const rf::index_t k : {1, 64, 769}) {
      CAPTURE(n, k);
      const std::vector<float> w = random_vector<float>(n * k, 4);
      const rf::gemm::matrix<const float> parts[] = {{w.data(), n, k, k}};
      const rf::gemm::int8_packed_weights<> a(std::span<const rf::gemm::matrix<const float>>(parts), k);
      const rf::index_t strips = rf::ceil_div(n, a.nr), kpad = (k + 3) / 4 * 4;
      CHECK(a.bytes() == static_cast<std::size_t>(strips * a.nr * (kpad + 8)));
      const rf::gemm::int8_packed_weights<> copy = a;
      CHECK(copy.view().data != a.view().data);
      CHECK(std::equal(a.view().data, a.view().data + a.bytes(), copy.view().data));
    }
  }
}

TEST_CASE("int8_products: a Linear's epilogues run on the dequantized product", "[int8][layers]") {
  // y = gelu(x Wᵀ + b) with the rows epilogue (a residual LayerNorm's hook):
  // the product's values (the exact reference), then the bias and activation,
  // bit for bit.
  const rf::index_t rows = 37, in = 96, out = 200;
  const std::vector<float> x = random_vector<float>(rows * in, 5), w = random_vector<float>(out * in, 6),
                           bias = random_vector<float>(out, 7);
  const rf::linear_weights<float> weights{{w.data(), {out, in}}, {bias.data(), {out}}};
  const rf::linear<float, rf::simd::default_arch, rf::int8_products> int8(weights, in, out, "int8");
  const rf::linear<float> fp32(weights, in, out, "float");
  CHECK(int8.parameter_bytes() < fp32.parameter_bytes() / 3);
  const int8_reference reference(x.data(), rows, in, w.data(), out, in, in);
  std::vector<float> expected(static_cast<std::size_t>(rows * out));
  for (rf::index_t i = 0; i < rows; ++i)
    for (rf::index_t j = 0; j < out; ++j) expected[i * out + j] = reference.value(i, j, in, false, 0);
  rf::simd::bias_activation<rf::simd::gelu_erf, float, rf::simd::default_arch>(expected.data(), rows, out, out,
                                                                               bias.data());
  for (const int threads : {1, 2}) {
    CAPTURE(threads);
    const rf::index_t stride = rf::round_to_line<float>(int8.scratch_elements());
    rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(float), threads);
    rf::arena arena = ws.make_arena();
    const rf::thread_scratch<float> scratch{arena.take<float>(stride * threads), stride, threads};
    std::vector<float> y(static_cast<std::size_t>(rows * out));
    std::atomic<rf::index_t> rows_seen = 0;  // the epilogue runs on the product's threads
    int8.forward<rf::simd::gelu_erf>({x.data(), rows, in, in}, {y.data(), rows, out, out}, rf::gemm::update::overwrite,
                                     scratch, [&](rf::index_t, rf::index_t count) { rows_seen += count; });
    CHECK(rows_seen == rows);
    CHECK(y == expected);
  }
}

TEST_CASE("int8_products: decoding equals the int8 encoder's causal forward pass", "[int8][decoder]") {
  // A token's products see only its own row (its quantization included), so
  // prefill and steps give the rows of one causal forward pass over the whole
  // sequence, up to the float attention's summation order (a difference of
  // ~1e-7 could move a value across a quantization step; none does here).
  // Every score function, with partial and chained reuse.
  rf::encoder_config c;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.intermediate_size = 40;
  c.num_hidden_layers = 3;
  c.reuse_schedule = {0, 2, 4};
  c.causal = true;
  c.score = GENERATE(from_range(std::begin(rf::all_score_functions), std::end(rf::all_score_functions)));
  CAPTURE(rf::name_of(c.score));
  rf::encoder_parameters<float> p(c);
  p.fill_random(7, 0.3);
  const rf::index_t batch = 2, prompt = 4, steps = 3, total = prompt + steps, d = c.hidden_size;
  const std::vector<float> x = random_vector<float>(batch * total * d, 11);
  rf::visit(c.score, [&]<rf::score_function Score>() {
    using model = rf::encoder<float, Score, rf::simd::default_arch, rf::int8_products>;
    const model m(c, p.layers());
    std::vector<float> expected(x.size());
    rf::workspace ws = m.make_workspace(batch, total, 2);
    m.forward(rf::tensor_view<const float, 3>(x.data(), {batch, total, d}),
              rf::tensor_view<float, 3>(expected.data(), {batch, total, d}), ws);
    rf::decoder<float, Score, rf::simd::default_arch, rf::int8_products> state(m, batch, total, 2);
    std::vector<float> head(static_cast<std::size_t>(batch * prompt * d)), out(head.size());
    for (rf::index_t b = 0; b < batch; ++b)
      std::copy_n(x.begin() + b * total * d, prompt * d, head.begin() + b * prompt * d);
    state.prefill(rf::tensor_view<const float, 3>(head.data(), {batch, prompt, d}),
                  rf::tensor_view<float, 3>(out.data(), {batch, prompt, d}));
    for (rf::index_t b = 0; b < batch; ++b)
      CHECK_CLOSE(reuseformer_test::compare(out.data() + b * prompt * d, expected.data() + b * total * d,
                                            static_cast<std::size_t>(prompt * d), 1e-5, 1e-5));
    std::vector<float> token(static_cast<std::size_t>(batch * d)), token_out(token.size());
    for (rf::index_t k = prompt; k < total; ++k) {
      for (rf::index_t b = 0; b < batch; ++b) std::copy_n(x.begin() + (b * total + k) * d, d, token.begin() + b * d);
      state.step(rf::tensor_view<const float, 3>(token.data(), {batch, 1, d}),
                 rf::tensor_view<float, 3>(token_out.data(), {batch, 1, d}));
      for (rf::index_t b = 0; b < batch; ++b) {
        CAPTURE(k, b);
        CHECK_CLOSE(reuseformer_test::compare(token_out.data() + b * d, expected.data() + (b * total + k) * d,
                                              static_cast<std::size_t>(d), 1e-5, 1e-5));
      }
    }
  });
}

TEST_CASE("int8_products: a BERT-base layer's parameters take at most 0.27x the float bytes", "[int8][layers]") {
  // One layer of BERT-base's shape (d = 768, d_ff = 3072); the 12 layers of
  // BERT-base are 12 of them. The int8 Linears keep 1 byte per weight and 8 per
  // output column (its scale and sum); biases and LayerNorms stay float.
  rf::encoder_config c;  // the defaults are BERT-base
  c.num_hidden_layers = 1;
  rf::encoder_parameters<float> p(c);
  p.fill_random(3, 0.05);
  const rf::encoder<float> fp32(c, p.layers());
  const rf::encoder<float, rf::score_function::standard, rf::simd::default_arch, rf::int8_products> int8(c, p.layers());
  const double ratio = static_cast<double>(int8.parameter_bytes()) / static_cast<double>(fp32.parameter_bytes());
  INFO("int8 " << int8.parameter_bytes() << " bytes, float " << fp32.parameter_bytes() << " bytes, ratio " << ratio);
  CHECK(ratio <= 0.27);
  CHECK(ratio >= 0.25);  // a weight cannot take less than its byte
}
