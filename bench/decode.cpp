// Incremental causal decoding on a BERT-base-sized causal stack (d = 768,
// H = 12, d_ff = 3072, 12 layers, post-LN): what score reuse and symmetric /
// pairwise scores save per generated token, in time and in cache bytes.
//
//   reuseformer_decode [--batches 1,8] [--prompt 512] [--steps 128] [--threads 2]
//                      [--layers 12] [--peers COMMAND --dir DIR] [--json FILE]
//
// Per batch size every variant is prefilled with the same prompt, then the
// steps are timed round-robin (one step of each variant in turn), so that noise
// on a shared machine hits every variant alike. Reported per variant: the
// median (min, max) time of a step, time per generated token (step / B),
// tokens/s, the cache's bytes (checked against the cost model's figure), and
// the time saved against vanilla beside what the cost model predicts from bytes
// read and from multiply-adds per token at the mean context length.
//
// With --peers (bench/peers/decode_peer.py), the vanilla model is exported to
// DIR/model and, per batch size, the prompt and the tokens of every step to
// DIR/input_B.safetensors; `COMMAND --serve --model ... --input ...` then runs
// in a child (support/peer_process.hpp) that takes one step after each of our
// rounds, on the same weights and inputs. Its step outputs must agree with
// vanilla's within twice the float tolerance (support/tolerance.hpp: each is
// that close to the exact value); otherwise the program exits 1, after the
// table.
#include <reuseformer/io.hpp>
#include <reuseformer/reuseformer.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "support/hf_export.hpp"
#include "support/peer_process.hpp"
#include "support/tolerance.hpp"

namespace rf = reuseformer;
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

constexpr std::uint64_t seed = 2024;  // bench/compare.cpp's: the same vanilla weights

struct options {
  std::vector<rf::index_t> batches{1, 8};
  rf::index_t prompt = 512, steps = 128, layers = 12;
  int threads = 2;
  fs::path dir, json_out;
  std::string peers;  // the peer's command, or empty
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "reuseformer_decode: %s\nusage: reuseformer_decode [--batches 1,8] [--prompt N] [--steps S] "
               "[--threads T] [--layers L] [--peers COMMAND --dir DIR] [--json FILE]\n",
               why.c_str());
  std::exit(2);
}

long positive(const char* flag, const std::string& text) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < 1)
    usage(std::string(flag) + ": expected an integer >= 1, found '" + text + "'");
  return value;
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) usage(std::string(argv[i]) + ": missing value");
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--batches") {
      o.batches.clear();
      std::istringstream list(value);
      for (std::string item; std::getline(list, item, ',');) o.batches.push_back(positive("--batches", item));
    } else if (flag == "--prompt") {
      o.prompt = positive("--prompt", value);
    } else if (flag == "--steps") {
      o.steps = positive("--steps", value);
    } else if (flag == "--threads") {
      o.threads = static_cast<int>(positive("--threads", value));
    } else if (flag == "--layers") {
      o.layers = positive("--layers", value);
    } else if (flag == "--peers") {
      o.peers = value;
    } else if (flag == "--json") {
      o.json_out = value;
    } else if (flag == "--dir") {
      o.dir = value;
    } else {
      usage("unknown option " + flag);
    }
  }
  if (!o.peers.empty() && o.dir.empty()) usage("--peers: needs --dir (where the model and inputs go)");
  return o;
}

rf::encoder_config causal_bert_base(rf::index_t layers) {
  rf::encoder_config c;  // the defaults are BERT-base
  c.num_hidden_layers = layers;
  c.causal = true;
  return c;
}

// Deterministic values in [-1, 1).
std::vector<float> values(std::size_t n, std::size_t offset) {
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i)
    x[i] = static_cast<float>(static_cast<double>((i + offset) * 7919 % 1000) / 500.0 - 1.0);
  return x;
}

// One variant: its parameters, model and decoder, behind a step function.
struct variant {
  std::string name;
  rf::encoder_config config;
  std::unique_ptr<rf::encoder_parameters<float>> parameters;
  std::shared_ptr<const void> model, state;
  std::function<void(const float*, float*)> step;
  std::size_t cache_bytes = 0;
  std::vector<double> ms;

  // Products: the Linears' product backend (int8_products: int8 weights).
  template <class Products = rf::packed_products>
  variant(std::string variant_name, const rf::encoder_config& c, rf::index_t batch, const options& o,
          std::type_identity<Products> = {})
      : name(std::move(variant_name)), config(c), parameters(std::make_unique<rf::encoder_parameters<float>>(c)) {
    parameters->fill_random(seed);
    const rf::index_t d = c.hidden_size, length = o.prompt + o.steps;
    rf::visit(c.score, [&]<rf::score_function Score>() {
      using model_type = rf::encoder<float, Score, rf::simd::default_arch, Products>;
      auto m = std::make_shared<const model_type>(c, parameters->layers());
      auto s =
          std::make_shared<rf::decoder<float, Score, rf::simd::default_arch, Products>>(*m, batch, length, o.threads);
      const std::vector<float> prompt = values(static_cast<std::size_t>(batch * o.prompt * d), 0);
      std::vector<float> out(prompt.size());
      s->prefill(rf::tensor_view<const float, 3>(prompt.data(), {batch, o.prompt, d}),
                 rf::tensor_view<float, 3>(out.data(), {batch, o.prompt, d}));
      cache_bytes = s->cache_bytes();
      step = [s, batch, d](const float* in, float* result) {
        s->step(rf::tensor_view<const float, 3>(in, {batch, 1, d}), rf::tensor_view<float, 3>(result, {batch, 1, d}));
      };
      model = m;
      state = s;
    });
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

void export_model(const options& o) {
  const rf::encoder_config config = causal_bert_base(o.layers);
  rf::encoder_parameters<float> parameters(config);
  parameters.fill_random(seed);
  bench_support::export_hf_model(o.dir / "model", config, parameters.layers());
}

// The peer of a batch size, started on its inputs (written here), or null
// without --peers. Started before our variants are built: the child prefills
// its prompt meanwhile.
std::unique_ptr<reuseformer_bench::peer_process> start_peer(rf::index_t batch, const std::vector<float>& prompt,
                                                            const std::vector<float>& tokens, const options& o) {
  if (o.peers.empty()) return nullptr;
  const rf::index_t d = 768;
  const std::string tag = std::to_string(batch);
  rf::io::write_safetensors(o.dir / ("input_" + tag + ".safetensors"),
                            {rf::io::make_entry("prompt", prompt, {batch, o.prompt, d}),
                             rf::io::make_entry("tokens", tokens, {o.steps, batch, d})});
  // (appended, not "'" + ...: GCC 12 -O3 warns falsely, -Wrestrict, on that operator+)
  const auto quoted = [](const fs::path& p) { return std::string(1, '\'').append(p.string()).append("'"); };
  return std::make_unique<reuseformer_bench::peer_process>(
      o.peers + " --serve --model " + quoted(o.dir / "model") + " --input " +
      quoted(o.dir / ("input_" + tag + ".safetensors")) + " --threads " + std::to_string(o.threads) + " --out " +
      quoted(o.dir / ("peer_" + tag + ".json")) + " --outputs " + quoted(o.dir / ("peer_" + tag + ".f32")));
}

// The peer's step outputs [steps, B, d] (decode_peer.py's --outputs file).
std::vector<float> read_outputs(const json& report, std::size_t expected) {
  const fs::path file = report.at("outputs").get<std::string>();
  std::vector<float> y(expected);
  std::ifstream in(file, std::ios::binary);
  if (!in || fs::file_size(file) != expected * sizeof(float))
    throw std::runtime_error(file.string() + ": expected " + std::to_string(expected * sizeof(float)) +
                             " bytes of step outputs, found " +
                             (in ? std::to_string(fs::file_size(file)) : std::string("no file")));
  in.read(reinterpret_cast<char*>(y.data()), static_cast<std::streamsize>(expected * sizeof(float)));
  return y;
}

// Returns the batch's JSON record; `failures` gets the peer's output check when it fails.
json run_batch(rf::index_t batch, const options& o, std::vector<std::string>& failures) {
  const rf::index_t L = o.layers, H = 12, d = 768;
  const auto reuse = [&](rf::index_t k, rf::index_t last) {
    rf::encoder_config c = causal_bert_base(L);
    c.reuse_schedule = rf::reference_reuse_schedule(k, std::min(last, L - 1), H, L);
    return c;
  };
  const auto scored = [&](rf::score_function f) {
    rf::encoder_config c = causal_bert_base(L);
    c.score = f;
    return c;
  };
  const std::string layers = "layers 1-" + std::to_string(L - 1);
  // The inputs: the prompt every variant prefills (variant's constructor) and
  // each step's token [B, d].
  const auto token_size = static_cast<std::size_t>(batch * d);
  std::vector<float> tokens;
  for (rf::index_t k = 0; k < o.steps; ++k) {
    const std::vector<float> token = values(token_size, static_cast<std::size_t>(k) * 31 + 7);
    tokens.insert(tokens.end(), token.begin(), token.end());
  }
  const auto peer = start_peer(batch, values(static_cast<std::size_t>(batch * o.prompt * d), 0), tokens, o);
  std::vector<variant> v;
  v.emplace_back("vanilla", causal_bert_base(L), batch, o);
  v.emplace_back("reuse K=6, " + layers, reuse(6, L - 1), batch, o);
  v.emplace_back("reuse K=12, " + layers, reuse(12, L - 1), batch, o);
  v.emplace_back("reuse TF default (-1, 6)", reuse(-1, 6), batch, o);
  v.emplace_back("symmetric", scored(rf::score_function::symmetric), batch, o);
  v.emplace_back("pairwise", scored(rf::score_function::pairwise), batch, o);
  // The same vanilla weights quantized to int8 (a quarter of the weight bytes
  // each step reads); its "saved" is against vanilla's float weights.
  v.emplace_back("vanilla, int8 weights", causal_bert_base(L), batch, o, std::type_identity<rf::int8_products>{});

  std::vector<float> out(token_size), vanilla_out(tokens.size());  // vanilla's: [steps, B, d]
  if (peer) peer->ready();
  for (rf::index_t k = 0; k < o.steps; ++k) {
    const float* token = tokens.data() + static_cast<std::size_t>(k) * token_size;
    for (variant& x : v) {
      const auto start = std::chrono::steady_clock::now();
      x.step(token, out.data());
      x.ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      if (&x == &v[0])
        std::copy(out.begin(), out.end(), vanilla_out.begin() + k * static_cast<rf::index_t>(token_size));
    }
    if (peer) peer->round();
  }
  if (peer) peer->finish();

  const rf::index_t mean_keys = o.prompt + (o.steps + 1) / 2;
  const auto vanilla_cost = rf::analysis::decoding_cost<float>(v[0].config, batch, mean_keys);
  const double vanilla_ms = median(v[0].ms);
  std::printf("\nbatch %td, prompt %td, %td steps, %d threads (time per step: median (min-max) over the steps)\n",
              batch, o.prompt, o.steps, o.threads);
  std::printf("%-28s %12s %14s %9s %9s %10s %8s %9s %9s\n", "variant", "cache MB", "ms/step", "ms/token", "tokens/s",
              "KB/token", "saved", "pred.B", "pred.MA");
  json rows = json::array();
  for (const variant& x : v) {
    const auto cost = rf::analysis::decoding_cost<float>(x.config, batch, mean_keys);
    const bool exact = cost.cache_bytes(batch, o.prompt + o.steps) == x.cache_bytes;
    const double ms = median(x.ms), lo = *std::min_element(x.ms.begin(), x.ms.end()),
                 hi = *std::max_element(x.ms.begin(), x.ms.end());
    const double saved = 1 - ms / vanilla_ms, by_bytes = 1 - cost.bytes_read / vanilla_cost.bytes_read,
                 by_madds = 1 - cost.multiply_adds / vanilla_cost.multiply_adds;
    std::printf("%-28s %10.1f%s %6.2f (%.2f-%.2f) %9.3f %9.1f %10.1f %7.1f%% %8.1f%% %8.1f%%\n", x.name.c_str(),
                static_cast<double>(x.cache_bytes) / 1e6, exact ? "  " : " !", ms, lo, hi,
                ms / static_cast<double>(batch), 1e3 * static_cast<double>(batch) / ms,
                static_cast<double>(cost.cache_bytes_per_token) / 1e3, 100 * saved, 100 * by_bytes, 100 * by_madds);
    rows.push_back({{"variant", x.name},
                    {"cache_bytes", x.cache_bytes},
                    {"cache_bytes_as_predicted", exact},
                    {"cache_bytes_per_token", cost.cache_bytes_per_token},
                    {"median_ms_per_step", ms},
                    {"min_ms_per_step", lo},
                    {"max_ms_per_step", hi},
                    {"ms_per_token", ms / static_cast<double>(batch)},
                    {"tokens_per_s", 1e3 * static_cast<double>(batch) / ms},
                    {"saved_vs_vanilla", saved},
                    {"predicted_saving_bytes", by_bytes},
                    {"predicted_saving_multiply_adds", by_madds}});
  }
  json result = {
      {"batch", batch}, {"prompt", o.prompt}, {"steps", o.steps}, {"threads", o.threads}, {"variants", rows}};
  if (peer) {
    json p;
    std::ifstream(o.dir / ("peer_" + std::to_string(batch) + ".json")) >> p;
    const double ms = p.at("median_ms_per_step").get<double>();
    // Its outputs against vanilla's, both float: each within the float
    // tolerance of the exact value, so within twice it of each other.
    const std::vector<float> peer_out = read_outputs(p, vanilla_out.size());
    double max_diff = 0, scale = 0;
    std::size_t nonfinite = 0;
    for (std::size_t i = 0; i < peer_out.size(); ++i) {
      if (!std::isfinite(peer_out[i]) || !std::isfinite(vanilla_out[i])) {
        ++nonfinite;
        continue;
      }
      max_diff = std::max(max_diff, static_cast<double>(std::abs(peer_out[i] - vanilla_out[i])));
      scale = std::max(scale, static_cast<double>(std::abs(vanilla_out[i])));
    }
    const reuseformer_bench::tolerance fp32 =
        reuseformer_bench::tolerance_for(reuseformer_bench::precision::fp32, v[0].config, o.prompt + o.steps);
    const double tol = 2 * fp32.relative, relative = scale > 0 ? max_diff / scale : max_diff;
    const bool ok = nonfinite == 0 && relative <= tol;
    std::printf(
        "%-28s %12s %6.2f (%.2f-%.2f) %9.3f %9.1f   (vanilla here / PyTorch: %.2fx the time); outputs: "
        "max |PyTorch - vanilla| %.2g, %.2g of max|vanilla| %.3g, %s 2 x (%s) = %.2g%s\n",
        "PyTorch KV-cache loop", "", ms, p.at("min_ms_per_step").get<double>(), p.at("max_ms_per_step").get<double>(),
        ms / static_cast<double>(batch), 1e3 * static_cast<double>(batch) / ms, vanilla_ms / ms, max_diff, relative,
        scale, ok ? "within" : "ABOVE", fp32.basis.c_str(), tol,
        nonfinite ? (", " + std::to_string(nonfinite) + " non-finite").c_str() : "");
    if (!ok) {
      char text[300];
      std::snprintf(text, sizeof text,
                    "batch %td, PyTorch KV-cache loop: step outputs off vanilla's by %.3g of their scale %.3g "
                    "(%zu non-finite), tolerance 2 x (%s) = %.3g",
                    batch, relative, scale, nonfinite, fp32.basis.c_str(), tol);
      failures.push_back(text);
    }
    p["output_check"] = {
        {"max_abs_diff_vs_vanilla", max_diff}, {"vanilla_scale", scale}, {"relative", relative},
        {"nonfinite_elements", nonfinite},     {"tolerance", tol},       {"tolerance_basis", "2 x " + fp32.basis}};
    result["pytorch"] = p;
  }
  std::printf(
      "cache MB: '!' marks a cache whose size differs from the cost model's; KB/token: cache per token, all "
      "layers; saved: measured time saved against vanilla; pred.B / pred.MA: saving predicted from bytes read "
      "/ multiply-adds per token at %td keys\n",
      mean_keys);
  return result;
}

}  // namespace

int main(int argc, char** argv) try {
  const options o = parse(argc, argv);
  if (!o.peers.empty()) export_model(o);
  json all = json::array();
  std::vector<std::string> failures;
  for (const rf::index_t batch : o.batches) all.push_back(run_batch(batch, o, failures));
  if (!o.json_out.empty()) std::ofstream(o.json_out) << all.dump(2) << "\n";
  for (const std::string& failure : failures)
    std::fprintf(stderr, "reuseformer_decode: output check failed: %s\n", failure.c_str());
  return failures.empty() ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "reuseformer_decode: %s\n", e.what());
  return 1;
}
