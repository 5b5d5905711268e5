// Builds against reuseformer::io like a downstream project: loads the checkpoint
// directory argv[1] (config.json, model.safetensors) with the score function its
// config.json names, runs it on the hidden_states and attention_mask stored in
// the same file, and compares with the stored `expected` output.
#include <reuseformer/io.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

int main(int argc, char** argv) try {
  namespace rf = reuseformer;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CHECKPOINT_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  const rf::io::model<float> model = rf::io::load_model<float>(dir);
  const rf::io::safetensors_reader file(dir / "model.safetensors");
  const rf::index_t d = model.config().encoder.hidden_size;
  const rf::io::model_input x = rf::io::read_model_input(file, d, model.embeddings().has_value());

  std::vector<float> y(static_cast<std::size_t>(x.batch * x.seq * d));
  rf::workspace ws = model.make_workspace(x.batch, x.seq);
  model.forward(x.hidden->view<3>(), rf::view(y, {x.batch, x.seq, d}), ws, x.mask());

  const auto expected = file.load<double>("expected");
  double worst = 0;
  for (std::size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::abs(y[i] - expected.data()[i]));
  std::printf("consumer_io ok: %s scores, max |difference| %.2g\n",
              std::string(rf::name_of(model.config().encoder.score)).c_str(), worst);
  return worst < 1e-4 ? 0 : 1;
} catch (const reuseformer::error& e) {
  std::fprintf(stderr, "consumer_io: %s\n", e.what());
  return 1;
}
