// The project's main job: what score reuse and symmetric attention save on a
// BERT-base encoder (d = 768, H = 12, d_ff = 3072, 12 layers), against vanilla
// attention and, when scripts/bench.sh ran them, against PyTorch and ONNX
// Runtime on the same weights and input.
//
//   reuseformer_compare export DIR [options]   writes DIR/model/{config.json,
//       model.safetensors} (the vanilla model), and per shape DIR/input_BxN and
//       DIR/output_BxN .safetensors (the input, hidden_states and an
//       attention_mask, and vanilla's float64 reference output), for the
//       peers to run and compare with.
//   reuseformer_compare run DIR [options]      times every variant, merges
//       DIR/peers_BxN.json where present, prints the table and writes
//       DIR/results.json and DIR/plot.gp (gnuplot: time against sequence length).
// options: --shapes 1x128,8x128,1x512,8x512  --ragged 8x32-512,8x16-128 (or none)
//          --threads T  --repeat R  --layers L  --peers COMMAND
// With --peers, run starts `COMMAND --serve --model DIR/model --input ...
// --out DIR/peers_BxN.json` (bench/peers/peers.py) for each shape and has it
// time one pass of every peer after each of our rounds (support/peer_process.hpp):
// peers and variants are then timed in alternation, in the same minutes.
//
// A ragged batch BxLO-HI is B sequences whose lengths are drawn once from the
// fixed seed, uniform in [LO, HI]. It is exported padded to the longest (with its
// attention_mask) for the peers, and timed three ways on vanilla BERT-base:
// padded (the mask, padded tokens computed), padding::skip (the same tensors,
// packed inside) and packed by the caller (tokens + offsets), plus the reuse and
// symmetric variants packed.
//
// Variants are timed round-robin (one forward of each in turn, R rounds), so
// that noise on a shared machine hits every variant alike. "Eigen products"
// is vanilla with Eigen's GEMM in place of ours (eigen::products): the gain of
// our kernel, measured. Every variant but that one also runs as ", bf16":
// the same model on bfloat16 weights and products (bf16_products), and as
// ", int8": on int8 weights and per-token quantized activations
// (int8_products). Their speed-up is against vanilla in float (what the
// precision gains), their time saved against vanilla in the same precision
// (what the variant gains at that precision), and their % peak of the
// measured peak of their dot product (support/peak_bf16.hpp, peak_int8.hpp).
// The peers run in float, except ONNX Runtime's quantized graph
// (onnxruntime-int8), held to the int8 rows' tolerance and timed against
// vanilla, int8.
//
// Every output is checked: each timed output of ours against the float64
// output of its model (the same parameters widened to double), each peer's
// against vanilla's, within the tolerance of its precision
// (support/tolerance.hpp). A non-finite or out-of-tolerance output is marked
// in the table and named at the end, and run exits 1.
#include "support/counting_new.hpp"
#include "support/resident_memory.hpp"
#include "support/hf_export.hpp"
#include "support/peak_bf16.hpp"
#include "support/peak_fma.hpp"
#include "support/peak_int8.hpp"
#include "support/peer_process.hpp"
#include "support/tolerance.hpp"

#include <reuseformer/eigen.hpp>
#include <reuseformer/io.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

namespace rf = reuseformer;
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // keys in the order written: readable results.json

namespace {

using reuseformer_bench::name_of;
using reuseformer_bench::precision;
using reuseformer_bench::tolerance;
using reuseformer_bench::tolerance_for;

constexpr std::uint64_t seed = 2024;

struct shape {
  rf::index_t batch, seq;
  [[nodiscard]] std::string tag() const { return std::to_string(batch) + "x" + std::to_string(seq); }
};

// B sequences with lengths uniform in [lo, hi], drawn once from the seed.
struct ragged_shape {
  rf::index_t batch, lo, hi;
  [[nodiscard]] std::string tag() const {
    return std::to_string(batch) + "x" + std::to_string(lo) + "-" + std::to_string(hi);
  }
};

struct options {
  std::string mode;
  fs::path dir;
  std::vector<shape> shapes = {{1, 128}, {8, 128}, {1, 512}, {8, 512}};
  std::vector<ragged_shape> ragged = {{8, 32, 512}, {8, 16, 128}};
  int threads = rf::max_threads(), repeat = 5;
  rf::index_t layers = 12;
  std::string peers;  // the peers' command, or empty
};

[[noreturn]] void usage(const char* program, const std::string& why) {
  std::fprintf(stderr,
               "%s: %s\nusage: %s export|run DIR [--shapes 1x128,8x512] [--ragged 8x32-512|none] [--threads T] "
               "[--repeat R] [--layers L] [--peers COMMAND]\n",
               program, why.c_str(), program);
  std::exit(2);
}

long positive(const char* program, const char* flag, const char* text) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || value < 1)
    usage(program, std::string(flag) + ": expected an integer >= 1, found '" + text + "'");
  return value;
}

options parse(int argc, char** argv) {
  if (argc < 3) usage(argv[0], "expected a mode and a directory");
  options o;
  o.mode = argv[1];
  if (o.mode != "export" && o.mode != "run") usage(argv[0], "mode: expected export or run, found '" + o.mode + "'");
  o.dir = argv[2];
  for (int i = 3; i < argc; i += 2) {
    if (i + 1 >= argc) usage(argv[0], std::string(argv[i]) + ": missing value");
    const char* value = argv[i + 1];
    if (!std::strcmp(argv[i], "--shapes")) {
      o.shapes.clear();
      std::istringstream list(value);
      for (std::string item; std::getline(list, item, ',');) {
        const auto x = item.find('x');
        if (x == std::string::npos) usage(argv[0], "--shapes: expected BxN, found '" + item + "'");
        o.shapes.push_back({positive(argv[0], "--shapes", item.substr(0, x).c_str()),
                            positive(argv[0], "--shapes", item.substr(x + 1).c_str())});
      }
    } else if (!std::strcmp(argv[i], "--ragged")) {
      o.ragged.clear();
      std::istringstream list(value);
      for (std::string item; std::strcmp(value, "none") && std::getline(list, item, ',');) {
        const auto x = item.find('x'), dash = item.find('-');
        if (x == std::string::npos || dash == std::string::npos || dash < x)
          usage(argv[0], "--ragged: expected BxLO-HI, found '" + item + "'");
        const ragged_shape r{positive(argv[0], "--ragged", item.substr(0, x).c_str()),
                             positive(argv[0], "--ragged", item.substr(x + 1, dash - x - 1).c_str()),
                             positive(argv[0], "--ragged", item.substr(dash + 1).c_str())};
        if (r.lo > r.hi) usage(argv[0], "--ragged: expected LO <= HI, found '" + item + "'");
        o.ragged.push_back(r);
      }
    } else if (!std::strcmp(argv[i], "--threads")) {
      o.threads = static_cast<int>(positive(argv[0], "--threads", value));
    } else if (!std::strcmp(argv[i], "--repeat")) {
      o.repeat = static_cast<int>(positive(argv[0], "--repeat", value));
    } else if (!std::strcmp(argv[i], "--layers")) {
      o.layers = positive(argv[0], "--layers", value);
    } else if (!std::strcmp(argv[i], "--peers")) {
      o.peers = value;
    } else {
      usage(argv[0], std::string("unknown option ") + argv[i]);
    }
  }
  return o;
}

rf::encoder_config bert_base(rf::index_t layers) {
  rf::encoder_config c;  // the defaults are BERT-base
  c.num_hidden_layers = layers;
  return c;
}

// The input of a shape: deterministic values in [-1, 1), no padding (every
// peer then does the same work on every token).
std::vector<float> input_for(const shape& s, rf::index_t d) {
  std::vector<float> x(static_cast<std::size_t>(s.batch * s.seq * d));
  for (std::size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>(static_cast<double>(i * 7919 % 1000) / 500.0 - 1.0);
  return x;
}

// A dense shape's attention_mask: all ones. Every row of its table, ours and
// the peers', is given it, so that all do the same work on the same inputs
// (the peers' graphs take a mask; ours then applies it too).
struct dense_mask {
  explicit dense_mask(const shape& s) : s(s), ones(static_cast<std::size_t>(s.batch * s.seq), 1) {}
  [[nodiscard]] rf::attention_mask view() const {
    return rf::tensor_view<const std::int64_t, 2>(ones.data(), {s.batch, s.seq});
  }
  shape s;
  std::vector<std::int64_t> ones;
};

// A ragged batch: its lengths, offsets, the padded input [B, N_max, d] with its
// mask (zeros at padding) and the same tokens packed [T, d].
struct ragged_batch {
  explicit ragged_batch(const ragged_shape& r, rf::index_t d) : shape_of(r) {
    std::mt19937_64 bits(seed);
    std::uniform_int_distribution<rf::index_t> length(r.lo, r.hi);
    offsets.push_back(0);
    for (rf::index_t b = 0; b < r.batch; ++b) {
      lengths.push_back(length(bits));
      offsets.push_back(offsets.back() + lengths.back());
    }
    padded_shape = {r.batch, *std::max_element(lengths.begin(), lengths.end())};
    const std::vector<float> values = input_for(padded_shape, d);
    padded.assign(values.size(), 0.0f);
    mask.assign(static_cast<std::size_t>(padded_shape.batch * padded_shape.seq), 0);
    for (rf::index_t b = 0; b < r.batch; ++b) {
      const rf::index_t first = b * padded_shape.seq * d, count = lengths[static_cast<std::size_t>(b)] * d;
      std::copy_n(values.begin() + first, count, padded.begin() + first);
      packed.insert(packed.end(), values.begin() + first, values.begin() + first + count);
      std::fill_n(mask.begin() + b * padded_shape.seq, lengths[static_cast<std::size_t>(b)], 1);
    }
  }
  [[nodiscard]] rf::index_t tokens() const { return offsets.back(); }
  // The real tokens' rows of the padded batch [B * N_max], in packed order.
  [[nodiscard]] std::vector<rf::index_t> real_tokens() const {
    std::vector<rf::index_t> rows;
    for (rf::index_t b = 0; b < shape_of.batch; ++b)
      for (rf::index_t j = 0; j < lengths[static_cast<std::size_t>(b)]; ++j) rows.push_back(b * padded_shape.seq + j);
    return rows;
  }
  [[nodiscard]] rf::attention_mask mask_view() const {
    return rf::tensor_view<const std::int64_t, 2>(mask.data(), {padded_shape.batch, padded_shape.seq});
  }

  ragged_shape shape_of;
  shape padded_shape{};
  std::vector<rf::index_t> lengths, offsets;
  std::vector<float> padded, packed;
  std::vector<std::int64_t> mask;
};

// How a ragged batch is run: padded (padded tokens computed), padded with
// padding::skip, or packed by the caller.
enum class ragged_form { padded, skip, packed };

// The float64 reference output of `config` (parameters fill_random(seed), the
// values every variant of it gets, widened exactly to double) on x [B, N, d]
// with `mask`, padded tokens computed. Built and freed before the timed
// variants, so that it adds nothing to their peak RSS.
std::vector<double> float64_output(const rf::encoder_config& config, const std::vector<float>& x, const shape& s,
                                   const rf::attention_mask& mask, int threads) {
  rf::encoder_parameters<double> wide(config);
  {
    rf::encoder_parameters<float> parameters(config);
    parameters.fill_random(seed);
    wide.assign_from(parameters);
  }
  const rf::any_encoder<double> model(config, wide.layers());
  const rf::index_t d = config.hidden_size;
  const std::vector<double> in(x.begin(), x.end());
  std::vector<double> out(in.size());
  rf::workspace ws = model.make_workspace(s.batch, s.seq, threads);
  model.forward(rf::tensor_view<const double, 3>(in.data(), {s.batch, s.seq, d}),
                rf::tensor_view<double, 3>(out.data(), {s.batch, s.seq, d}), ws, mask, rf::padding::compute);
  return out;
}

// How far an output is from its float64 reference, over the tokens compared.
struct output_error {
  double max_abs = 0;         // max |output - reference|
  double rms = 0;             // root mean square of output - reference
  double scale = 0;           // max |reference|: the outputs' scale (LayerNorm outputs, O(1))
  std::size_t nonfinite = 0;  // elements of the output that are NaN or infinite
  bool compared = false;      // false: nothing was compared (a peer without its difference)

  [[nodiscard]] double relative() const { return scale > 0 ? max_abs / scale : max_abs; }
  void merge(const output_error& e) {  // the worst of two passes
    max_abs = std::max(max_abs, e.max_abs);
    rms = std::max(rms, e.rms);
    scale = std::max(scale, e.scale);
    nonfinite = std::max(nonfinite, e.nonfinite);
    compared = compared || e.compared;
  }
};

// y's tokens against the reference [B * N, d]: token i of `tokens` is row
// tokens[i] of the reference, and row i of y when y is packed (tokens in
// order), row tokens[i] otherwise.
output_error error_of(const float* y, bool packed, const std::vector<double>& reference,
                      const std::vector<rf::index_t>& tokens, rf::index_t d) {
  output_error e;
  e.compared = true;
  double squares = 0;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const double* want = reference.data() + tokens[i] * d;
    const float* got = y + (packed ? static_cast<rf::index_t>(i) : tokens[i]) * d;
    for (rf::index_t j = 0; j < d; ++j) {
      if (!std::isfinite(got[j])) {
        ++e.nonfinite;
        continue;
      }
      const double diff = static_cast<double>(got[j]) - want[j];
      e.max_abs = std::max(e.max_abs, std::abs(diff));
      squares += diff * diff;
      e.scale = std::max(e.scale, std::abs(want[j]));
    }
  }
  if (!tokens.empty()) e.rms = std::sqrt(squares / static_cast<double>(tokens.size() * static_cast<std::size_t>(d)));
  return e;
}

// The outputs' checks of a run: each row's verdict, and the failures, which
// the run reports at its end (exit status 1, scripts/bench.sh then fails).
class output_checks {
 public:
  // The table's cell for `e` (error / tolerance, relative to the scale), and a
  // failure recorded when e is non-finite, missing or above t.
  std::string check(const std::string& shape_tag, const std::string& row, const output_error& e, const tolerance& t) {
    char cell[64];
    std::string why;
    if (!e.compared) {
      why = "no output compared with the float64 reference";
      std::snprintf(cell, sizeof cell, "FAIL: none");
    } else if (e.nonfinite > 0) {
      why = std::to_string(e.nonfinite) + " non-finite output elements";
      std::snprintf(cell, sizeof cell, "FAIL: %zu NaN/inf", e.nonfinite);
    } else if (!(e.relative() <= t.relative)) {
      char text[200];
      std::snprintf(
          text, sizeof text,
          "max |output - float64 reference| = %.3g, %.3g of max|reference| %.3g, above the tolerance %.3g (%s)",
          e.max_abs, e.relative(), e.scale, t.relative, t.basis.c_str());
      why = text;
      std::snprintf(cell, sizeof cell, "FAIL %.1e>%.1e", e.relative(), t.relative);
    } else {
      std::snprintf(cell, sizeof cell, "%.1e<=%.1e", e.relative(), t.relative);
    }
    if (!why.empty()) failures_.push_back(shape_tag + ", " + row + ": " + why);
    return cell;
  }
  static json record(const output_error& e, const tolerance& t) {
    return {{"max_abs_error", e.compared ? json(e.max_abs) : json()},
            {"rms_error", e.compared && e.nonfinite == 0 ? json(e.rms) : json()},
            {"error_scale", e.scale},
            {"relative_error", e.compared ? json(e.relative()) : json()},
            {"nonfinite_elements", e.nonfinite},
            {"tolerance", t.relative},
            {"tolerance_basis", t.basis}};
  }
  [[nodiscard]] const std::vector<std::string>& failures() const { return failures_; }

 private:
  std::vector<std::string> failures_;
};

// A peer's error as peers.py reports it (its max and rms |output - reference|
// or its count of non-finite elements); `reference` gives the scale.
output_error peer_error(const json& p, const std::vector<double>& reference) {
  output_error e;
  for (const double r : reference) e.scale = std::max(e.scale, std::abs(r));
  if (p.contains("nonfinite_elements")) {
    e.nonfinite = p["nonfinite_elements"].get<std::size_t>();
    e.compared = true;
  } else if (p.value("max_abs_diff_vs_reference", json()).is_number()) {
    e.max_abs = p["max_abs_diff_vs_reference"].get<double>();
    e.rms = p.value("rms_diff_vs_reference", std::nan(""));  // NaN: a peers.py that did not report it
    e.compared = true;
  }
  return e;
}

// Every token of a dense batch.
std::vector<rf::index_t> all_tokens(const shape& s) {
  std::vector<rf::index_t> t(static_cast<std::size_t>(s.batch * s.seq));
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<rf::index_t>(i);
  return t;
}

// The machine's measured peaks on the run's threads, per precision: the fp32
// FMA kernel (support/peak_fma.hpp), vdpbf16ps (support/peak_bf16.hpp; 0
// where the build lacks AVX512-BF16, whose bf16 products widen to fp32 FMAs
// and are then held to the FMA peak) and vpdpbusd (support/peak_int8.hpp; 0
// where the build lacks AVX512-VNNI: its int8 products run integer code that
// no peak measured here describes, and their rows show no % peak). Measured
// again after each shape's passes, keeping the best: a neighbour slowing the
// machine at one moment must not pass for the machine's peak (it would
// inflate "% peak").
struct peaks {
  explicit peaks(int threads)
      : fp32(reuseformer_bench::peak_gflops(threads)),
        bf16(reuseformer_bench::peak_bf16_gflops(threads)),
        int8(reuseformer_bench::peak_int8_gops(threads)) {}
  void measure_again(int threads) {
    fp32 = std::max(fp32, reuseformer_bench::detail::measure_peak(threads));
    bf16 = std::max(bf16, reuseformer_bench::detail::measure_peak_bf16(threads));
    int8 = std::max(int8, reuseformer_bench::detail::measure_peak_int8(threads));
  }
  struct peak {
    double gflops;     // 0: none measured for the precision
    const char* name;  // the kernel measured, printed beside each row's % peak
    // A rate's share of the peak in percent, null where there is no peak.
    [[nodiscard]] json percent(double rate) const { return gflops > 0 ? json(100 * rate / gflops) : json(); }
    // The table's "% peak" cell of a rate.
    [[nodiscard]] std::string cell(double rate) const {
      char text[16] = "-";
      if (gflops > 0) std::snprintf(text, sizeof text, "%.1f%%", 100 * rate / gflops);
      return text;
    }
  };
  [[nodiscard]] peak of(precision p) const {
    if (p == precision::int8) return {int8, int8 > 0 ? "int8 dot" : "no VNNI"};
    if (p == precision::bf16 && bf16 > 0) return {bf16, "bf16 dot"};
    return {fp32, "fp32 FMA"};
  }
  double fp32, bf16, int8;
};

// One variant: random parameters for its config (any score function), the
// model built on them (on our products, Eigen's, bf16 or int8), and its workspace for one shape.
struct variant {
  enum class products { own, eigen, bf16, int8 };
  using own_model = rf::any_encoder<float>;
  using eigen_model = rf::any_encoder<float, rf::simd::default_arch, rf::eigen::products>;
  using bf16_model = rf::any_encoder<float, rf::simd::default_arch, rf::bf16_products>;
  using int8_model = rf::any_encoder<float, rf::simd::default_arch, rf::int8_products>;
  using any_model = std::variant<own_model, eigen_model, bf16_model, int8_model>;

  template <class F>
  decltype(auto) on_model(F&& f) const {
    return std::visit(std::forward<F>(f), model);
  }

  // The model of models[model] (model_spec) on `backend`.
  variant(std::string variant_name, const rf::encoder_config& config, std::size_t model, const shape& s, int threads,
          products backend = products::own)
      : variant(std::move(variant_name), random_parameters(config), model, s, threads, backend) {}

  // `twin`'s model on another backend, viewing twin's parameters.
  variant(const variant& twin, std::string suffix, int threads, products backend)
      : variant(twin.name + suffix, twin.parameters, twin.spec, twin.input_shape, threads, backend) {}

  [[nodiscard]] precision arithmetic() const {
    if (backend == products::bf16) return precision::bf16;
    return backend == products::int8 ? precision::int8 : precision::fp32;
  }

  // x [B, N, d] with its attention mask [B, N] (the peers' inputs).
  void forward(const float* x, const rf::attention_mask& mask, float* y) {
    const rf::index_t d = parameters->config().hidden_size;
    on_model([&](const auto& m) {
      m.forward(rf::tensor_view<const float, 3>(x, {input_shape.batch, input_shape.seq, d}),
                rf::tensor_view<float, 3>(y, {input_shape.batch, input_shape.seq, d}), ws, mask);
    });
  }
  // The ragged batch `r` in form `f` (its padded shape is this variant's).
  void forward(const ragged_batch& r, ragged_form f, float* y) {
    const rf::index_t d = parameters->config().hidden_size;
    on_model([&](const auto& m) {
      if (f == ragged_form::packed) {
        m.forward(rf::tensor_view<const float, 2>(r.packed.data(), {r.tokens(), d}),
                  rf::tensor_view<float, 2>(y, {r.tokens(), d}), r.offsets, ws);
        return;
      }
      const rf::tensor_view<const float, 3> in(r.padded.data(), {input_shape.batch, input_shape.seq, d});
      const rf::tensor_view<float, 3> out(y, {input_shape.batch, input_shape.seq, d});
      m.forward(in, out, ws, r.mask_view(), f == ragged_form::skip ? rf::padding::skip : rf::padding::compute);
    });
  }
  [[nodiscard]] std::size_t held_bytes() const {
    return on_model([](const auto& m) { return m.parameter_bytes(); });
  }
  [[nodiscard]] std::size_t referenced_bytes() const {
    return on_model([](const auto& m) { return m.referenced_parameter_bytes(); });
  }

  std::string name;
  products backend;
  std::size_t spec;  // its model_spec: the float64 reference its outputs are checked against
  // The model views the parameters it does not pack (LayerNorm parameters,
  // pairwise factors): on the heap, they stay where they are when a variant moves.
  std::shared_ptr<rf::encoder_parameters<float>> parameters;
  any_model model;
  shape input_shape;
  rf::workspace ws;
  rf::analysis::encoder_cost cost;
  std::vector<double> ms;
  long heap_allocations = 0;
  output_error error;  // the worst of its timed outputs

 private:
  variant(std::string variant_name, std::shared_ptr<rf::encoder_parameters<float>> shared, std::size_t model,
          const shape& s, int threads, products backend)
      : name(std::move(variant_name)),
        backend(backend),
        spec(model),
        parameters(std::move(shared)),
        model(build(parameters->config(), parameters->layers(), backend)),
        input_shape(s),
        ws(on_model([&](const auto& m) { return m.make_workspace(s.batch, s.seq, threads); })),
        cost(on_model([&](const auto& m) { return rf::analysis::measure(m, s.batch, s.seq, threads); })) {}

  static std::shared_ptr<rf::encoder_parameters<float>> random_parameters(const rf::encoder_config& config) {
    auto p = std::make_shared<rf::encoder_parameters<float>>(config);
    p->fill_random(seed);
    return p;
  }

  static any_model build(const rf::encoder_config& config, const std::vector<rf::encoder_layer_weights<float>>& layers,
                         products backend) {
    if (backend == products::eigen) return any_model(std::in_place_index<1>, config, layers);
    if (backend == products::bf16) return any_model(std::in_place_index<2>, config, layers);
    if (backend == products::int8) return any_model(std::in_place_index<3>, config, layers);
    return any_model(std::in_place_index<0>, config, layers);
  }
};

rf::encoder_config with_score(rf::encoder_config c, rf::score_function score) {
  c.score = score;
  return c;
}

rf::encoder_config with_reuse(rf::encoder_config c, rf::index_t k, rf::index_t last) {
  const rf::index_t L = c.num_hidden_layers;
  c.reuse_schedule = rf::reference_reuse_schedule(k, std::min(last, L - 1), c.num_attention_heads, L);
  return c;
}

// A model of the table: its name and config; its parameters are
// fill_random(seed). Every variant is one of them on some product backend.
struct model_spec {
  std::string name;
  rf::encoder_config config;
};

// The models of the dense shapes, vanilla first.
std::vector<model_spec> dense_models(const options& o) {
  const rf::index_t L = o.layers, last = L - 1;
  using enum rf::score_function;
  std::vector<model_spec> m{{"vanilla", bert_base(L)}};
  for (const rf::index_t k : {3, 6, 12})
    m.push_back(
        {"reuse K=" + std::to_string(k) + ", layers 1-" + std::to_string(last), with_reuse(bert_base(L), k, last)});
  m.push_back({"reuse TF default (-1, 6)", with_reuse(bert_base(L), -1, 6)});
  m.push_back({"symmetric", with_score(bert_base(L), symmetric)});
  m.push_back({"pairwise", with_score(bert_base(L), pairwise)});
  m.push_back({"pairwise + reuse K=6", with_score(with_reuse(bert_base(L), 6, last), pairwise)});
  return m;
}

// Every model on our products, vanilla also on Eigen's, then every model on
// bf16 products, then on int8 products. Every precision's first variant is its
// vanilla: the baseline of its savings.
std::vector<variant> variants_for(const std::vector<model_spec>& models, const shape& s, const options& o) {
  std::vector<variant> v;
  v.reserve(3 * models.size() + 1);  // the bf16 and int8 twins view their fp32 twin's parameters
  for (std::size_t m = 0; m < models.size(); ++m) {
    v.emplace_back(models[m].name, models[m].config, m, s, o.threads);
    if (m == 0) v.emplace_back("Eigen products", models[m].config, m, s, o.threads, variant::products::eigen);
  }
  const std::size_t fp32_variants = v.size();
  for (const auto& [suffix, backend] :
       {std::pair{", bf16", variant::products::bf16}, std::pair{", int8", variant::products::int8}})
    for (std::size_t i = 0; i < fp32_variants; ++i)
      if (v[i].backend == variant::products::own) v.emplace_back(v[i], suffix, o.threads, backend);
  return v;
}

// export: the vanilla model in Hugging Face layout, and per shape the input
// (hidden_states and attention_mask) and vanilla's float64 reference output,
// which peers.py compares the peers' outputs with.
void export_model(const options& o) {
  const rf::encoder_config config = bert_base(o.layers);
  {
    rf::encoder_parameters<float> parameters(config);
    parameters.fill_random(seed);
    bench_support::export_hf_model(o.dir / "model", config, parameters.layers());
  }
  const rf::index_t d = config.hidden_size;
  const auto write = [&](const std::string& tag, const shape& s, const std::vector<float>& x,
                         const std::vector<std::int64_t>& mask) {
    const rf::attention_mask mask_view = rf::tensor_view<const std::int64_t, 2>(mask.data(), {s.batch, s.seq});
    rf::io::write_safetensors(o.dir / ("input_" + tag + ".safetensors"),
                              {rf::io::make_entry("hidden_states", x, {s.batch, s.seq, d}),
                               rf::io::make_entry("attention_mask", mask, {s.batch, s.seq})});
    rf::io::write_safetensors(
        o.dir / ("output_" + tag + ".safetensors"),
        {rf::io::make_entry("last_hidden_state", float64_output(config, x, s, mask_view, o.threads),
                            {s.batch, s.seq, d})});
  };
  for (const shape& s : o.shapes) write(s.tag(), s, input_for(s, d), dense_mask(s).ones);
  for (const ragged_shape& r : o.ragged) {  // padded to the longest, with the mask
    const ragged_batch batch(r, d);
    write(r.tag(), batch.padded_shape, batch.padded, batch.mask);
  }
  std::printf("exported the vanilla model (%td layers) and %zu input/reference pairs to %s\n", o.layers,
              o.shapes.size() + o.ragged.size(), o.dir.c_str());
}

struct stats {
  double median, min, max;
};

stats summarise(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

std::string mib(std::size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", static_cast<double>(bytes) / (1 << 20));
  return text;
}

// Progress on stderr while a shape's passes run: on a terminal one line that
// updates in place, otherwise (CI logs) one line per round.
class progress {
 public:
  progress(const shape& s, int rounds, int variants)
      : tag_(s.tag()), rounds_(rounds), variants_(variants), tty_(isatty(fileno(stderr)) != 0), start_(clock::now()) {}

  // Called before each timed pass.
  void next(const std::string& variant, int round) {
    const int passes = rounds_ * variants_;
    const double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
    const double left = done_ > 0 ? elapsed / done_ * (passes - done_) : 0;
    if (tty_)
      std::fprintf(stderr, "\r\033[K%s: round %d of %d, %s (pass %d of %d), %.0f s elapsed, ~%.0f s left", tag_.c_str(),
                   round + 1, rounds_, variant.c_str(), done_ + 1, passes, elapsed, left);
    else if (done_ % variants_ == 0)
      std::fprintf(stderr, "%s: round %d of %d, %.0f s elapsed, ~%.0f s left\n", tag_.c_str(), round + 1, rounds_,
                   elapsed, left);
    ++done_;
  }
  // Clears the terminal line before the table is printed.
  void finish() const {
    if (tty_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  using clock = std::chrono::steady_clock;
  std::string tag_;
  int rounds_, variants_, done_ = 0;
  bool tty_;
  clock::time_point start_;
};

// The peers of a shape (input and reference DIR/{input,output}_TAG.safetensors),
// timed in turns with our rounds, or null without --peers. Started before our
// variants are built: the child builds and warms up its own meanwhile.
std::unique_ptr<reuseformer_bench::peer_process> start_peers(const options& o, const std::string& tag,
                                                             const std::string& which = "") {
  if (o.peers.empty()) return nullptr;
  const auto quoted = [](const fs::path& p) { return "'" + p.string() + "'"; };
  return std::make_unique<reuseformer_bench::peer_process>(
      o.peers + " --serve --model " + quoted(o.dir / "model") + " --input " +
      quoted(o.dir / ("input_" + tag + ".safetensors")) + " --reference " +
      quoted(o.dir / ("output_" + tag + ".safetensors")) + " --threads " + std::to_string(o.threads) + " --out " +
      quoted(o.dir / ("peers_" + tag + ".json")) + (which.empty() ? "" : " --peers " + which));
}

// The vanilla variant of precision p (variants_for puts it first).
const variant& baseline_of(const std::vector<variant>& variants, precision p) {
  return *std::find_if(variants.begin(), variants.end(), [&](const variant& u) { return u.arithmetic() == p; });
}

// The precision a peer's entry names ("precision", fp32 when absent).
precision precision_of_peer(const std::string& file, const std::string& peer, const json& p) {
  const std::string named = p.value("precision", std::string("fp32"));
  for (const precision candidate : {precision::fp32, precision::bf16, precision::int8})
    if (named == name_of(candidate)) return candidate;
  throw std::runtime_error(file + ": peer " + peer + ": precision: expected fp32, bf16 or int8, found '" + named + "'");
}

// run: one table per shape; returns the shape's JSON record. `peak` is measured
// again after the shape's passes.
json run_shape(const shape& s, const options& o, peaks& peak, output_checks& checks) {
  const auto peers = start_peers(o, s.tag());
  const std::vector<model_spec> models = dense_models(o);
  const std::vector<float> x = input_for(s, 768);
  const dense_mask mask(s);
  std::fprintf(stderr, "%s: the float64 reference of each model\n", s.tag().c_str());
  std::vector<std::vector<double>> references;
  for (const model_spec& m : models) references.push_back(float64_output(m.config, x, s, mask.view(), o.threads));
  std::fprintf(stderr, "%s: building the variants (random weights, packed)\n", s.tag().c_str());
  std::vector<variant> variants = variants_for(models, s, o);
  const std::vector<rf::index_t> tokens = all_tokens(s);
  std::vector<float> y(x.size());
  progress report(s, o.repeat, static_cast<int>(variants.size()));
  for (variant& v : variants) v.forward(x.data(), mask.view(), y.data());  // warm-up: first-touch pages, thread pool
  if (peers) peers->ready();
  for (int r = 0; r < o.repeat; ++r) {
    for (std::size_t k = 0; k < variants.size(); ++k) {
      variant& v = variants[(k + static_cast<std::size_t>(r)) % variants.size()];  // rotate the order
      report.next(v.name, r);
      counting::allocations = 0;
      counting::enabled = true;
      const auto start = std::chrono::steady_clock::now();
      v.forward(x.data(), mask.view(), y.data());
      const auto stop = std::chrono::steady_clock::now();
      counting::enabled = false;
      v.heap_allocations += counting::allocations.load();
      v.ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
      v.error.merge(error_of(y.data(), false, references[v.spec], tokens, 768));
    }
    if (peers) peers->round();
  }
  if (peers) peers->finish();
  report.finish();
  peak.measure_again(o.threads);
  const stats base = summarise(variants[0].ms);
  std::printf(
      "\nbatch %td x seq %td, %d thread(s), %d rounds; peak on %d thread(s): fp32 FMA %.0f GFLOP/s, bf16 dot %s, "
      "int8 dot %s\n",
      s.batch, s.seq, o.threads, o.repeat, o.threads, peak.fp32,
      peak.bf16 > 0 ? (std::to_string(std::lround(peak.bf16)) + " GFLOP/s").c_str()
                    : "not in this build (bf16 rows: % of the fp32 FMA peak)",
      peak.int8 > 0 ? (std::to_string(std::lround(peak.int8)) + " GOP/s").c_str()
                    : "not in this build (int8 rows: no % peak)");
  std::printf(
      "inputs: hidden_states [%td, %td, 768] and an all-ones attention_mask [%td, %td], the same for every "
      "row (ours and the peers')\n",
      s.batch, s.seq, s.batch, s.seq);
  std::printf(
      "speed-up: against vanilla in float; saved/model: time saved / multiply-adds removed against vanilla "
      "of the same precision (lowest..highest saving of one round); error/tol: max |output - float64 "
      "reference| over max|reference|, worst timed pass, against its tolerance\n");
  std::printf("%-32s %26s %8s %20s %9s %8s %16s %10s %9s %12s %14s %7s  %s\n", "variant", "median ms (min-max)",
              "speed-up", "saved/model (rounds)", "GMAC", "GFLOP/s", "% peak (of)", "params MiB", "held MiB",
              "workspace MiB", "reuse-state MiB", "allocs", "error/tol");
  json record = {{"batch", s.batch}, {"seq", s.seq}, {"variants", json::array()}};
  for (const variant& v : variants) {
    const stats t = summarise(v.ms);
    const double gflops = 2 * v.cost.multiply_adds / (t.median * 1e6);
    const peaks::peak row_peak = peak.of(v.arithmetic());
    // The share of vanilla's time saved, against the share of its multiply-adds
    // removed, vanilla being the one of v's precision (a bf16 variant against
    // vanilla in bf16: the bf16 speed-up is not the variant's saving); then the
    // lowest and highest saving of a single round. A round times every variant
    // once, so a pass and vanilla's of the same round saw the same minutes of
    // the machine: that range says which savings the run resolves from its noise.
    const variant& vanilla = baseline_of(variants, v.arithmetic());
    const double saved = 1 - t.median / summarise(vanilla.ms).median;
    const double predicted = 1 - v.cost.multiply_adds / vanilla.cost.multiply_adds;
    std::vector<double> saved_per_round(v.ms.size());
    for (std::size_t r = 0; r < v.ms.size(); ++r) saved_per_round[r] = 1 - v.ms[r] / vanilla.ms[r];
    const auto [least, most] = std::minmax_element(saved_per_round.begin(), saved_per_round.end());
    const auto percent = [](double share) { return static_cast<int>(std::lround(100 * share)); };
    char savings[64] = "-";
    if (predicted > 0)
      std::snprintf(savings, sizeof savings, "%d/%d%% (%d..%d)", percent(saved), percent(predicted), percent(*least),
                    percent(*most));
    const tolerance tol = tolerance_for(v.arithmetic(), models[v.spec].config, s.seq);
    const std::string verdict = checks.check(s.tag(), v.name, v.error, tol);
    std::printf("%-32s %9.1f (%7.1f-%7.1f) %7.2fx %20s %9.1f %8.1f %7s %-8s %10s %9s %13s %15s %7ld  %s\n",
                v.name.c_str(), t.median, t.min, t.max, base.median / t.median, savings, v.cost.multiply_adds / 1e9,
                gflops, row_peak.cell(gflops).c_str(), row_peak.name, mib(v.cost.parameter_bytes).c_str(),
                mib(v.held_bytes()).c_str(), mib(v.cost.workspace_bytes).c_str(), mib(v.cost.reuse_state_bytes).c_str(),
                v.heap_allocations, verdict.c_str());
    record["variants"].push_back({{"name", v.name},
                                  {"precision", name_of(v.arithmetic())},
                                  {"ms", v.ms},
                                  {"median_ms", t.median},
                                  {"min_ms", t.min},
                                  {"max_ms", t.max},
                                  {"speedup_over_vanilla", base.median / t.median},
                                  {"savings_baseline", vanilla.name},
                                  {"time_saved_share", saved},
                                  {"time_saved_share_per_round", saved_per_round},
                                  {"predicted_saved_share", predicted},
                                  {"multiply_adds", v.cost.multiply_adds},
                                  {"gflops", gflops},
                                  {"peak_kernel", row_peak.name},
                                  {"peak_gflops", row_peak.gflops},
                                  {"percent_of_peak", row_peak.percent(gflops)},
                                  {"parameter_bytes", v.cost.parameter_bytes},
                                  {"held_parameter_bytes", v.held_bytes()},
                                  {"referenced_parameter_bytes", v.referenced_bytes()},
                                  {"workspace_bytes", v.cost.workspace_bytes},
                                  {"reuse_state_bytes", v.cost.reuse_state_bytes},
                                  {"heap_allocations_during_forward", v.heap_allocations},
                                  {"output_check", output_checks::record(v.error, tol)}});
  }

  // Peers, from bench/peers/peers.py when scripts/bench.sh ran it for this shape:
  // vanilla in its precision ("precision": float, or ONNX Runtime's int8 graph),
  // held to that precision's tolerance and timed against our vanilla of it.
  const fs::path peers_file = o.dir / ("peers_" + s.tag() + ".json");
  if (fs::exists(peers_file)) {
    const json peers = json::parse(std::ifstream(peers_file)).value("peers", json::object());
    record["peers"] = peers;
    for (const auto& [name, p] : peers.items()) {
      if (p.contains("error") || !p.value("median_ms", json()).is_number()) {
        std::printf("%-32s %s\n", name.c_str(), p.value("error", std::string("no timed runs")).c_str());
        continue;
      }
      const precision arithmetic = precision_of_peer(peers_file.string(), name, p);
      const variant& ours = baseline_of(variants, arithmetic);
      const double median = p["median_ms"].get<double>(), ours_median = summarise(ours.ms).median;
      const double gflops = 2 * ours.cost.multiply_adds / (median * 1e6);
      const peaks::peak row_peak = peak.of(arithmetic);
      const output_error e = peer_error(p, references[0]);
      const tolerance tol = tolerance_for(arithmetic, models[0].config, s.seq);
      const std::string verdict = checks.check(s.tag(), "peer " + name, e, tol);
      // A float peer's time over ours; for a quantized peer, ours over its
      // (issue targets read "ours at most 0.8 of ONNX Runtime int8's"), with
      // its errors beside ours: it trades accuracy for time.
      char ratio[200];
      if (arithmetic == precision::fp32)
        std::snprintf(ratio, sizeof ratio, "its time / %s's: %.2f", ours.name.c_str(), median / ours_median);
      else
        std::snprintf(ratio, sizeof ratio, "%s / its time: %.2f; error rms %.2g, max %.2g (%s: rms %.2g, max %.2g)",
                      ours.name.c_str(), ours_median / median, e.rms, e.max_abs, ours.name.c_str(), ours.error.rms,
                      ours.error.max_abs);
      std::printf("%-32s %9.1f (%7.1f-%7.1f) %7.2fx %20s %9.1f %8.1f %7s %-8s %10s %9s %13s %15s %7s  %s   %s\n",
                  (name + " " + p.value("version", "")).c_str(), median, p["min_ms"].get<double>(),
                  p["max_ms"].get<double>(), base.median / median, "", ours.cost.multiply_adds / 1e9, gflops,
                  row_peak.cell(gflops).c_str(), row_peak.name, "", "", "", "", "", verdict.c_str(), ratio);
      record["peers"][name]["output_check"] = output_checks::record(e, tol);
      record["peers"][name]["baseline"] = ours.name;
      record["peers"][name]["time_over_baseline"] = median / ours_median;
    }
  } else {
    std::printf("(no %s: run scripts/bench.sh for PyTorch and ONNX Runtime rows)\n", peers_file.c_str());
  }
  // Every variant of the shape is alive at once, each with its random
  // parameters and its packed copy of them.
  record["peak_rss_bytes"] = resident_memory::peak_bytes();
  std::printf("peak RSS so far %s MiB (%zu models, each: checkpoint tensors + what the model holds)\n",
              mib(resident_memory::peak_bytes()).c_str(), variants.size());
  std::fflush(stdout);  // the table before the next shape's progress lines (stderr)
  return record;
}

// run, ragged: one table per ragged batch; returns its JSON record.
json run_ragged(const ragged_shape& r, const options& o, output_checks& checks) {
  const ragged_batch batch(r, 768);
  const shape& s = batch.padded_shape;
  // Padded PyTorch and ONNX Runtime, and PyTorch's nested tensors (padding skipped).
  const auto peers = start_peers(o, r.tag(), "pytorch,pytorch-nested,onnxruntime");
  struct run {
    std::string name;
    std::size_t model;  // index into models
    ragged_form form;
    std::vector<double> ms;
    output_error error{};  // at the real tokens, the worst timed pass
  };
  const std::vector<model_spec> specs{{"vanilla", bert_base(o.layers)},
                                      {"reuse TF default (-1, 6)", with_reuse(bert_base(o.layers), -1, 6)},
                                      {"symmetric", with_score(bert_base(o.layers), rf::score_function::symmetric)}};
  std::fprintf(stderr, "%s: the float64 reference of each model\n", r.tag().c_str());
  std::vector<std::vector<double>> references;
  for (const model_spec& m : specs)
    references.push_back(float64_output(m.config, batch.padded, s, batch.mask_view(), o.threads));
  std::fprintf(stderr, "%s: building the variants (lengths drawn from seed %llu)\n", r.tag().c_str(),
               static_cast<unsigned long long>(seed));
  std::vector<variant> models;
  for (std::size_t m = 0; m < specs.size(); ++m) models.emplace_back(specs[m].name, specs[m].config, m, s, o.threads);
  std::vector<run> runs{{"vanilla, padded", 0, ragged_form::padded, {}},
                        {"vanilla, padding::skip", 0, ragged_form::skip, {}},
                        {"vanilla, packed", 0, ragged_form::packed, {}},
                        {"reuse TF default, padded", 1, ragged_form::padded, {}},
                        {"reuse TF default, packed", 1, ragged_form::packed, {}},
                        {"symmetric, padded", 2, ragged_form::padded, {}},
                        {"symmetric, packed", 2, ragged_form::packed, {}}};
  const std::vector<rf::index_t> real_tokens = batch.real_tokens();
  std::vector<float> y(batch.padded.size());
  progress report({s.batch, s.seq}, o.repeat, static_cast<int>(runs.size()));
  long allocations = 0;
  for (run& v : runs) models[v.model].forward(batch, v.form, y.data());  // warm-up
  if (peers) peers->ready();
  for (int round = 0; round < o.repeat; ++round) {
    for (std::size_t k = 0; k < runs.size(); ++k) {
      run& v = runs[(k + static_cast<std::size_t>(round)) % runs.size()];
      report.next(v.name, round);
      counting::allocations = 0;
      counting::enabled = true;
      const auto start = std::chrono::steady_clock::now();
      models[v.model].forward(batch, v.form, y.data());
      const auto stop = std::chrono::steady_clock::now();
      counting::enabled = false;
      allocations += counting::allocations.load();
      v.ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
      v.error.merge(error_of(y.data(), v.form == ragged_form::packed, references[v.model], real_tokens, 768));
    }
    if (peers) peers->round();
  }
  if (peers) peers->finish();
  report.finish();

  std::printf("\nragged batch %s: lengths", r.tag().c_str());
  for (const rf::index_t n : batch.lengths) std::printf(" %td", n);
  std::printf(
      " (seed %llu); %td real tokens of %td padded (%.0f%% padding); %d thread(s), %d rounds, %ld allocations\n",
      static_cast<unsigned long long>(seed), batch.tokens(), s.batch * s.seq,
      100.0 * (1 - double(batch.tokens()) / double(s.batch * s.seq)), o.threads, o.repeat, allocations);
  std::printf(
      "error/tol: max |output - float64 reference| at the real tokens over max|reference| (peers: at every "
      "position, pytorch-nested at the real tokens), against its tolerance\n");
  std::printf("%-28s %26s %14s %16s  %s\n", "variant", "median ms (min-max)", "/ padded", "us / real token",
              "error/tol");
  json record = {{"ragged", r.tag()},
                 {"batch", s.batch},
                 {"seq", s.seq},
                 {"lengths", batch.lengths},
                 {"tokens", batch.tokens()},
                 {"padded_tokens", s.batch * s.seq},
                 {"heap_allocations_during_forward", allocations},
                 {"variants", json::array()}};
  for (const run& v : runs) {
    const stats t = summarise(v.ms);
    const double padded = summarise(runs[v.model == 0 ? 0 : v.model == 1 ? 3 : 5].ms).median;
    const tolerance tol = tolerance_for(precision::fp32, specs[v.model].config, s.seq);
    const std::string verdict = checks.check(r.tag(), v.name, v.error, tol);
    std::printf("%-28s %9.1f (%7.1f-%7.1f) %13.2fx %16.1f  %s\n", v.name.c_str(), t.median, t.min, t.max,
                t.median / padded, 1e3 * t.median / double(batch.tokens()), verdict.c_str());
    record["variants"].push_back({{"name", v.name},
                                  {"ms", v.ms},
                                  {"median_ms", t.median},
                                  {"min_ms", t.min},
                                  {"max_ms", t.max},
                                  {"time_over_padded", t.median / padded},
                                  {"us_per_real_token", 1e3 * t.median / double(batch.tokens())},
                                  {"output_check", output_checks::record(v.error, tol)}});
  }
  const fs::path peers_file = o.dir / ("peers_" + r.tag() + ".json");
  if (fs::exists(peers_file)) {
    const json peers = json::parse(std::ifstream(peers_file)).value("peers", json::object());
    record["peers"] = peers;
    const double packed = summarise(runs[2].ms).median;
    for (const auto& [name, p] : peers.items()) {
      if (p.contains("error") || !p.value("median_ms", json()).is_number()) {
        std::printf("%-28s %s\n", name.c_str(), p.value("error", std::string("no timed runs")).c_str());
        continue;
      }
      const double median = p["median_ms"].get<double>();
      const output_error e = peer_error(p, references[0]);
      const tolerance tol = tolerance_for(precision::fp32, specs[0].config, s.seq);
      const std::string verdict = checks.check(r.tag(), "peer " + name, e, tol);
      std::printf("%-28s %9.1f (%7.1f-%7.1f) %14s %16s  %s   vanilla packed / it: %.2f; %s\n",
                  (name + " " + p.value("version", "")).c_str(), median, p["min_ms"].get<double>(),
                  p["max_ms"].get<double>(), "", "", verdict.c_str(), packed / median,
                  p.value("path", std::string("")).c_str());
      record["peers"][name]["output_check"] = output_checks::record(e, tol);
    }
  } else {
    std::printf("(no %s: run scripts/bench.sh for PyTorch and ONNX Runtime rows)\n", peers_file.c_str());
  }
  std::fflush(stdout);
  return record;
}

// The time per real token of each packed ragged batch against the dense 8x512
// shape's vanilla time per token, when both ran.
void per_token_summary(const json& shapes, const json& ragged) {
  for (const json& s : shapes) {
    if (s["batch"] != 8 || s["seq"] != 512) continue;
    const double dense = 1e3 * s["variants"][0]["median_ms"].get<double>() / (8 * 512);
    for (const json& r : ragged)
      std::printf("%s vanilla packed: %.1f us per real token, %.2fx dense 8x512's %.1f us per token\n",
                  r["ragged"].get<std::string>().c_str(), r["variants"][2]["us_per_real_token"].get<double>(),
                  r["variants"][2]["us_per_real_token"].get<double>() / dense, dense);
  }
}

// A gnuplot script with its data inline, drawing two pictures:
//   speedup.png  bars of each variant's speed-up over vanilla, one group per
//                shape, with the cost model's prediction (vanilla's multiply-adds
//                over the variant's) marked beside each bar;
//   memory.png   each variant's parameter, workspace and reuse-state bytes at
//                the largest shape.
void write_plot(const json& shapes, rf::index_t layers, const fs::path& dir) {
  std::ofstream gp(dir / "plot.gp");
  const auto quoted = [](const std::string& text) { return "\"" + text + "\""; };
  const json& first = shapes.front()["variants"];
  // The bars start below the slowest variant (the Eigen products row runs at
  // about 0.7x), at 0.8 or lower in steps of 0.1, so every bar shows.
  double slowest = 1;
  for (const json& s : shapes)
    for (const json& v : s["variants"])
      slowest = std::min(slowest, s["variants"][0]["median_ms"].get<double>() / v["median_ms"].get<double>());
  const double floor_at = std::min(0.8, std::floor(slowest * 10 - 1) / 10);
  gp << "# gnuplot " << (dir / "plot.gp").string() << "  (written by reuseformer_compare)\n"
     << "set terminal pngcairo size 1100,560 font ',10'\nset output '" << (dir / "speedup.png").string() << "'\n"
     << "set title 'BERT-base encoder (" << layers << " layers): speed-up over vanilla (bars: measured, "
     << "dots: predicted from multiply-adds)'\n"
     << "set style data histogram\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
     << "set boxwidth 0.9\nset grid ytics\nset ylabel 'speed-up over vanilla'\nset yrange [" << std::max(0.0, floor_at)
     << ":*]\n"
     << "set key outside right top vertical font ',9'\nset xtics nomirror\n";
  // Data block: one row per shape; columns: measured, predicted per variant (vanilla skipped).
  gp << "$speedup << EOD\nshape";
  for (std::size_t v = 1; v < first.size(); ++v) gp << " " << quoted(first[v]["name"].get<std::string>()) << " pred";
  gp << "\n";
  for (const json& s : shapes) {
    gp << s["batch"].get<rf::index_t>() << "x" << s["seq"].get<rf::index_t>();
    const json& vs = s["variants"];
    const double base_ms = vs[0]["median_ms"].get<double>(), base_macs = vs[0]["multiply_adds"].get<double>();
    for (std::size_t v = 1; v < vs.size(); ++v)
      gp << " " << base_ms / vs[v]["median_ms"].get<double>() << " "
         << base_macs / vs[v]["multiply_adds"].get<double>();
    gp << "\n";
  }
  gp << "EOD\n";
  const std::size_t bars = first.size() - 1;
  gp << "plot ";
  for (std::size_t v = 0; v < bars; ++v)
    gp << (v ? ", " : "") << "$speedup using " << 2 + 2 * v << ":xtic(1) title columnhead(" << 2 + 2 * v << ")";
  // The predictions, as points on their bars: cluster i is centred at x = i (the
  // header line counts as row 0 here),
  // its bars 1 / (bars + gap) apart.
  for (std::size_t v = 0; v < bars; ++v)
    gp << ", $speedup using ($0 - 1 + (" << v << " - " << (bars - 1) / 2.0 << ") / " << bars + 1 << ".0):" << 3 + 2 * v
       << " with points pt 7 ps 0.8 lc rgb 'black' notitle";
  gp << "\n";

  const json& largest = shapes.back();
  gp << "set output '" << (dir / "memory.png").string() << "'\n"
     << "set title 'Memory per variant at batch " << largest["batch"].get<rf::index_t>() << " x seq "
     << largest["seq"].get<rf::index_t>() << " (MiB)'\nset style histogram rowstacked\nset yrange [0:*]\n"
     << "set ylabel 'MiB'\nset xtics rotate by -30 font ',9'\nset key outside top center horizontal\n$memory << EOD\n"
     << "variant parameters workspace reuse-state\n";
  for (const json& v : largest["variants"]) {
    const double reuse = v["reuse_state_bytes"].get<double>() / (1 << 20);
    gp << quoted(v["name"].get<std::string>()) << " " << v["held_parameter_bytes"].get<double>() / (1 << 20) << " "
       << v["workspace_bytes"].get<double>() / (1 << 20) - reuse << " " << reuse << "\n";
  }
  gp << "EOD\nplot $memory using 2:xtic(1) title 'parameters (held)', '' using 3 title 'workspace (without reuse "
        "state)', "
        "'' using 4 title 'reuse state'\n";
}

// Returns the exit status: 1 when an output, ours or a peer's, failed its check.
int run(const options& o) {
  peaks peak(o.threads);
  output_checks checks;
  std::printf("reuseformer %s | BERT-base encoder (d=768, H=12, d_ff=3072, L=%td) | SIMD %s | float\n", rf::version,
              o.layers, rf::simd::arch_name<rf::simd::default_arch>());
  json shapes = json::array();
  for (const shape& s : o.shapes) shapes.push_back(run_shape(s, o, peak, checks));
  json ragged = json::array();
  for (const ragged_shape& r : o.ragged) ragged.push_back(run_ragged(r, o, checks));
  per_token_summary(shapes, ragged);
  fs::create_directories(o.dir);
  const json results = {{"library", std::string("reuseformer ") + rf::version},
                        {"simd", rf::simd::arch_name<rf::simd::default_arch>()},
                        {"threads", o.threads},
                        {"repeat", o.repeat},
                        {"layers", o.layers},
                        {"peak_gflops", peak.fp32},
                        {"peak_bf16_gflops", peak.bf16},
                        {"peak_int8_gops", peak.int8},
                        {"peak_threads", o.threads},
                        {"shapes", shapes},
                        {"ragged", ragged}};
  std::ofstream(o.dir / "results.json") << results.dump(2) << "\n";
  write_plot(shapes, o.layers, o.dir);
  std::printf("\nwrote %s and %s\n", (o.dir / "results.json").c_str(), (o.dir / "plot.gp").c_str());
  for (const std::string& failure : checks.failures())
    std::fprintf(stderr, "output check failed: %s\n", failure.c_str());
  if (!checks.failures().empty()) {
    std::fprintf(stderr,
                 "error: %zu output(s) out of tolerance or not finite (see above); the times of such rows mean "
                 "nothing\n",
                 checks.failures().size());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const options o = parse(argc, argv);
  if (o.mode == "export") {
    export_model(o);
    return 0;
  }
  return run(o);
} catch (const std::exception& e) {  // reuseformer::error, and JSON/filesystem errors on the peers' files
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
