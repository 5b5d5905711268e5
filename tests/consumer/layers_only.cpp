// Builds against reuseformer::reuseformer (the layers alone) like a downstream
// project and runs one tiny encoder.
#include <reuseformer/reuseformer.hpp>

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
  model.forward(rf::tensor_view<const float, 3>(x.data(), {1, 3, 8}),
                rf::tensor_view<float, 3>(y.data(), {1, 3, 8}), ws);
  std::printf("consumer ok: reuseformer %s, y[0] = %g\n", rf::version, static_cast<double>(y[0]));
  return y[0] == y[0] ? 0 : 1;  // NaN would mean a broken build
}
