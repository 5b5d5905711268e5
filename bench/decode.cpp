// Incremental causal decoding on a BERT-base-sized causal stack (d = 768,
// H = 12, d_ff = 3072, 12 layers, post-LN): what score reuse and symmetric /
// pairwise scores save per generated token, in time and in cache bytes.
//
//   reuseformer_decode [--batches 1,8] [--prompt 512] [--steps 128] [--threads 2]
//                      [--layers 12] [--peer B=FILE.json ...] [--json FILE]
//   reuseformer_decode --export DIR     writes DIR/{config.json, model.safetensors}:
//                                       the vanilla variant's weights, for the PyTorch
//                                       peer (bench/peers/decode_peer.py)
//
// Per batch size every variant is prefilled with the same prompt, then the
// steps are timed round-robin (one step of each variant in turn), so that noise
// on a shared machine hits every variant alike. Reported per variant: the
// median (min, max) time of a step, time per generated token (step / B),
// tokens/s, the cache's bytes (checked against the cost model's figure), and
// the time saved against vanilla beside what the cost model predicts from bytes
// read and from multiply-adds per token at the mean context length.
#include <reuseformer/io.hpp>
#include <reuseformer/reuseformer.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "support/hf_export.hpp"

namespace rf = reuseformer;
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

constexpr std::uint64_t seed = 2024;  // bench/compare.cpp's: the same vanilla weights

struct options {
  std::vector<rf::index_t> batches{1, 8};
  rf::index_t prompt = 512, steps = 128, layers = 12;
  int threads = 2;
  fs::path export_dir, json_out;
  std::map<rf::index_t, fs::path> peers;  // batch -> decode_peer.py's JSON
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "reuseformer_decode: %s\nusage: reuseformer_decode [--batches 1,8] [--prompt N] [--steps S] "
               "[--threads T] [--layers L] [--peer B=FILE.json] [--json FILE] | --export DIR\n",
               why.c_str());
  std::exit(2);
}

long positive(const char* flag, const std::string& text) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < 1) usage(std::string(flag) + ": expected an integer >= 1, found '" + text + "'");
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
    } else if (flag == "--peer") {
      const auto eq = value.find('=');
      if (eq == std::string::npos) usage("--peer: expected B=FILE.json, found '" + value + "'");
      o.peers[positive("--peer", value.substr(0, eq))] = value.substr(eq + 1);
    } else if (flag == "--json") {
      o.json_out = value;
    } else if (flag == "--export") {
      o.export_dir = value;
    } else {
      usage("unknown option " + flag);
    }
  }
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
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(static_cast<double>((i + offset) * 7919 % 1000) / 500.0 - 1.0);
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
      auto s = std::make_shared<rf::decoder<float, Score, rf::simd::default_arch, Products>>(*m, batch, length, o.threads);
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
  bench_support::export_hf_model(o.export_dir, config, parameters.layers());
}

json run_batch(rf::index_t batch, const options& o) {
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

  std::vector<float> out(static_cast<std::size_t>(batch * d));
  for (rf::index_t k = 0; k < o.steps; ++k) {
    const std::vector<float> token = values(out.size(), static_cast<std::size_t>(k) * 31 + 7);
    for (variant& x : v) {
      const auto start = std::chrono::steady_clock::now();
      x.step(token.data(), out.data());
      x.ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
  }

  const rf::index_t mean_keys = o.prompt + (o.steps + 1) / 2;
  const auto vanilla_cost = rf::analysis::decoding_cost<float>(v[0].config, batch, mean_keys);
  const double vanilla_ms = median(v[0].ms);
  std::printf("\nbatch %td, prompt %td, %td steps, %d threads (time per step: median (min-max) over the steps)\n",
              batch, o.prompt, o.steps, o.threads);
  std::printf("%-28s %12s %14s %9s %9s %10s %8s %9s %9s\n", "variant", "cache MB", "ms/step", "ms/token",
              "tokens/s", "KB/token", "saved", "pred.B", "pred.MA");
  json rows = json::array();
  for (const variant& x : v) {
    const auto cost = rf::analysis::decoding_cost<float>(x.config, batch, mean_keys);
    const bool exact = cost.cache_bytes(batch, o.prompt + o.steps) == x.cache_bytes;
    const double ms = median(x.ms), lo = *std::min_element(x.ms.begin(), x.ms.end()),
                 hi = *std::max_element(x.ms.begin(), x.ms.end());
    const double saved = 1 - ms / vanilla_ms, by_bytes = 1 - cost.bytes_read / vanilla_cost.bytes_read,
                 by_madds = 1 - cost.multiply_adds / vanilla_cost.multiply_adds;
    std::printf("%-28s %10.1f%s %6.2f (%.2f-%.2f) %9.3f %9.1f %10.1f %7.1f%% %8.1f%% %8.1f%%\n", x.name.c_str(),
                static_cast<double>(x.cache_bytes) / 1e6, exact ? "  " : " !", ms, lo, hi, ms / static_cast<double>(batch),
                1e3 * static_cast<double>(batch) / ms, static_cast<double>(cost.cache_bytes_per_token) / 1e3,
                100 * saved, 100 * by_bytes, 100 * by_madds);
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
  json result = {{"batch", batch}, {"prompt", o.prompt}, {"steps", o.steps}, {"threads", o.threads}, {"variants", rows}};
  if (const auto peer = o.peers.find(batch); peer != o.peers.end()) {
    json p;
    std::ifstream(peer->second) >> p;
    const double ms = p.at("median_ms_per_step").get<double>();
    std::printf("%-28s %12s %6.2f (%.2f-%.2f) %9.3f %9.1f   (vanilla here / PyTorch: %.2fx the time)\n",
                "PyTorch KV-cache loop", "", ms, p.at("min_ms_per_step").get<double>(),
                p.at("max_ms_per_step").get<double>(), ms / static_cast<double>(batch),
                1e3 * static_cast<double>(batch) / ms, vanilla_ms / ms);
    result["pytorch"] = p;
  }
  std::printf("cache MB: '!' marks a cache whose size differs from the cost model's; KB/token: cache per token, all "
              "layers; saved: measured time saved against vanilla; pred.B / pred.MA: saving predicted from bytes read "
              "/ multiply-adds per token at %td keys\n",
              mean_keys);
  return result;
}

}  // namespace

int main(int argc, char** argv) try {
  const options o = parse(argc, argv);
  if (!o.export_dir.empty()) {
    export_model(o);
    return 0;
  }
  json all = json::array();
  for (const rf::index_t batch : o.batches) all.push_back(run_batch(batch, o));
  if (!o.json_out.empty()) std::ofstream(o.json_out) << all.dump(2) << "\n";
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "reuseformer_decode: %s\n", e.what());
  return 1;
}
