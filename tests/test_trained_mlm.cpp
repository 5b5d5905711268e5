// The trained masked LM (tests/fixtures/trained_mlm) run as a user runs a
// checkpoint, with each product backend: the held-out masked-LM loss that the
// encoder's output gives through the model's own MLM head. A narrower product
// backend may cost quality only within a stated bound of float's loss.
#include <reuseformer/io.hpp>
#include <reuseformer/layers/bf16_products.hpp>
#include <reuseformer/layers/int8_products.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iomanip>
#include <vector>

#include "support/catch.hpp"

namespace rf = reuseformer;
namespace io = reuseformer::io;

namespace {

const std::filesystem::path trained = std::filesystem::path(REUSEFORMER_FIXTURE_DIR) / "trained_mlm";

// BERT's MLM head (cls.predictions) in double precision: a dense layer, exact
// GELU and LayerNorm, then logits against the tied word embeddings plus a bias.
struct mlm_head {
  io::loaded_tensor<double> dense_w, dense_b, ln_w, ln_b, words, bias;
  double eps;

  explicit mlm_head(const io::safetensors_reader& f, double layer_norm_eps)
      : dense_w(f.load<double>("cls.predictions.transform.dense.weight")),
        dense_b(f.load<double>("cls.predictions.transform.dense.bias")),
        ln_w(f.load<double>("cls.predictions.transform.LayerNorm.weight")),
        ln_b(f.load<double>("cls.predictions.transform.LayerNorm.bias")),
        words(f.load<double>("bert.embeddings.word_embeddings.weight")),
        bias(f.load<double>("cls.predictions.bias")),
        eps(layer_norm_eps) {}

  // −log p(label) for one token's hidden state h [d].
  [[nodiscard]] double loss(const float* h, std::int64_t label) const {
    const rf::index_t d = dense_b.shape()[0], vocab = bias.shape()[0];
    std::vector<double> t(static_cast<std::size_t>(d));
    double mean = 0;
    for (rf::index_t i = 0; i < d; ++i) {
      double s = dense_b.data()[i];
      for (rf::index_t j = 0; j < d; ++j) s += dense_w.data()[i * d + j] * h[j];
      t[i] = 0.5 * s * (1 + std::erf(s / std::sqrt(2.0)));
      mean += t[i];
    }
    mean /= static_cast<double>(d);
    double var = 0;
    for (const double v : t) var += (v - mean) * (v - mean);
    const double inv = 1 / std::sqrt(var / static_cast<double>(d) + eps);
    for (rf::index_t i = 0; i < d; ++i) t[i] = (t[i] - mean) * inv * ln_w.data()[i] + ln_b.data()[i];
    std::vector<double> logits(static_cast<std::size_t>(vocab));
    for (rf::index_t v = 0; v < vocab; ++v) {
      double s = bias.data()[v];
      for (rf::index_t j = 0; j < d; ++j) s += words.data()[v * d + j] * t[j];
      logits[v] = s;
    }
    const double top = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (const double l : logits) sum += std::exp(l - top);
    return top + std::log(sum) - logits[static_cast<std::size_t>(label)];
  }
};

struct heldout_result {
  double loss;                // mean MLM loss over the masked tokens
  std::vector<float> hidden;  // the encoder's output [B, N, d]
};

// The held-out sequences (about 15% of their tokens masked) through the
// encoder running on `Products`, and the MLM head.
template <class Products>
heldout_result heldout_run() {
  const io::model<float, rf::simd::default_arch, Products> model =
      io::load_model<float, rf::simd::default_arch, Products>(trained);
  const rf::index_t d = model.config().encoder.hidden_size;
  const io::safetensors_reader heldout(trained / "heldout.safetensors");
  const io::model_input x = io::read_model_input(heldout, d, true);
  const rf::index_t b = x.batch, n = x.seq;
  std::vector<float> hidden(static_cast<std::size_t>(b * n * d)), out(hidden.size());
  const rf::tensor_view<float, 3> h(hidden.data(), {b, n, d});
  model.embeddings()->forward(rf::tensor_view<const std::int64_t, 2>(x.ids.data(), {b, n}), {}, h);
  rf::workspace ws = model.make_workspace(b, n);
  model.forward(h, rf::tensor_view<float, 3>(out.data(), {b, n, d}), ws, x.mask());

  const mlm_head head(io::safetensors_reader(trained / "model.safetensors"), model.config().encoder.layer_norm_eps);
  const std::vector<std::int64_t> labels = heldout.load_integers("labels");
  double total = 0;
  rf::index_t count = 0;
  for (rf::index_t t = 0; t < b * n; ++t) {
    if (labels[static_cast<std::size_t>(t)] < 0) continue;  // −100: not masked
    total += head.loss(out.data() + t * d, labels[static_cast<std::size_t>(t)]);
    ++count;
  }
  REQUIRE(count > 800);
  return {total / static_cast<double>(count), out};
}

// rms(a - b) / rms(b).
double relative_rms(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return std::sqrt(diff / norm);
}

}  // namespace

TEST_CASE("trained masked LM: int8 and bf16 products keep the held-out MLM loss", "[trained][int8][bf16]") {
  const heldout_result fp32 = heldout_run<rf::packed_products>();
  const heldout_result int8 = heldout_run<rf::int8_products>();
  const heldout_result bf16 = heldout_run<rf::bf16_products>();
  INFO(std::setprecision(9) << "held-out MLM loss: float " << fp32.loss << ", int8 " << int8.loss << ", bf16 "
                            << bf16.loss << "; encoder output vs float, relative rms: int8 "
                            << relative_rms(int8.hidden, fp32.hidden) << ", bf16 "
                            << relative_rms(bf16.hidden, fp32.hidden));
  // The narrow products did run: their outputs differ from float's.
  CHECK(relative_rms(int8.hidden, fp32.hidden) > 1e-4);
  CHECK(relative_rms(bf16.hidden, fp32.hidden) > 1e-4);
  // The model learned something: below the uniform guess over 260 tokens.
  CHECK(fp32.loss < 0.75 * std::log(260.0));
  // Dynamic per-row int8 activations and per-column int8 weights: within 2%
  // of float's loss, the bound published int8 BERTs keep on their tasks.
  CHECK(std::abs(int8.loss - fp32.loss) <= 0.02 * fp32.loss);
  // bf16 keeps 8 significant bits of every operand, more than int8 on these
  // rows' ranges: held to the same bound.
  CHECK(std::abs(bf16.loss - fp32.loss) <= 0.02 * fp32.loss);
}
