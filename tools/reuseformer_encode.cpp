// reuseformer-encode: runs a Hugging Face BERT-style checkpoint on a batch.
//
//   reuseformer-encode --model DIR --input IN.safetensors --output OUT.safetensors
//                      [--threads N] [--repeat R] [--report REPORT.json] [--output-attentions]
//                      [--packed] [--precision fp32|bf16|int8]
//
// DIR holds config.json and model.safetensors (any variant the library supports:
// score reuse, symmetric / pairwise scores, relative positions, embeddings).
// IN holds hidden_states [B, N, d] (floating point), or input_ids [B, N] (integer,
// with optional token_type_ids [B, N]) when the checkpoint has embeddings, and
// optionally attention_mask [B, N] (I64, I32 or F32; 1 = token, 0 = padding).
// OUT receives last_hidden_state F32 [B, N, d] and, with --output-attentions,
// attentions.{l} F32 [B, H, N, N] per layer (the probabilities each layer used,
// reused heads included). OUT is written atomically: a failure leaves no partial file.
// --packed skips padded tokens (reuseformer::padding::skip): the mask's rows must
// be right-padded, the cost follows the real tokens, and last_hidden_state is 0
// at padded positions (without it they are computed as PyTorch does). It
// excludes --output-attentions.
// --repeat R times R forward passes after one warm-up; --report writes their
// times and the model's work and memory as JSON (`tokens`: the real tokens,
// `padded_tokens`: B * N; `flops` counts the padded batch).
// --precision bf16 runs the Linears' products on bfloat16 weights and
// activations with float accumulation (bf16_products); int8 on int8 weights
// (per output column) and activations quantized per token, with exact integer
// sums (int8_products); default fp32: every product in float. Everything else
// stays float.
// Exit status: 0 success, 2 usage error, 1 input or format error (one message on stderr).
#include <reuseformer/io.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace rf = reuseformer;

// Heap allocations are counted while the timed passes run, for the report.
#include "support/counting_new.hpp"
// Resident memory, for the report.
#include "support/resident_memory.hpp"

namespace {

struct usage_error {
  std::string message;
};

struct options {
  std::filesystem::path model, input, output, report;
  int threads = rf::max_threads(), repeat = 0;
  bool attentions = false, packed = false;
  std::string precision = "fp32";
};

constexpr const char* usage_text =
    "usage: reuseformer-encode --model DIR --input IN.safetensors --output OUT.safetensors\n"
    "                          [--threads N] [--repeat R] [--report REPORT.json] [--output-attentions]\n"
    "                          [--packed] [--precision fp32|bf16|int8]";

int positive(std::string_view flag, const char* text, int minimum) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value < minimum || value > 1'000'000)
    throw usage_error{std::string(flag) + ": expected an integer >= " + std::to_string(minimum) + ", found '" + text +
                      "'"};
  return static_cast<int>(value);
}

// --precision: fp32, bf16 or int8.
std::string precision(std::string_view value) {
  if (value != "fp32" && value != "bf16" && value != "int8")
    throw usage_error{"--precision: expected fp32, bf16 or int8, found '" + std::string(value) + "'"};
  return std::string(value);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--output-attentions" || flag == "--packed") {
      (flag == "--packed" ? o.packed : o.attentions) = true;
      continue;
    }
    const bool known = flag == "--model" || flag == "--input" || flag == "--output" || flag == "--report" ||
                       flag == "--threads" || flag == "--repeat" || flag == "--precision";
    if (!known) throw usage_error{"unknown option '" + std::string(flag) + "'"};
    if (i + 1 >= argc) throw usage_error{std::string(flag) + ": expected a value"};
    const char* value = argv[++i];
    if (flag == "--model")
      o.model = value;
    else if (flag == "--input")
      o.input = value;
    else if (flag == "--output")
      o.output = value;
    else if (flag == "--report")
      o.report = value;
    else if (flag == "--threads")
      o.threads = positive(flag, value, 1);
    else if (flag == "--precision")
      o.precision = precision(value);
    else
      o.repeat = positive(flag, value, 0);
  }
  if (o.model.empty() || o.input.empty() || o.output.empty())
    throw usage_error{"--model, --input and --output are required"};
  if (o.packed && o.attentions) throw usage_error{"--packed: expected without --output-attentions, found both"};
  return o;
}

template <class Products>
void encode(const options& o) {
  const rf::io::model<float, rf::simd::default_arch, Products> model =
      rf::io::load_model<float, rf::simd::default_arch, Products>(o.model);
  const rf::io::safetensors_reader in(o.input);
  const rf::encoder_config& config = model.config().encoder;
  const rf::index_t d = config.hidden_size, heads = config.num_attention_heads, layers = config.num_hidden_layers;
  const rf::io::model_input x = rf::io::read_model_input(in, d, model.embeddings().has_value());
  const rf::index_t b = x.batch, n = x.seq;

  std::vector<float> hidden(static_cast<std::size_t>(b * n * d));
  std::vector<std::vector<float>> stacks(o.attentions ? static_cast<std::size_t>(layers) : 0,
                                         std::vector<float>(static_cast<std::size_t>(b * heads * n * n)));
  std::vector<rf::tensor_view<float, 4>> views;
  for (auto& s : stacks) views.emplace_back(s.data(), std::array<rf::index_t, 4>{b, heads, n, n});
  rf::workspace ws = model.make_workspace(b, n, o.threads);
  const rf::attention_mask mask = x.mask();
  const rf::tensor_view<float, 3> out(hidden.data(), {b, n, d});
  const auto encode_from = [&](rf::tensor_view<const float, 3> from) {
    if (o.packed)
      model.forward(from, out, ws, mask, rf::padding::skip);
    else
      model.forward(from, out, ws, mask, {.attentions = views});
  };
  const auto forward = [&] {
    if (x.hidden) {
      encode_from(x.hidden->view<3>());
    } else {
      model.embeddings()->forward(rf::tensor_view<const std::int64_t, 2>(x.ids.data(), {b, n}),
                                  rf::tensor_view<const std::int64_t, 2>(x.types.empty() ? nullptr : x.types.data(),
                                                                         {x.types.empty() ? 0 : b, n}),
                                  out, o.threads);
      encode_from(out);
    }
  };

  try {  // the result, and the warm-up of the timed runs; bad ids, types or mask values surface here
    forward();
  } catch (const rf::error& e) {
    throw rf::error(in.source() + ": " + e.what());
  }
  std::vector<double> times;
  times.reserve(static_cast<std::size_t>(o.repeat));  // so that only the forward passes are counted
  counting::allocations = 0;
  counting::enabled = true;
  for (int r = 0; r < o.repeat; ++r) {
    const auto start = std::chrono::steady_clock::now();
    forward();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  counting::enabled = false;

  std::vector<rf::io::tensor_entry> tensors{rf::io::make_entry("last_hidden_state", hidden, {b, n, d})};
  for (std::size_t l = 0; l < stacks.size(); ++l)
    tensors.push_back(rf::io::make_entry("attentions." + std::to_string(l), stacks[l], {b, heads, n, n}));
  rf::io::write_safetensors(o.output, tensors, {{"format", "pt"}, {"producer", "reuseformer-encode"}});

  if (!o.report.empty()) {
    const auto cost = rf::analysis::measure(model.encoder(), b, n, o.threads);
    const nlohmann::json report = {{"forward_ms", times},
                                   {"threads", o.threads},
                                   {"batch", b},
                                   {"seq", n},
                                   {"tokens", mask.present() ? mask.tokens(b, n) : b * n},
                                   {"padded_tokens", b * n},
                                   {"packed", o.packed},
                                   {"score_function", rf::name_of(config.score)},
                                   {"precision", o.precision},
                                   {"flops", 2 * cost.multiply_adds},
                                   {"parameter_bytes", model.parameter_bytes()},
                                   {"referenced_parameter_bytes", model.referenced_parameter_bytes()},
                                   {"converted_parameter_bytes", model.converted_parameter_bytes()},
                                   {"resident_bytes", resident_memory::current_bytes()},
                                   {"peak_resident_bytes", resident_memory::peak_bytes()},
                                   {"workspace_bytes", cost.workspace_bytes},
                                   {"reuse_state_bytes", cost.reuse_state_bytes},
                                   {"heap_allocations_during_forward", counting::allocations.load()}};
    std::ofstream file(o.report);
    file << report.dump(2) << '\n';
    if (!file.good()) throw rf::error(o.report.string() + ": cannot write the report");
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const options o = parse(argc, argv);
    if (o.precision == "bf16")
      encode<rf::bf16_products>(o);
    else if (o.precision == "int8")
      encode<rf::int8_products>(o);
    else
      encode<rf::packed_products>(o);
    return 0;
  } catch (const usage_error& e) {
    std::fprintf(stderr, "reuseformer-encode: %s\n%s\n", e.message.c_str(), usage_text);
    return 2;
  } catch (const std::exception& e) {  // reuseformer::error, or running out of memory
    std::fprintf(stderr, "reuseformer-encode: %s\n", e.what());
    return 1;
  }
}
