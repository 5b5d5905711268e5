// Running the library on data held in Eigen, without copying it: a reuse
// encoder reads activations from an Eigen::Matrix and writes its result into
// another, and a layout that cannot be viewed in place is refused.
#include <reuseformer/eigen.hpp>
#include <reuseformer/reuseformer.hpp>

#include <cstdio>

int main() try {
  namespace rf = reuseformer;

  rf::encoder_config config;
  config.hidden_size = 64;
  config.num_attention_heads = 4;
  config.intermediate_size = 256;
  config.num_hidden_layers = 4;
  config.reuse_schedule = {0, 2, 2, 4};  // layers 1-3 take 2, 2 and 4 heads from the layer before

  rf::encoder_parameters<float> parameters(config);
  parameters.fill_random(/*seed=*/5);
  const rf::encoder<float> model(config, parameters.layers());

  // Eigen's default layout is column-major: a d x (B*N) matrix with one column
  // per token has the memory of the library's row-major [B, N, d].
  const rf::index_t batch = 2, seq = 8, d = config.hidden_size;
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(d, batch * seq);
  Eigen::MatrixXf y(d, batch * seq);

  // view_columns: the [B*N, d] view of those columns; batched: split into [B, N, d].
  auto ws = model.make_workspace(batch, seq);
  model.forward(rf::eigen::batched(rf::eigen::view_columns(x), batch),
                rf::eigen::batched(rf::eigen::view_columns(y), batch), ws);
  // y now holds the result, token t in column t.
  std::printf("output column 0 starts %f %f; norm of all outputs %f\n", y(0, 0), y(1, 0), y.norm());

  // The other way round: a library view as an Eigen map (here rows = tokens),
  // usable wherever Eigen takes an expression or an Eigen::Ref.
  const Eigen::Ref<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> rows =
      rf::eigen::map_rows(rf::eigen::view_columns(y));
  if (rows.row(0).transpose() != y.col(0)) return 1;  // the same memory, read two ways

  // The first 3 features of every token are a block whose columns are not
  // contiguous: the library refuses it rather than copying or misreading it.
  try {
    (void)rf::eigen::view_columns(x.topRows(3), "x.topRows(3)");
    return 1;
  } catch (const rf::error& e) {
    std::printf("refused: %s\n", e.what());
  }
  return 0;
} catch (const reuseformer::error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
