// reuseformer-plan: turns a checkpoint without reuse into one that reuses
// attention heads, chosen from how alike its layers' attention is.
//
//   reuseformer-plan --model DIR --calibration FILE
//                    (--reuse-heads K | --budget FRACTION | --min-similarity S) --out DIR
//                    [--layers FIRST-LAST] [--heldout FILE] [--naive] [--threads N] [--repeat R]
//
// 1. Runs the model on the calibration batch (a safetensors file as
//    reuseformer-encode takes: hidden_states [B, N, d], or input_ids [B, N] for
//    a model with embeddings; optional attention_mask) and measures, for every
//    layer l >= 1, S_l[j, i] = mean over real query rows of 1 - TV between head j
//    of layer l and head i of layer l-1 (docs/semantics.md §Attention similarity).
// 2. Plans (docs/semantics.md §Reuse planning): --reuse-heads K reuses K heads in
//    each planned layer; --budget F reuses heads until the forward pass costs at
//    most F of the original's multiply-adds (cost model, calibration shape);
//    --min-similarity S reuses in each layer as many heads as it can with every
//    reused pair at S_l >= S. --layers limits the layers that reuse (default 1
//    to L-1); --naive takes no similarity into account (with --reuse-heads:
//    the last K heads of each layer reuse the first K of the layer below).
// 3. Writes the new checkpoint to OUT (config.json, model.safetensors), with
//    plan.json (similarities, plan and every layer's head order, predicted
//    saving, drift, times) and
//    similarity.png (one H x H heatmap per layer l >= 1, left to right; white
//    1, black 0). OUT appears complete or not at all.
// 4. Prints the similarity table, the plan, the predicted multiply-add saving,
//    and, on the held-out batch (--heldout, default the calibration batch), the
//    drift of the planned model's final hidden states from the original's
//    (cosine similarity, max and mean absolute difference) and both forward
//    times (median of --repeat runs, interleaved, after a warm-up).
// Exit status: 0 success, 2 usage error, 1 input error (one message on stderr,
// nothing written).
#include <reuseformer/analysis/attention_similarity.hpp>
#include <reuseformer/analysis/reuse_planner.hpp>
#include <reuseformer/io.hpp>
#include <reuseformer/io/planned_checkpoint.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include "support/resident_memory.hpp"

namespace rf = reuseformer;
namespace an = reuseformer::analysis;
namespace fs = std::filesystem;

namespace {

struct usage_error {
  std::string message;
};

constexpr const char* usage_text =
    "usage: reuseformer-plan --model DIR --calibration FILE\n"
    "                        (--reuse-heads K | --budget FRACTION | --min-similarity S) --out DIR\n"
    "                        [--layers FIRST-LAST] [--heldout FILE] [--naive] [--threads N] [--repeat R]";

struct options {
  fs::path model, calibration, heldout, out;
  std::optional<rf::index_t> reuse_heads;
  std::optional<double> budget, min_similarity;
  std::optional<std::pair<rf::index_t, rf::index_t>> layers;
  bool naive = false;
  int threads = rf::max_threads(), repeat = 3;
};

double number(std::string_view flag, const char* text) {
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (end == text || *end != '\0' || !std::isfinite(value))
    throw usage_error{std::string(flag) + ": expected a number, found '" + text + "'"};
  return value;
}

long integer(std::string_view flag, const char* text, long minimum) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value < minimum || value > 1'000'000)
    throw usage_error{std::string(flag) + ": expected an integer >= " + std::to_string(minimum) + ", found '" + text +
                      "'"};
  return value;
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--naive") {
      o.naive = true;
      continue;
    }
    static constexpr std::string_view known[] = {"--model",       "--calibration", "--heldout",        "--out",
                                                 "--reuse-heads", "--budget",      "--min-similarity", "--layers",
                                                 "--threads",     "--repeat"};
    if (std::find(std::begin(known), std::end(known), flag) == std::end(known))
      throw usage_error{"unknown option '" + std::string(flag) + "'"};
    if (i + 1 >= argc) throw usage_error{std::string(flag) + ": expected a value"};
    const char* value = argv[++i];
    if (flag == "--model")
      o.model = value;
    else if (flag == "--calibration")
      o.calibration = value;
    else if (flag == "--heldout")
      o.heldout = value;
    else if (flag == "--out")
      o.out = value;
    else if (flag == "--reuse-heads")
      o.reuse_heads = integer(flag, value, 0);
    else if (flag == "--threads")
      o.threads = static_cast<int>(integer(flag, value, 1));
    else if (flag == "--repeat")
      o.repeat = static_cast<int>(integer(flag, value, 1));
    else if (flag == "--budget") {
      o.budget = number(flag, value);
      if (*o.budget <= 0 || *o.budget > 1)
        throw usage_error{"--budget: expected a fraction of the original multiply-adds in (0, 1], found '" +
                          std::string(value) + "'"};
    } else if (flag == "--min-similarity") {
      o.min_similarity = number(flag, value);
    } else {  // --layers FIRST-LAST
      const std::string text = value;
      const std::size_t dash = text.find('-');
      if (dash == std::string::npos) throw usage_error{"--layers: expected FIRST-LAST, found '" + text + "'"};
      o.layers =
          std::pair{integer(flag, text.substr(0, dash).c_str(), 0), integer(flag, text.substr(dash + 1).c_str(), 0)};
    }
  }
  if (o.model.empty() || o.calibration.empty() || o.out.empty())
    throw usage_error{"--model, --calibration and --out are required"};
  if (int(o.reuse_heads.has_value()) + int(o.budget.has_value()) + int(o.min_similarity.has_value()) != 1)
    throw usage_error{"expected exactly one of --reuse-heads, --budget and --min-similarity"};
  if (o.naive && !o.reuse_heads) throw usage_error{"--naive: expected with --reuse-heads"};
  if (o.heldout.empty()) o.heldout = o.calibration;
  return o;
}

// A batch from a safetensors file, as the model's input hidden states.
struct batch {
  rf::io::safetensors_reader file;  // the input's tensors may view its mapping
  rf::io::model_input input;
  std::vector<float> hidden;  // [B, N, d] after the embeddings (when the file gives ids)

  [[nodiscard]] rf::tensor_view<const float, 3> view(rf::index_t d) const {
    return {input.hidden ? input.hidden->data() : hidden.data(), {input.batch, input.seq, d}};
  }
};

batch read_batch(const fs::path& path, const rf::io::model<float>& model, int threads) {
  const rf::index_t d = model.config().encoder.hidden_size;
  batch x{rf::io::safetensors_reader(path), {}, {}};
  x.input = rf::io::read_model_input(x.file, d, model.embeddings().has_value());
  if (!x.input.hidden) {
    x.hidden.resize(static_cast<std::size_t>(x.input.batch * x.input.seq * d));
    const rf::index_t b = x.input.batch, n = x.input.seq;
    try {
      model.embeddings()->forward(
          rf::tensor_view<const std::int64_t, 2>(x.input.ids.data(), {b, n}),
          rf::tensor_view<const std::int64_t, 2>(x.input.types.empty() ? nullptr : x.input.types.data(),
                                                 {x.input.types.empty() ? 0 : b, n}),
          rf::tensor_view<float, 3>(x.hidden.data(), {b, n, d}), threads);
    } catch (const rf::error& e) {
      throw rf::error(x.file.source() + ": " + e.what());
    }
  }
  return x;
}

// The final hidden states of `model` on x, and the median time of `repeat` passes.
struct encoded {
  std::vector<float> hidden;
  std::vector<double> ms;
};

void encode(const rf::io::model<float>& model, const batch& x, int threads, encoded& result) {
  const rf::index_t d = model.config().encoder.hidden_size;
  result.hidden.resize(static_cast<std::size_t>(x.input.batch * x.input.seq * d));
  rf::workspace ws = model.make_workspace(x.input.batch, x.input.seq, threads);
  const auto start = std::chrono::steady_clock::now();
  model.forward(x.view(d), rf::tensor_view<float, 3>(result.hidden.data(), {x.input.batch, x.input.seq, d}), ws,
                x.input.mask());
  result.ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// White (1) to black (0) through blue: which layers have near-duplicate heads shows at a glance.
void write_heatmap(const fs::path& path, const an::similarity_report& s) {
  const int h = static_cast<int>(s.heads), cell = std::max(4, 96 / std::max(h, 1)), gap = 8;
  const int layers = static_cast<int>(s.layers) - 1;
  const int width = std::max(1, layers * (h * cell + gap) + gap), height = h * cell + 2 * gap;
  std::vector<unsigned char> rgb(static_cast<std::size_t>(width * height * 3), 255);
  for (int l = 1; l <= layers; ++l) {
    const an::layer_similarity& pair = s.between(l, l - 1);
    for (int j = 0; j < h; ++j)
      for (int i = 0; i < h; ++i) {
        const double v = std::clamp(pair.at(j, i), 0.0, 1.0);
        const auto channel = [&](double lo) {
          return static_cast<unsigned char>(std::lround(255 * (lo + (1 - lo) * v) * v));
        };
        const unsigned char color[3] = {channel(0), channel(0.2),
                                        static_cast<unsigned char>(std::lround(255 * std::sqrt(v)))};
        for (int y = 0; y < cell; ++y)
          for (int x = 0; x < cell; ++x) {
            const int px = gap + (l - 1) * (h * cell + gap) + i * cell + x, py = gap + j * cell + y;
            std::copy_n(color, 3, rgb.begin() + (py * width + px) * 3);
          }
      }
  }
  if (stbi_write_png(path.c_str(), width, height, 3, rgb.data(), width * 3) == 0)
    throw rf::error(path.string() + ": cannot write the PNG");
}

int run(const options& o) {
  rf::detail::require_new_path(o.out);  // before any work
  const rf::io::model<float> model = rf::io::load_model<float>(o.model);
  const rf::encoder_config& c = model.config().encoder;
  const rf::index_t layers = c.num_hidden_layers, heads = c.num_attention_heads;
  const std::string config_path = (o.model / "config.json").string();
  rf::io::require_plannable(c, config_path);
  if (layers < 2)
    throw rf::error(config_path + ": expected a model of at least 2 layers to plan reuse, found " +
                    std::to_string(layers));
  const auto [first, last] = o.layers.value_or(std::pair<rf::index_t, rf::index_t>{1, layers - 1});
  if (first < 1 || last > layers - 1 || first > last)
    throw rf::error("--layers " + std::to_string(first) + "-" + std::to_string(last) + ": expected layers within 1-" +
                    std::to_string(layers - 1) + " (" + config_path + ": num_hidden_layers " + std::to_string(layers) +
                    ")");
  if (o.reuse_heads && *o.reuse_heads > heads)
    throw rf::error("--reuse-heads " + std::to_string(*o.reuse_heads) + ": expected at most " + std::to_string(heads) +
                    " (" + config_path + ": num_attention_heads), found " + std::to_string(*o.reuse_heads));
  std::vector<bool> allowed(static_cast<std::size_t>(layers), false);
  for (rf::index_t l = first; l <= last; ++l) allowed[static_cast<std::size_t>(l)] = true;

  const batch calibration = read_batch(o.calibration, model, o.threads);
  const batch heldout = read_batch(o.heldout, model, o.threads);
  const rf::index_t b = calibration.input.batch, n = calibration.input.seq;

  const auto start = std::chrono::steady_clock::now();
  const an::similarity_report s = an::attention_similarity(model.encoder(), calibration.view(c.hidden_size),
                                                           calibration.input.mask(), {.threads = o.threads});
  const double analysis_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Planned before anything is printed: a target the plan cannot meet is an error, with no output.
  std::vector<rf::index_t> schedule(static_cast<std::size_t>(layers), 0);
  if (o.reuse_heads)
    for (rf::index_t l = first; l <= last; ++l) schedule[static_cast<std::size_t>(l)] = *o.reuse_heads;
  const an::reuse_plan plan = o.naive         ? an::naive_reuse(heads, schedule)
                              : o.reuse_heads ? an::plan_reuse(s, schedule)
                              : o.budget      ? an::plan_reuse_budget(s, c, b, n, *o.budget, allowed)
                                              : an::plan_reuse_min_similarity(s, *o.min_similarity, allowed);
  std::printf(
      "attention similarity S_l[j, i] = mean over %lld real query rows of 1 - TV(layer l head j, layer l-1 head i)\n",
      static_cast<long long>(s.rows));
  std::printf("(%lld x %lld calibration tokens, %.2f s, peak resident %.0f MiB)\n", static_cast<long long>(b),
              static_cast<long long>(n), analysis_s, static_cast<double>(resident_memory::peak_bytes()) / (1 << 20));
  for (rf::index_t l = 1; l < layers; ++l) {
    const an::layer_similarity& pair = s.between(l, l - 1);
    std::printf("layer %lld vs %lld%s\n", static_cast<long long>(l), static_cast<long long>(l - 1), "   best match");
    for (rf::index_t j = 0; j < heads; ++j) {
      std::printf("  head %2lld:", static_cast<long long>(j));
      for (rf::index_t i = 0; i < heads; ++i) std::printf(" %.2f", pair.at(j, i));
      std::printf("   %lld\n", static_cast<long long>(pair.best_match(j)));
    }
  }

  std::printf("plan (%s): reuse_schedule [", o.naive ? "naive" : "planned");
  for (rf::index_t l = 0; l < layers; ++l)
    std::printf("%s%lld", l ? ", " : "", static_cast<long long>(plan.schedule[static_cast<std::size_t>(l)]));
  std::printf("]\n");
  nlohmann::json plan_json = nlohmann::json::array();
  for (rf::index_t l = 1; l < layers; ++l) {
    nlohmann::json reused = nlohmann::json::array();
    for (rf::index_t t = 0; t < heads; ++t)
      if (const rf::index_t i = plan.source[static_cast<std::size_t>(l)][static_cast<std::size_t>(t)]; i >= 0) {
        std::printf("  layer %lld head %lld <- layer %lld head %lld (S = %.3f)\n", static_cast<long long>(l),
                    static_cast<long long>(t), static_cast<long long>(l - 1), static_cast<long long>(i),
                    s.between(l, l - 1).at(t, i));
        reused.push_back({{"head", t}, {"source", i}, {"similarity", s.between(l, l - 1).at(t, i)}});
      }
    plan_json.push_back({{"layer", l}, {"order", plan.order[static_cast<std::size_t>(l)]}, {"reused", reused}});
  }
  rf::encoder_config planned_config = c;
  planned_config.reuse_schedule = plan.schedule;
  const double before = an::cost<float>(c, b, n).multiply_adds,
               after = an::cost<float>(planned_config, b, n).multiply_adds;
  std::printf("predicted: %.4g -> %.4g multiply-adds per forward pass of %lld x %lld (%.2f%% saved)\n", before, after,
              static_cast<long long>(b), static_cast<long long>(n), 100 * (1 - after / before));

  nlohmann::json report;
  rf::io::write_planned_checkpoint(o.model, plan, o.out, [&](const fs::path& staging) {
    const rf::io::model<float> planned = rf::io::load_model<float>(staging);
    encoded original_run, planned_run;
    encode(model, heldout, o.threads, original_run);  // warm-up
    encode(planned, heldout, o.threads, planned_run);
    original_run.ms.clear();
    planned_run.ms.clear();
    for (int r = 0; r < o.repeat; ++r) {
      encode(model, heldout, o.threads, original_run);
      encode(planned, heldout, o.threads, planned_run);
    }
    const std::vector<float>& x = original_run.hidden;
    const std::vector<float>& y = planned_run.hidden;
    double dot = 0, xx = 0, yy = 0, max_diff = 0, sum_diff = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      dot += static_cast<double>(x[i]) * y[i];
      xx += static_cast<double>(x[i]) * x[i];
      yy += static_cast<double>(y[i]) * y[i];
      const double diff = std::abs(static_cast<double>(x[i]) - y[i]);
      max_diff = std::max(max_diff, diff);
      sum_diff += diff;
    }
    const double cosine = dot / std::sqrt(xx * yy), mean_diff = sum_diff / static_cast<double>(x.size());
    const double original_ms = median(original_run.ms), planned_ms = median(planned_run.ms);
    std::printf("drift on %s (%lld x %lld): cosine %.6f, max |diff| %.4g, mean |diff| %.4g\n", o.heldout.c_str(),
                static_cast<long long>(heldout.input.batch), static_cast<long long>(heldout.input.seq), cosine,
                max_diff, mean_diff);
    std::printf("forward: original %.2f ms, planned %.2f ms (median of %d, %d threads): %.2f%% saved\n", original_ms,
                planned_ms, o.repeat, o.threads, 100 * (1 - planned_ms / original_ms));
    nlohmann::json similarity = nlohmann::json::array();
    for (const an::layer_similarity& pair : s.pairs)
      similarity.push_back({{"layer", pair.layer}, {"source", pair.source}, {"total_variation", pair.total_variation}});
    report = {
        {"model", o.model.string()},
        {"calibration", {{"file", o.calibration.string()}, {"batch", b}, {"seq", n}, {"rows", s.rows}}},
        {"analysis_seconds", analysis_s},
        {"similarity", similarity},
        {"method", o.naive         ? "naive"
                   : o.reuse_heads ? "reuse-heads"
                   : o.budget      ? "budget"
                                   : "min-similarity"},
        {"reuse_schedule", plan.schedule},
        {"orders", plan.order},
        {"plan", plan_json},
        {"predicted_multiply_adds", {{"original", before}, {"planned", after}, {"saved_fraction", 1 - after / before}}},
        {"drift",
         {{"file", o.heldout.string()}, {"cosine", cosine}, {"max_abs_diff", max_diff}, {"mean_abs_diff", mean_diff}}},
        {"forward_ms",
         {{"original", original_ms}, {"planned", planned_ms}, {"threads", o.threads}, {"repeat", o.repeat}}}};
    std::ofstream(staging / "plan.json") << report.dump(2) << '\n';
    write_heatmap(staging / "similarity.png", s);
  });
  std::printf("wrote %s (config.json, model.safetensors, plan.json, similarity.png)\n", o.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const usage_error& e) {
    std::fprintf(stderr, "reuseformer-plan: %s\n%s\n", e.message.c_str(), usage_text);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseformer-plan: %s\n", e.what());
    return 1;
  }
}
