// Eigen interop (reuseformer/eigen/interop.hpp): every conversion both ways,
// each refused layout with its message, weights from Eigen matrices; and the
// Eigen product backend (eigen/products.hpp) against the default one, without
// allocating.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/allocation_counter.hpp"

#include <reuseformer/eigen.hpp>
#include <reuseformer/reuseformer.hpp>

#include "support/catch.hpp"
#include "support/compare.hpp"
#include "support/errors.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace rf = reuseformer;
using reuseformer_test::compare;
using reuseformer_test::count_allocations;
using reuseformer_test::error_message;
using reuseformer_test::reference::tolerance;

namespace {

template <class T>
using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_matrix_f = row_matrix<float>;

// 0, 1, 2, ... in storage order, so a misread element shows.
template <class M>
M iota(Eigen::Index rows, Eigen::Index cols) {
  M m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<typename M::Scalar>(i);
  return m;
}

// Every element of `view` [rows, cols] is x(i, j) (or x(j, i) when transposed).
template <class V, class X>
bool same_elements(const V& view, const X& x, bool transposed = false) {
  for (rf::index_t i = 0; i < view.extent(0); ++i)
    for (rf::index_t j = 0; j < view.extent(1); ++j)
      if (view(i, j) != (transposed ? x(j, i) : x(i, j))) return false;
  return true;
}

// Forbids Eigen's heap allocations while it lives (eigen_assert throws on one:
// support/eigen_checks.hpp).
struct no_eigen_malloc {
  no_eigen_malloc() { Eigen::internal::set_is_malloc_allowed(false); }
  ~no_eigen_malloc() { Eigen::internal::set_is_malloc_allowed(true); }
  no_eigen_malloc(const no_eigen_malloc&) = delete;
  no_eigen_malloc& operator=(const no_eigen_malloc&) = delete;
};

}  // namespace

TEST_CASE("view_rows views row-major Eigen matrices, maps, refs and row blocks in place", "[eigen]") {
  row_matrix_f m = iota<row_matrix_f>(5, 4);
  const rf::matrix_view<float> v = rf::eigen::view_rows(m);
  CHECK(v.data() == m.data());
  CHECK(v.shape() == std::array<rf::index_t, 2>{5, 4});
  CHECK(same_elements(v, m));
  v(2, 3) = -1;  // the view is the matrix's memory
  CHECK(m(2, 3) == -1);

  const row_matrix_f& read_only = m;
  static_assert(std::is_same_v<decltype(rf::eigen::view_rows(read_only)), rf::matrix_view<const float>>);

  const rf::matrix_view<float> block = rf::eigen::view_rows(m.middleRows(1, 3));  // whole rows of a larger matrix
  CHECK(block.data() == &m(1, 0));
  CHECK(block.shape() == std::array<rf::index_t, 2>{3, 4});
  CHECK(same_elements(block, m.middleRows(1, 3)));

  // A map with an explicit outer stride equal to its width is contiguous.
  std::vector<float> storage(12);
  const Eigen::Map<row_matrix_f, 0, Eigen::OuterStride<>> strided(storage.data(), 3, 4, Eigen::OuterStride<>(4));
  CHECK(rf::eigen::view_rows(strided).data() == storage.data());

  const Eigen::Ref<const row_matrix_f> ref(m);
  CHECK(rf::eigen::view_rows(ref).data() == m.data());

  // The transpose of a column-major [d, n] matrix is row-major [n, d].
  const Eigen::MatrixXf tokens = iota<Eigen::MatrixXf>(4, 6);
  const rf::matrix_view<const float> t = rf::eigen::view_rows(tokens.transpose());
  CHECK(t.data() == tokens.data());
  CHECK(same_elements(t, tokens, true));

  // One column (a vector) has no row stride to match.
  Eigen::VectorXf column = Eigen::VectorXf::LinSpaced(3, 0, 2);
  CHECK(rf::eigen::view_rows(column).shape() == std::array<rf::index_t, 2>{3, 1});
}

TEST_CASE("view_rows refuses what it cannot view without a copy, naming layout and strides", "[eigen]") {
  row_matrix_f wide = iota<row_matrix_f>(4, 5);
  CHECK(error_message([&] { (void)rf::eigen::view_rows(wide.block(1, 1, 2, 3), "W"); }) ==
        "W: cannot be viewed without a copy: expected row-major storage of [2, 3] with (row, column) strides "
        "(3, 1), found row-major with strides (5, 1)");
  const Eigen::MatrixXf column_major = iota<Eigen::MatrixXf>(3, 4);
  CHECK(error_message([&] { (void)rf::eigen::view_rows(column_major, "x"); }) ==
        "x: cannot be viewed without a copy: expected row-major storage of [3, 4] with (row, column) strides "
        "(4, 1), found column-major with strides (1, 3)");
  std::vector<float> storage(24);
  const Eigen::Map<const row_matrix_f, 0, Eigen::Stride<Eigen::Dynamic, 2>> every_other(
      storage.data(), 3, 4, Eigen::Stride<Eigen::Dynamic, 2>(8, 2));
  CHECK(error_message([&] { (void)rf::eigen::view_rows(every_other); }) ==
        "matrix: cannot be viewed without a copy: expected row-major storage of [3, 4] with (row, column) strides "
        "(4, 1), found row-major with strides (8, 2)");
  const Eigen::Ref<const row_matrix_f, 0, Eigen::OuterStride<>> narrow(wide.leftCols(2));
  CHECK(error_message([&] { (void)rf::eigen::view_rows(narrow, "ref"); }) ==
        "ref: cannot be viewed without a copy: expected row-major storage of [4, 2] with (row, column) strides "
        "(2, 1), found row-major with strides (5, 1)");
}

TEST_CASE("view_columns views column-major [d, n] token matrices as [n, d]", "[eigen]") {
  Eigen::MatrixXf x = iota<Eigen::MatrixXf>(4, 7);  // d = 4, 7 tokens
  const rf::matrix_view<float> v = rf::eigen::view_columns(x);
  CHECK(v.data() == x.data());
  CHECK(v.shape() == std::array<rf::index_t, 2>{7, 4});
  CHECK(same_elements(v, x, true));

  const rf::matrix_view<float> middle = rf::eigen::view_columns(x.middleCols(2, 3));
  CHECK(middle.data() == &x(0, 2));
  CHECK(same_elements(middle, x.middleCols(2, 3), true));

  const Eigen::Map<const Eigen::MatrixXf> map(x.data(), 4, 7);
  static_assert(std::is_same_v<decltype(rf::eigen::view_columns(map)), rf::matrix_view<const float>>);
  CHECK(rf::eigen::view_columns(map).data() == x.data());

  CHECK(error_message([&] { (void)rf::eigen::view_columns(x.topRows(3), "X"); }) ==
        "X: cannot be viewed without a copy: expected column-major storage of [3, 7] with (row, column) strides "
        "(1, 3), found column-major with strides (1, 4)");
  const row_matrix_f row_major = iota<row_matrix_f>(4, 7);
  CHECK(error_message([&] { (void)rf::eigen::view_columns(row_major, "X"); }) ==
        "X: cannot be viewed without a copy: expected column-major storage of [4, 7] with (row, column) strides "
        "(1, 4), found row-major with strides (7, 1)");
}

TEST_CASE("view_vector views contiguous rows and columns, and refuses strided ones", "[eigen]") {
  Eigen::VectorXf column = Eigen::VectorXf::LinSpaced(5, 0, 4);
  CHECK(rf::eigen::view_vector(column).data() == column.data());
  CHECK(rf::eigen::view_vector(column).shape() == std::array<rf::index_t, 1>{5});
  const Eigen::RowVectorXd row = Eigen::RowVectorXd::LinSpaced(3, 1, 3);
  static_assert(std::is_same_v<decltype(rf::eigen::view_vector(row)), rf::vector_view<const double>>);

  row_matrix_f m = iota<row_matrix_f>(3, 4);
  const rf::vector_view<float> second_row = rf::eigen::view_vector(m.row(1));
  CHECK(second_row.data() == &m(1, 0));
  CHECK(second_row(3) == m(1, 3));
  Eigen::MatrixXf c = iota<Eigen::MatrixXf>(3, 4);
  CHECK(rf::eigen::view_vector(c.col(2)).data() == &c(0, 2));
  // A dynamic one-row block of a column-major matrix is flagged column-major: its step is what counts.
  CHECK(error_message([&] { (void)rf::eigen::view_vector(c.block(1, 0, 1, 4), "b"); }) ==
        "b: cannot be viewed without a copy: expected 4 consecutive elements (stride 1), found stride 3");
  CHECK(error_message([&] { (void)rf::eigen::view_vector(m.col(1), "bias"); }) ==
        "bias: cannot be viewed without a copy: expected 3 consecutive elements (stride 1), found stride 4");
  CHECK(error_message([&] { (void)rf::eigen::view_vector(m, "gamma"); }) ==
        "gamma: expected a vector (one row or one column), found shape [3, 4]");
}

TEST_CASE("view_tensor views row-major Eigen tensors; batched splits [B*N, d]", "[eigen]") {
  Eigen::Tensor<float, 3, Eigen::RowMajor> t(2, 3, 4);
  for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<float>(i);
  const rf::tensor_view<float, 3> v = rf::eigen::view_tensor(t);
  CHECK(v.data() == t.data());
  CHECK(v.shape() == std::array<rf::index_t, 3>{2, 3, 4});
  CHECK(v(1, 2, 3) == t(1, 2, 3));
  CHECK(v(0, 1, 2) == t(0, 1, 2));

  const Eigen::TensorMap<const Eigen::Tensor<float, 3, Eigen::RowMajor>> map(t.data(), 2, 3, 4);
  static_assert(std::is_same_v<decltype(rf::eigen::view_tensor(map)), rf::tensor_view<const float, 3>>);
  CHECK(rf::eigen::view_tensor(map).data() == t.data());

  const Eigen::Tensor<float, 3> column_major(2, 3, 4);
  CHECK(error_message([&] { (void)rf::eigen::view_tensor(column_major, "hidden_states"); }) ==
        "hidden_states: cannot be viewed without a copy: expected a row-major (Eigen::RowMajor) tensor of "
        "[2, 3, 4] with strides [12, 4, 1], found column-major (Eigen::ColMajor) with strides [1, 2, 6]");
  const Eigen::Tensor<float, 3> one_token(1, 1, 4);  // both layouts are the same memory
  CHECK(rf::eigen::view_tensor(one_token).shape() == std::array<rf::index_t, 3>{1, 1, 4});

  row_matrix_f tokens = iota<row_matrix_f>(6, 4);
  const rf::tensor_view<float, 3> batch = rf::eigen::batched(rf::eigen::view_rows(tokens), 2);
  CHECK(batch.shape() == std::array<rf::index_t, 3>{2, 3, 4});
  CHECK(batch(1, 0, 2) == tokens(3, 2));
  CHECK(error_message([&] { (void)rf::eigen::batched(rf::eigen::view_rows(tokens), 4, "x"); }) ==
        "x: expected a row count divisible by the batch size 4, found 6 rows");
}

TEST_CASE("map_* give Eigen maps of a view's memory, usable as Eigen::Ref", "[eigen]") {
  std::vector<float> values(2 * 3 * 4);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  const rf::tensor_view<float, 3> v = rf::view(values, {2, 3, 4});

  auto rows = rf::eigen::map_rows(v);
  static_assert(std::is_same_v<std::remove_const_t<decltype(rows)>, Eigen::Map<row_matrix_f>>);
  CHECK(rows.data() == values.data());
  CHECK((rows.rows() == 6 && rows.cols() == 4));
  CHECK(rows(4, 1) == v(1, 1, 1));
  rows(5, 3) = -7;  // writes the view's memory
  CHECK(values.back() == -7);
  const Eigen::Ref<row_matrix_f> writable(rf::eigen::map_rows(v));
  CHECK(writable.data() == values.data());

  const rf::tensor_view<const float, 3> read_only = v;
  const auto columns = rf::eigen::map_columns(read_only);
  static_assert(std::is_same_v<std::remove_const_t<decltype(columns)>, Eigen::Map<const Eigen::MatrixXf>>);
  CHECK((columns.rows() == 4 && columns.cols() == 6));
  CHECK(columns(1, 4) == v(1, 1, 1));
  const Eigen::Ref<const Eigen::MatrixXf> ref(columns);
  CHECK(ref.data() == values.data());  // no copy: the layouts match

  const auto vector = rf::eigen::map_vector(rf::view(values, {24}));
  CHECK((vector.data() == values.data() && vector.size() == 24));

  const auto tensor = rf::eigen::map_tensor(read_only);
  CHECK(tensor.data() == values.data());
  CHECK((tensor.dimension(0) == 2 && tensor.dimension(1) == 3 && tensor.dimension(2) == 4));
  CHECK(tensor(1, 2, 3) == v(1, 2, 3));
  CHECK(tensor(0, 2, 1) == v(0, 2, 1));

  // Round trips return the same memory and shape.
  CHECK(rf::eigen::view_rows(rows).data() == v.data());
  CHECK(rf::eigen::view_columns(columns).shape() == std::array<rf::index_t, 2>{6, 4});
  CHECK(rf::eigen::view_tensor(tensor).shape() == v.shape());
}

namespace {

// A model as a user would hold it in Eigen: one row-major matrix and one
// vector per Linear, vectors for the LayerNorms (copies of `p`'s values).
template <class T>
struct eigen_layer {
  using matrix = row_matrix<T>;
  using vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  struct linear {
    matrix weight;
    vector bias;
  };
  linear query, key, value, output, intermediate, ffn_output;
  vector attention_gamma, attention_beta, output_gamma, output_beta;

  static linear copy(const rf::linear_weights<T>& w) {
    return {rf::eigen::map_rows(w.weight), rf::eigen::map_vector(w.bias)};
  }
  explicit eigen_layer(const rf::encoder_layer_weights<T>& w)
      : query(copy(w.attention.query)),
        key(copy(w.attention.key)),
        value(copy(w.attention.value)),
        output(copy(w.attention.output)),
        intermediate(copy(w.feed_forward.intermediate)),
        ffn_output(copy(w.feed_forward.output)),
        attention_gamma(rf::eigen::map_vector(w.attention_norm.weight)),
        attention_beta(rf::eigen::map_vector(w.attention_norm.bias)),
        output_gamma(rf::eigen::map_vector(w.output_norm.weight)),
        output_beta(rf::eigen::map_vector(w.output_norm.bias)) {}

  [[nodiscard]] rf::encoder_layer_weights<T> weights(const std::string& prefix) const {
    using rf::eigen::layer_norm_weights_of, rf::eigen::linear_weights_of;
    rf::encoder_layer_weights<T> w;
    w.attention.query = linear_weights_of(query.weight, query.bias, prefix + "attention.self.query");
    w.attention.key = linear_weights_of(key.weight, key.bias, prefix + "attention.self.key");
    w.attention.value = linear_weights_of(value.weight, value.bias, prefix + "attention.self.value");
    w.attention.output = linear_weights_of(output.weight, output.bias, prefix + "attention.output.dense");
    w.attention_norm = layer_norm_weights_of(attention_gamma, attention_beta, prefix + "attention.output.LayerNorm");
    w.feed_forward.intermediate =
        linear_weights_of(intermediate.weight, intermediate.bias, prefix + "intermediate.dense");
    w.feed_forward.output = linear_weights_of(ffn_output.weight, ffn_output.bias, prefix + "output.dense");
    w.output_norm = layer_norm_weights_of(output_gamma, output_beta, prefix + "output.LayerNorm");
    return w;
  }
};

rf::encoder_config small_config() {
  rf::encoder_config c;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.intermediate_size = 72;
  c.num_hidden_layers = 2;
  return c;
}

}  // namespace

TEST_CASE("encoder_layer_weights from Eigen matrices run as the same values do", "[eigen]") {
  const rf::encoder_config c = small_config();
  rf::encoder_parameters<float> p(c);
  p.fill_random(11, 0.1);
  std::vector<eigen_layer<float>> held;
  std::vector<rf::encoder_layer_weights<float>> from_eigen;
  for (const auto& layer : p.layers()) held.emplace_back(layer);
  for (std::size_t l = 0; l < held.size(); ++l)
    from_eigen.push_back(held[l].weights("encoder.layer." + std::to_string(l) + "."));
  CHECK(from_eigen[1].attention.value.weight.data() == held[1].value.weight.data());  // viewed, not copied

  const rf::encoder<float> expected_model(c, p.layers()), model(c, from_eigen);
  const rf::index_t batch = 2, seq = 5, d = c.hidden_size;
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(d, batch * seq);  // tokens as columns
  Eigen::MatrixXf y(d, batch * seq), expected(d, batch * seq);
  auto ws = model.make_workspace(batch, seq);
  model.forward(rf::eigen::batched(rf::eigen::view_columns(x), batch),
                rf::eigen::batched(rf::eigen::view_columns(y), batch), ws);
  expected_model.forward(rf::eigen::batched(rf::eigen::view_columns(x), batch),
                         rf::eigen::batched(rf::eigen::view_columns(expected), batch), ws);
  CHECK(y == expected);  // the same values through the same kernels

  // A weight held column-major would be read transposed: refused, named.
  Eigen::MatrixXf query = held[0].query.weight;
  CHECK(error_message([&] {
          (void)rf::eigen::linear_weights_of(query, held[0].query.bias, "encoder.layer.0.attention.self.query");
        }) ==
        "encoder.layer.0.attention.self.query.weight: cannot be viewed without a copy: expected row-major storage "
        "of [32, 32] with (row, column) strides (32, 1), found column-major with strides (1, 32)");
}

TEMPLATE_TEST_CASE("Eigen products equal our GEMM's on blocked shapes, with each epilogue", "[eigen]", float, double) {
  using T = TestType;
  using eigen_linear = rf::linear<T, rf::simd::default_arch, rf::eigen::products>;
  // (rows, out, in): tiny; depth blocked (in above Eigen's kc); many tokens
  // (above Eigen's nc), few outputs; few tokens, many outputs (a column split).
  const auto [m, n, k] = GENERATE(
      table<rf::index_t, rf::index_t, rf::index_t>({{1, 7, 3}, {37, 100, 2000}, {700, 40, 300}, {5, 600, 64}}));
  const int threads = GENERATE(1, 2);
  CAPTURE(m, n, k, threads);
  const std::vector<T> x = reuseformer_test::random_vector<T>(static_cast<std::size_t>(m * k), 1);
  // Weights of scale 1/sqrt(k): outputs of magnitude ~1, as the tolerances assume.
  const double scale = 1 / std::sqrt(static_cast<double>(k));
  const std::vector<T> w = reuseformer_test::random_vector<T>(static_cast<std::size_t>(n * k), 2, -scale, scale);
  const std::vector<T> b = reuseformer_test::random_vector<T>(static_cast<std::size_t>(n), 3);
  const rf::linear_weights<T> weights{rf::view(w, {n, k}), rf::view(b, {n})};
  const rf::linear<T> own(weights, k, n, "own");
  const eigen_linear eigen(weights, k, n, "eigen");
  CHECK(eigen.parameter_bytes() == static_cast<std::size_t>(n * k + n) * sizeof(T));

  const rf::index_t stride = rf::round_to_line<T>(std::max(own.scratch_elements(), eigen.scratch_elements()));
  rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(T), threads);
  rf::arena arena = ws.make_arena();
  T* const scratch = arena.take<T>(stride * threads);
  const std::vector<T> residual = reuseformer_test::random_vector<T>(static_cast<std::size_t>(m * n), 4);
  const double tol = tolerance<T>;

  SECTION("overwrite, bias and GELU") {
    std::vector<T> expected(residual.size()), y(residual.size());
    own.template forward<rf::simd::gelu_erf>({x.data(), m, k, k}, {expected.data(), m, n, n},
                                             rf::gemm::update::overwrite, {scratch, stride, threads});
    {
      const no_eigen_malloc forbidden;
      const long news = count_allocations([&] {
        eigen.template forward<rf::simd::gelu_erf>({x.data(), m, k, k}, {y.data(), m, n, n},
                                                   rf::gemm::update::overwrite, {scratch, stride, threads});
      });
      CHECK(news == 0);
    }
    CHECK_CLOSE(compare(y, expected, tol, tol));
  }
  SECTION("accumulate into a residual, then a rows epilogue on final rows") {
    // The rows epilogue sees each row once, final: it records the row's sum.
    const auto run = [&](const auto& layer, std::vector<T>& y, std::vector<T>& sums) {
      std::vector<int> seen(static_cast<std::size_t>(m), 0);
      const auto after = [&](rf::index_t row, rf::index_t rows) {
        for (rf::index_t i = row; i < row + rows; ++i) {
          ++seen[static_cast<std::size_t>(i)];
          T sum = 0;
          for (rf::index_t j = 0; j < n; ++j) sum += y[static_cast<std::size_t>(i * n + j)];
          sums[static_cast<std::size_t>(i)] = sum;
        }
      };
      layer.forward({x.data(), m, k, k}, {y.data(), m, n, n}, rf::gemm::update::accumulate, {scratch, stride, threads},
                    after);
      CHECK(seen == std::vector<int>(static_cast<std::size_t>(m), 1));
    };
    std::vector<T> expected = residual, y = residual, expected_sums(static_cast<std::size_t>(m)),
                   sums(static_cast<std::size_t>(m));
    run(own, expected, expected_sums);
    run(eigen, y, sums);
    CHECK_CLOSE(compare(y, expected, tol, tol));
    CHECK_CLOSE(compare(sums, expected_sums, tol, tol * static_cast<double>(n)));
    std::vector<T> row_sums(static_cast<std::size_t>(m));
    for (rf::index_t i = 0; i < m; ++i)
      for (rf::index_t j = 0; j < n; ++j)
        row_sums[static_cast<std::size_t>(i)] += y[static_cast<std::size_t>(i * n + j)];
    CHECK(sums == row_sums);  // the epilogue ran after the product was complete
  }
}

TEMPLATE_TEST_CASE("an encoder on Eigen products matches the default backend", "[eigen]", float, double) {
  using T = TestType;
  rf::encoder_config c = small_config();
  c.norm = GENERATE(rf::norm_placement::post, rf::norm_placement::pre);
  c.score = GENERATE(rf::score_function::standard, rf::score_function::symmetric, rf::score_function::pairwise);
  const bool reuse = GENERATE(false, true);
  if (reuse) {
    c.reuse_schedule = {0, 2};
    c.use_relative_pe = true;
    c.pe_max_seq_length = 8;
  }
  c.causal = GENERATE(false, true);
  const auto [batch, seq] = GENERATE(table<rf::index_t, rf::index_t>({{1, 3}, {3, 37}}));
  const int threads = GENERATE(1, 2);
  CAPTURE(c.norm == rf::norm_placement::pre, rf::name_of(c.score), reuse, c.causal, batch, seq, threads);

  rf::encoder_parameters<T> p(c);
  p.fill_random(5, 0.1);
  const rf::index_t d = c.hidden_size;
  const std::vector<T> x = reuseformer_test::random_vector<T>(static_cast<std::size_t>(batch * seq * d), 6);
  std::vector<std::int64_t> mask(static_cast<std::size_t>(batch * seq), 1);
  mask.back() = 0;
  const rf::attention_mask attention_mask(rf::view(std::as_const(mask), {batch, seq}));
  rf::visit(c.score, [&]<rf::score_function Score>() {
    const rf::encoder<T, Score> own(c, p.layers());
    const rf::encoder<T, Score, rf::simd::default_arch, rf::eigen::products> eigen(c, p.layers());
    // The Eigen backend holds every tensor once, unpacked: exactly the parameters' bytes.
    CHECK(eigen.parameter_bytes() == p.values().size() * sizeof(T));
    std::vector<T> expected(x.size()), y(x.size());
    auto own_ws = own.make_workspace(batch, seq, threads);
    own.forward(rf::view(x, {batch, seq, d}), rf::view(expected, {batch, seq, d}), own_ws, attention_mask);
    auto ws = eigen.make_workspace(batch, seq, threads);
    CHECK(ws.size_bytes() == eigen.workspace_bytes(batch, seq, threads));
    eigen.forward(rf::view(x, {batch, seq, d}), rf::view(y, {batch, seq, d}), ws, attention_mask);
    CHECK_CLOSE(compare(y, expected, tolerance<T>, tolerance<T>));
  });
}

TEST_CASE("the Eigen allocation guard sees Eigen's heap allocations (so the checks below can fail)", "[eigen]") {
  const no_eigen_malloc forbidden;
  CHECK_THROWS_AS(Eigen::MatrixXd(64, 64), std::logic_error);
}

TEMPLATE_TEST_CASE("a steady-state forward pass on Eigen products allocates nothing", "[eigen]", float, double) {
  using T = TestType;
  rf::encoder_config c = small_config();
  c.intermediate_size = 1100;  // the FFN output's depth is above Eigen's depth block
  const int threads = GENERATE(1, 2);
  rf::encoder_parameters<T> p(c);
  p.fill_random(7, 0.05);
  const rf::encoder<T, rf::score_function::standard, rf::simd::default_arch, rf::eigen::products> model(c, p.layers());
  const rf::index_t batch = 2, seq = 300, d = c.hidden_size;  // 600 tokens: above Eigen's token block
  const std::vector<T> x = reuseformer_test::random_vector<T>(static_cast<std::size_t>(batch * seq * d), 8);
  std::vector<T> y(x.size());
  auto ws = model.make_workspace(batch, seq, threads);
  const auto forward = [&] { model.forward(rf::view(x, {batch, seq, d}), rf::view(y, {batch, seq, d}), ws); };
  forward();  // warm-up: the OpenMP runtime starts its thread pool here
  const no_eigen_malloc forbidden;
  const long news = count_allocations([&] {
    for (int i = 0; i < 2; ++i) forward();
  });
  CHECK(news == 0);
}
