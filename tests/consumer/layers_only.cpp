// Builds against reuseformer::reuseformer (the layers alone) like a downstream
// project and runs one tiny encoder.
#include <reuseformer/reuseformer.hpp>
// The umbrella header is the layers alone: Eigen only when asked for.
#ifdef EIGEN_WORLD_VERSION
#error "reuseformer/reuseformer.hpp brought in Eigen"
#endif
#include <reuseformer/eigen.hpp>

#include <cstdio>
#include <vector>

int main() {
  namespace rf = reuseformer;
  rf::encoder_config config;
  config.hidden_size = 8;
  config.num_attention_heads = 2;
  config.intermediate_size = 16;
  config.num_hidden_layers = 1;
  rf::encoder_parameters<float> parameters(config);
  parameters.fill_random(7);
  const rf::encoder<float> model(config, parameters.layers());

  std::vector<float> x(1 * 3 * 8, 0.5f), y(x.size());
  auto ws = model.make_workspace(1, 3);
  model.forward(rf::tensor_view<const float, 3>(x.data(), {1, 3, 8}), rf::tensor_view<float, 3>(y.data(), {1, 3, 8}),
                ws);
  // Eigen comes with the target: the same pass on activations held in an Eigen
  // matrix (tokens as columns), through Eigen's product kernel.
  const rf::encoder<float, rf::score_function::standard, rf::simd::default_arch, rf::eigen::products> on_eigen(
      config, parameters.layers());
  const Eigen::MatrixXf x_eigen = Eigen::MatrixXf::Constant(8, 3, 0.5f);
  Eigen::MatrixXf y_eigen(8, 3);
  auto eigen_ws = on_eigen.make_workspace(1, 3);
  on_eigen.forward(rf::eigen::batched(rf::eigen::view_columns(x_eigen), 1),
                   rf::eigen::batched(rf::eigen::view_columns(y_eigen), 1), eigen_ws);
  const float eigen_difference =
      (y_eigen - rf::eigen::map_columns(rf::tensor_view<const float, 3>(y.data(), {1, 3, 8}))).cwiseAbs().maxCoeff();
  std::printf("consumer ok: reuseformer %s, y[0] = %g, Eigen backend differs by %g\n", rf::version,
              static_cast<double>(y[0]), static_cast<double>(eigen_difference));
  return y[0] == y[0] && eigen_difference < 1e-5f ? 0 : 1;  // NaN would mean a broken build
}
