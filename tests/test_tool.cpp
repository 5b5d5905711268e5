// reuseformer-encode run as a program, as a user would run it (its contract is
// the header comment of tools/reuseformer_encode.cpp): PyTorch parity through
// the tool on every fixture that has a config.json, the --repeat / --report JSON,
// usage errors (exit 2), input and format errors (exit 1, one exact message, no
// output) and the atomic replacement of the output file.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>
#include <reuseformer/analysis/cost_model.hpp>
#include <reuseformer/gemm/int8_quantization.hpp>
#include <reuseformer/io/bert_model.hpp>
#include <reuseformer/io/safetensors.hpp>

#include "support/catch.hpp"
#include "support/compare.hpp"
#include "support/program.hpp"
#include "support/temp_dir.hpp"

#ifndef REUSEFORMER_ENCODE
#error "REUSEFORMER_ENCODE must be defined (a string literal: the path of the reuseformer-encode program)"
#endif

namespace fs = std::filesystem;
namespace io = reuseformer::io;
using reuseformer::index_t;

namespace {

// tests/test_pytorch_parity.cpp's float tolerance: |a - e| <= 1e-5 + 1e-5 |e|.
constexpr double float_rel = 1e-5, float_abs = 1e-5;

const fs::path fixture_dir = REUSEFORMER_FIXTURE_DIR;

fs::path fixture_file(const std::string& name) { return fixture_dir / (name + ".safetensors"); }

using scratch_dir = reuseformer_test::temp_dir;

using reuseformer_test::listing;
using reuseformer_test::read_text;
using reuseformer_test::write_text;
using tool_result = reuseformer_test::program_result;

tool_result run_tool(const scratch_dir& scratch, const std::vector<std::string>& args) {
  return reuseformer_test::run_program(REUSEFORMER_ENCODE, args, scratch.path);
}

// scratch/model holding the fixture's config.json and weights, as a Hugging
// Face checkpoint directory would. The weights file also holds the fixture's
// inputs and references, which the tool ignores like any tensor it does not bind.
fs::path make_model_dir(const scratch_dir& scratch, const std::string& fixture) {
  const fs::path dir = scratch / "model";
  fs::create_directories(dir);
  fs::copy_file(fixture_dir / (fixture + ".config.json"), dir / "config.json");
  fs::copy_file(fixture_file(fixture), dir / "model.safetensors");
  return dir;
}

// Every tensor of `file` as an entry to write (viewing the reader's bytes, so
// the reader must outlive the entries): lets a test write a copy of a fixture
// with a tensor removed, reshaped or added.
std::vector<io::tensor_entry> entries_of(const io::safetensors_reader& file) {
  std::vector<io::tensor_entry> entries;
  for (const std::string& name : file.names()) {
    const io::tensor_info& info = file.find(name);
    entries.push_back({name, info.type, info.shape, info.bytes});
  }
  return entries;
}

// The F32 tensor `name` of the tool's output, after checking its dtype and shape.
std::vector<float> read_output(const io::safetensors_reader& file, const std::string& name,
                               const std::vector<index_t>& shape) {
  INFO("output tensor " << name);
  REQUIRE(file.contains(name));
  CHECK(io::name(file.find(name).type) == std::string("F32"));
  CHECK(file.find(name).shape == shape);
  const io::loaded_tensor<float> t = file.load<float>(name);
  return {t.data(), t.data() + t.size()};
}

std::vector<double> read_reference(const io::safetensors_reader& file, const std::string& name) {
  const io::loaded_tensor<double> t = file.load<double>(name);
  return {t.data(), t.data() + t.size()};
}

// The fixtures that come with a config.json: those a user could run the tool on.
std::vector<std::string> fixtures_with_config() {
  const std::string suffix = ".config.json";
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(fixture_dir)) {
    const std::string file = entry.path().filename().string();
    if (file.size() > suffix.size() && file.ends_with(suffix))
      names.push_back(file.substr(0, file.size() - suffix.size()));
  }
  std::ranges::sort(names);
  return names;
}

nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(read_text(path)); }

}  // namespace

TEST_CASE("reuseformer-encode matches PyTorch on every fixture checkpoint", "[tool][parity]") {
  const std::vector<std::string> fixtures = fixtures_with_config();
  REQUIRE(!fixtures.empty());
  for (const std::string& name : fixtures) {
    INFO("fixture " << name);
    const scratch_dir scratch;
    const fs::path model = make_model_dir(scratch, name), out_dir = scratch / "out",
                   output = out_dir / "out.safetensors";
    fs::create_directory(out_dir);
    // The fixture file is itself a valid input: hidden_states or input_ids /
    // token_type_ids, attention_mask, and tensors the tool must ignore.
    const tool_result r = run_tool(scratch, {"--model", model.string(), "--input", fixture_file(name).string(),
                                             "--output", output.string(), "--output-attentions", "--threads", "2"});
    INFO("stderr: " << r.err);
    REQUIRE(r.status == 0);
    CHECK(r.err.empty());
    CHECK(listing(out_dir) == std::vector<std::string>{"out.safetensors"});

    const io::safetensors_reader reference(fixture_file(name));
    const io::safetensors_reader out(output);
    const nlohmann::json config = read_json(model / "config.json");
    const auto layers = config.at("num_hidden_layers").get<index_t>(),
               heads = config.at("num_attention_heads").get<index_t>();
    const std::vector<index_t> hidden_shape = reference.find("expected").shape;  // [B, N, d]
    const index_t b = hidden_shape[0], n = hidden_shape[1];

    // Exactly the tensors asked for: the last hidden state and one stack per layer.
    std::vector<std::string> names{"last_hidden_state"};
    for (index_t l = 0; l < layers; ++l) names.push_back("attentions." + std::to_string(l));
    std::ranges::sort(names);
    CHECK(out.names() == names);

    CHECK_CLOSE(reuseformer_test::compare(read_output(out, "last_hidden_state", hidden_shape),
                                          read_reference(reference, "expected"), float_rel, float_abs));
    for (index_t l = 0; l < layers; ++l) {
      const std::string index = std::to_string(l);
      INFO("layer " << l);
      const std::vector<float> stack = read_output(out, "attentions." + index, {b, heads, n, n});
      // The encoder fixtures carry no attention reference (PyTorch's modules do not return it).
      if (reference.contains("expected_attentions." + index))
        CHECK_CLOSE(reuseformer_test::compare(stack, read_reference(reference, "expected_attentions." + index),
                                              float_rel, float_abs));
    }
  }
}

TEST_CASE("--repeat and --report time the passes and describe the model's work and memory", "[tool][report]") {
  struct run {
    const char* fixture;
    bool reuses;  // whether some layer reuses heads, so the encoder keeps reuse state
    int threads;
  };
  for (const run& c : {run{"reuse_partial", true, 2}, run{"encoder_post_ln_gelu", false, 1}}) {
    INFO("fixture " << c.fixture);
    const scratch_dir scratch;
    const fs::path model = make_model_dir(scratch, c.fixture), out_dir = scratch / "out",
                   output = out_dir / "out.safetensors", report = scratch / "report.json";
    fs::create_directory(out_dir);
    const tool_result r = run_tool(
        scratch, {"--model", model.string(), "--input", fixture_file(c.fixture).string(), "--output", output.string(),
                  "--threads", std::to_string(c.threads), "--repeat", "3", "--report", report.string()});
    INFO("stderr: " << r.err);
    REQUIRE(r.status == 0);
    CHECK(r.err.empty());
    // Without --output-attentions the output holds the last hidden state only.
    CHECK(listing(out_dir) == std::vector<std::string>{"out.safetensors"});
    CHECK(io::safetensors_reader(output).names() == std::vector<std::string>{"last_hidden_state"});

    const nlohmann::json j = read_json(report);
    INFO("report: " << j.dump());
    REQUIRE(j.at("forward_ms").is_array());
    CHECK(j.at("forward_ms").size() == 3);
    for (const nlohmann::json& ms : j.at("forward_ms")) CHECK(ms.get<double>() > 0);  // times: only their sign is known
    CHECK(j.at("threads").get<int>() == c.threads);

    // The figures are the model's, as the library reports them for the same
    // checkpoint and shape in this process (the cost model and the byte counts
    // are themselves checked by hand in test_cost_model.cpp).
    const std::vector<index_t> shape = io::safetensors_reader(output).find("last_hidden_state").shape;
    REQUIRE(shape.size() == 3);
    const index_t b = shape[0], n = shape[1];
    CHECK(j.at("batch").get<index_t>() == b);
    CHECK(j.at("seq").get<index_t>() == n);
    const io::model<float> loaded = io::load_model<float>(model);
    const auto cost = reuseformer::analysis::measure(loaded.encoder(), b, n, c.threads);
    CHECK(j.at("flops").get<double>() == 2 * cost.multiply_adds);
    CHECK(j.at("parameter_bytes").get<std::size_t>() == loaded.parameter_bytes());
    CHECK(j.at("referenced_parameter_bytes").get<std::size_t>() == loaded.referenced_parameter_bytes());
    // The fixtures are F32: the tensors the layers read are used in place, none converted.
    CHECK(j.at("converted_parameter_bytes").get<std::int64_t>() == 0);
    CHECK(j.at("workspace_bytes").get<std::size_t>() == cost.workspace_bytes);
    CHECK(j.at("reuse_state_bytes").get<std::size_t>() == cost.reuse_state_bytes);
    CHECK((cost.reuse_state_bytes > 0) == c.reuses);
    // The library's promise: forward passes do not allocate once the workspace exists.
    CHECK(j.at("heap_allocations_during_forward").get<std::int64_t>() == 0);
  }
}

TEST_CASE("--packed skips padded tokens: PyTorch's outputs at real tokens, 0 at padding", "[tool][packed]") {
  for (const char* name : {"reuse_partial", "symmetric_causal", "encoder_post_ln_gelu"}) {
    INFO("fixture " << name);
    const scratch_dir scratch;
    const fs::path model = make_model_dir(scratch, name), output = scratch / "out.safetensors",
                   report = scratch / "report.json";
    const tool_result r =
        run_tool(scratch, {"--model", model.string(), "--input", fixture_file(name).string(), "--output",
                           output.string(), "--packed", "--repeat", "1", "--report", report.string()});
    INFO("stderr: " << r.err);
    REQUIRE(r.status == 0);
    const io::safetensors_reader reference(fixture_file(name));
    const std::vector<index_t> shape = reference.find("expected").shape;  // [B, N, d]
    const io::tensor_info& mask_info = reference.find("attention_mask");  // I64 in these fixtures
    REQUIRE(io::name(mask_info.type) == std::string("I64"));
    std::vector<std::int64_t> mask(mask_info.bytes.size() / sizeof(std::int64_t));
    std::memcpy(mask.data(), mask_info.bytes.data(), mask_info.bytes.size());
    std::vector<double> expected = read_reference(reference, "expected");
    index_t tokens = 0;
    for (std::size_t i = 0; i < mask.size(); ++i) {
      tokens += mask[i];
      if (mask[i] == 0) std::fill_n(expected.begin() + static_cast<index_t>(i) * shape[2], shape[2], 0.0);
    }
    CHECK(tokens < shape[0] * shape[1]);  // the fixture has padding to skip
    CHECK_CLOSE(reuseformer_test::compare(read_output(io::safetensors_reader(output), "last_hidden_state", shape),
                                          expected, float_rel, float_abs));
    const nlohmann::json j = read_json(report);
    CHECK(j.at("tokens").get<index_t>() == tokens);
    CHECK(j.at("padded_tokens").get<index_t>() == shape[0] * shape[1]);
    CHECK(j.at("packed").get<bool>());
    CHECK(j.at("heap_allocations_during_forward").get<std::int64_t>() == 0);
  }
}

TEST_CASE("usage errors exit 2 with one message and the usage text", "[tool][errors]") {
  const scratch_dir scratch;
  const std::string usage =
      "usage: reuseformer-encode --model DIR --input IN.safetensors --output OUT.safetensors\n"
      "                          [--threads N] [--repeat R] [--report REPORT.json] [--output-attentions]\n"
      "                          [--packed] [--precision fp32|bf16|int8]\n";
  // Usage is checked before any file is opened, so the paths need not exist.
  const auto rejects = [&](const std::vector<std::string>& args, const std::string& message) {
    const tool_result r = run_tool(scratch, args);
    CHECK(r.status == 2);
    CHECK(r.err == "reuseformer-encode: " + message + "\n" + usage);
  };
  const std::vector<std::string> required{"--model", "m", "--input", "in.safetensors", "--output", "out.safetensors"};
  const auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), required.begin(), required.end());
    return extra;
  };

  rejects({}, "--model, --input and --output are required");
  rejects({"--model", "m", "--input", "in.safetensors"}, "--model, --input and --output are required");
  rejects(with({"--verbose", "1"}), "unknown option '--verbose'");
  rejects(with({"--verbose"}), "unknown option '--verbose'");      // last, without a value
  rejects({"in.safetensors"}, "unknown option 'in.safetensors'");  // a stray argument
  rejects(with({"--threads", "0"}), "--threads: expected an integer >= 1, found '0'");
  rejects(with({"--threads", "abc"}), "--threads: expected an integer >= 1, found 'abc'");
  rejects(with({"--threads", "2x"}), "--threads: expected an integer >= 1, found '2x'");
  rejects(with({"--repeat", "-1"}), "--repeat: expected an integer >= 0, found '-1'");
  rejects(with({"--threads"}), "--threads: expected a value");
  rejects({"--model"}, "--model: expected a value");
  rejects(with({"--precision", "fp16"}), "--precision: expected fp32, bf16 or int8, found 'fp16'");
  rejects(with({"--precision"}), "--precision: expected a value");
  rejects(with({"--packed", "--output-attentions"}), "--packed: expected without --output-attentions, found both");
}

TEST_CASE("input and format errors exit 1 with one message and write no output", "[tool][errors]") {
  // The model: encoder_post_ln_gelu (d = 32, no embeddings, standard scores);
  // the input: a valid batch B = 2, N = 7 that each section spoils in one way.
  const scratch_dir scratch;
  const fs::path model = make_model_dir(scratch, "encoder_post_ln_gelu"), weights = model / "model.safetensors",
                 input = scratch / "input.safetensors", out_dir = scratch / "out", output = out_dir / "out.safetensors";
  fs::create_directory(out_dir);
  std::vector<float> hidden(2 * 7 * 32, 0.25f);
  std::vector<std::int64_t> mask{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
  const io::tensor_entry hidden_entry = io::make_entry("hidden_states", hidden, {2, 7, 32});
  const io::tensor_entry mask_entry = io::make_entry("attention_mask", mask, {2, 7});
  io::write_safetensors(input, {hidden_entry, mask_entry});

  // Runs the tool: exit status 1, `message` (after the tool's name) as the whole
  // stderr, and nothing left in the output directory, temporary files included.
  const auto rejects = [&](const std::string& message) {
    const tool_result r =
        run_tool(scratch, {"--model", model.string(), "--input", input.string(), "--output", output.string()});
    CHECK(r.status == 1);
    CHECK(r.err == "reuseformer-encode: " + message + "\n");
    CHECK(listing(out_dir).empty());
  };
  const std::string in = input.string() + ": ", weights_file = weights.string() + ": ";

  SECTION("the valid input is accepted (so each section below fails for its one reason)") {
    const tool_result r =
        run_tool(scratch, {"--model", model.string(), "--input", input.string(), "--output", output.string()});
    CHECK(r.status == 0);
    CHECK(r.err.empty());
  }

  // The model directory.
  SECTION("no config.json") {
    fs::remove(model / "config.json");
    rejects((model / "config.json").string() + ": cannot open: No such file or directory");
  }
  SECTION("config.json is not JSON") {
    write_text(model / "config.json", "{\"hidden_size\": 32,");
    // The rest of the message is nlohmann::json's description of the error,
    // whose wording is that library's, not the tool's.
    const tool_result r =
        run_tool(scratch, {"--model", model.string(), "--input", input.string(), "--output", output.string()});
    CHECK(r.status == 1);
    CHECK(r.err.starts_with("reuseformer-encode: " + (model / "config.json").string() +
                            ": expected JSON, found a syntax error: "));
    CHECK(std::ranges::count(r.err, '\n') == 1);
    CHECK(listing(out_dir).empty());
  }
  SECTION("model.safetensors truncated to 100 bytes") {
    const std::string bytes = read_text(fixture_file("encoder_post_ln_gelu"));
    std::uint64_t header_length = 0;
    std::memcpy(&header_length, bytes.data(), sizeof header_length);
    write_text(weights, bytes.substr(0, 100));
    rejects(weights_file + "header length: expected at most 92 bytes (the rest of the input), found " +
            std::to_string(header_length));
  }

  // The weights, rewritten from the fixture's tensors with one change.
  SECTION("a tensor missing, misshapen or ruled out by the configuration") {
    const std::string value = "encoder.layer.1.attention.self.value.weight";
    const io::safetensors_reader vanilla(fixture_file("encoder_post_ln_gelu"));
    std::vector<io::tensor_entry> tensors = entries_of(vanilla);
    const auto entry = [&](const std::string& name) {
      return std::ranges::find(tensors, name, &io::tensor_entry::name);
    };
    SECTION("missing") {
      tensors.erase(entry(value));
      io::write_safetensors(weights, tensors);
      rejects(weights_file + "tensor '" + value + "': missing");
    }
    SECTION("misshapen: [16, 64] where [32, 32] is expected (the same byte count)") {
      entry(value)->shape = {16, 64};
      io::write_safetensors(weights, tensors);
      rejects(weights_file + value + ": expected shape [32, 32], found [16, 64]");
    }
    SECTION("a key projection in a symmetric model (keys are the queries)") {
      fs::copy_file(fixture_dir / "symmetric.config.json", model / "config.json", fs::copy_options::overwrite_existing);
      const io::safetensors_reader symmetric(fixture_file("symmetric"));
      std::vector<io::tensor_entry> with_key = entries_of(symmetric);
      with_key.push_back(*entry("encoder.layer.0.attention.self.key.weight"));
      io::write_safetensors(weights, with_key);
      rejects(
          weights_file +
          "tensor 'encoder.layer.0.attention.self.key.weight': unexpected (symmetric scores have no key projection)");
    }
  }

  // The input file.
  SECTION("no input file") {
    fs::remove(input);
    rejects(in + "cannot open: No such file or directory");
  }
  SECTION("neither hidden_states nor input_ids") {
    io::write_safetensors(input, {mask_entry});
    rejects(in + "expected one of the tensors 'hidden_states' and 'input_ids', found neither");
  }
  SECTION("both hidden_states and input_ids") {
    io::write_safetensors(input, {hidden_entry, io::make_entry("input_ids", mask, {2, 7})});
    rejects(in + "expected one of the tensors 'hidden_states' and 'input_ids', found both");
  }
  SECTION("hidden_states of the wrong hidden size") {
    io::write_safetensors(input, {io::make_entry("hidden_states", hidden, {2, 14, 16})});
    rejects(in + "tensor 'hidden_states': expected shape [B, N, 32] with B, N >= 1, found [2, 14, 16]");
  }
  SECTION("hidden_states of an integer dtype") {
    const std::vector<std::int64_t> integers(hidden.size(), 0);
    io::write_safetensors(input, {io::make_entry("hidden_states", integers, {2, 7, 32})});
    rejects(in + "tensor 'hidden_states': expected a floating-point dtype (F32), found I64");
  }
  SECTION("hidden_states holding NaN") {
    hidden[(1 * 7 + 2) * 32 + 3] = std::numeric_limits<float>::quiet_NaN();
    io::write_safetensors(input, {hidden_entry, mask_entry});
    rejects(in + "tensor 'hidden_states': expected finite values, found nan at [1, 2, 3]");
  }
  SECTION("input_ids for a model without embeddings") {
    io::write_safetensors(input, {io::make_entry("input_ids", mask, {2, 7}), mask_entry});
    rejects(in + "tensor 'input_ids': the model has no embeddings; give 'hidden_states' instead");
  }
  SECTION("attention_mask of the wrong shape") {
    io::write_safetensors(input, {hidden_entry, io::make_entry("attention_mask", mask, {7, 2})});
    rejects(in + "tensor 'attention_mask': expected shape [2, 7], found [7, 2]");
  }
  SECTION("attention_mask holding 2") {
    mask[10] = 2;
    io::write_safetensors(input, {hidden_entry, mask_entry});
    rejects(in + "attention_mask[1, 3]: expected 0 (padding) or 1 (token), found 2");
  }
  SECTION("attention_mask of dtype F64") {
    const std::vector<double> doubles(mask.begin(), mask.end());
    io::write_safetensors(input, {hidden_entry, io::make_entry("attention_mask", doubles, {2, 7})});
    rejects(in + "tensor 'attention_mask': expected dtype I64, I32 or F32, found F64");
  }
  SECTION("attention_mask of dtype U8") {
    const std::vector<std::uint8_t> bytes(mask.begin(), mask.end());
    io::write_safetensors(input, {hidden_entry, io::make_entry("attention_mask", bytes, {2, 7})});
    rejects(in + "tensor 'attention_mask': expected dtype I64, I32 or F32, found U8");
  }
}

TEST_CASE("the output file is replaced atomically", "[tool][atomic]") {
  const scratch_dir scratch;
  const fs::path model = make_model_dir(scratch, "encoder_post_ln_gelu"), input = scratch / "input.safetensors",
                 out_dir = scratch / "out", output = out_dir / "out.safetensors";
  fs::create_directory(out_dir);
  const std::vector<float> hidden(2 * 7 * 32, 0.25f);
  std::vector<std::int64_t> mask(14, 1);
  const auto write_input = [&] {
    io::write_safetensors(
        input, {io::make_entry("hidden_states", hidden, {2, 7, 32}), io::make_entry("attention_mask", mask, {2, 7})});
  };
  const auto encode = [&] {
    return run_tool(scratch, {"--model", model.string(), "--input", input.string(), "--output", output.string()});
  };
  const std::string previous = "the previous output\n";

  SECTION("a failed run leaves the previous output as it was") {
    write_text(output, previous);
    mask[3] = 2;
    write_input();
    const tool_result r = encode();
    CHECK(r.status == 1);
    CHECK(r.err == "reuseformer-encode: " + input.string() +
                       ": attention_mask[0, 3]: expected 0 (padding) or 1 (token), found 2\n");
    CHECK(read_text(output) == previous);
    CHECK(listing(out_dir) == std::vector<std::string>{"out.safetensors"});
  }
  SECTION("a failure while writing removes the temporary file") {
    // A directory in the output's place: the result is computed and written to
    // a temporary file, and only the final rename fails.
    fs::create_directory(output);
    write_input();
    const tool_result r = encode();
    CHECK(r.status == 1);
    CHECK(r.err ==
          "reuseformer-encode: " + output.string() + ": cannot rename the temporary file onto it: Is a directory\n");
    CHECK(listing(out_dir) == std::vector<std::string>{"out.safetensors"});
    CHECK(fs::is_directory(output));
    CHECK(fs::is_empty(output));
  }
  SECTION("a successful run replaces the previous output") {
    write_text(output, previous);
    write_input();
    const tool_result r = encode();
    CHECK(r.status == 0);
    CHECK(r.err.empty());
    CHECK(io::safetensors_reader(output).names() == std::vector<std::string>{"last_hidden_state"});
    CHECK(listing(out_dir) == std::vector<std::string>{"out.safetensors"});
  }
}

// The tool run on a fixture checkpoint at one --precision: its report's
// parameter bytes and its output.
struct precision_run {
  std::int64_t parameter_bytes = 0;
  std::vector<float> output;
};
precision_run run_at_precision(const scratch_dir& scratch, const fs::path& model, const std::string& name,
                               const std::string& precision) {
  const fs::path output = scratch / ("out_" + precision + ".safetensors"),
                 report = scratch / ("report_" + precision + ".json");
  const tool_result r =
      run_tool(scratch, {"--model", model.string(), "--input", fixture_file(name).string(), "--output", output.string(),
                         "--precision", precision, "--report", report.string()});
  INFO("stderr: " << r.err);
  REQUIRE(r.status == 0);
  const nlohmann::json j = read_json(report);
  CHECK(j.at("precision").get<std::string>() == precision);
  const io::safetensors_reader reference(fixture_file(name));
  return {j.at("parameter_bytes").get<std::int64_t>(),
          read_output(io::safetensors_reader(output), "last_hidden_state", reference.find("expected").shape)};
}

TEST_CASE("--precision bf16 and int8 run the narrow products: their accuracy, fewer weight bytes",
          "[tool][bf16][int8]") {
  // The library's bf16 and int8 parity (tests/test_pytorch_parity.cpp) through
  // the tool: bf16's rms error against the float64 reference at most 1.25x
  // that of PyTorch's own bf16 result; int8's that of an ONNX Runtime-style
  // quantization of this fixture, measured there (1.29e-2; ours 1.17e-2); and
  // fewer parameter bytes than at fp32.
  const std::string name = "encoder_post_ln_gelu";
  const scratch_dir scratch;
  const fs::path model = make_model_dir(scratch, name);
  const precision_run fp32 = run_at_precision(scratch, model, name, "fp32"),
                      bf16 = run_at_precision(scratch, model, name, "bf16"),
                      int8 = run_at_precision(scratch, model, name, "int8");
  const io::safetensors_reader reference(fixture_file(name));
  const std::vector<double> expected = read_reference(reference, "expected");
  const io::loaded_tensor<float> torch_bf16 = reference.load<float>("expected_bf16");
  const auto rms = [&](const float* actual) {
    double sum = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) sum += (actual[i] - expected[i]) * (actual[i] - expected[i]);
    return std::sqrt(sum / static_cast<double>(expected.size()));
  };
  REQUIRE(bf16.output.size() == expected.size());
  REQUIRE(int8.output.size() == expected.size());
  INFO("rms error: fp32 " << rms(fp32.output.data()) << ", bf16 " << rms(bf16.output.data()) << ", PyTorch bf16 "
                          << rms(torch_bf16.data()) << ", int8 " << rms(int8.output.data()));
  CHECK(rms(fp32.output.data()) < 1e-5);  // fp32 is the float path: exact to float rounding
  CHECK(rms(bf16.output.data()) > 1e-4);  // bf16 rounds: the flag took effect
  CHECK(rms(bf16.output.data()) <= 1.25 * rms(torch_bf16.data()));
  CHECK(rms(int8.output.data()) > rms(bf16.output.data()));  // int8 quantizes: the flag took effect
  CHECK(rms(int8.output.data()) <= 1.29e-2);
  CHECK(bf16.parameter_bytes < fp32.parameter_bytes);
  CHECK(int8.parameter_bytes < bf16.parameter_bytes);
}

TEST_CASE("--precision int8 on a checkpoint of int8 weights: its float source's output, bit for bit", "[tool][int8]") {
  // The fixture's Linear weights quantized as int8_products quantizes them
  // (per output row, scale max |w| / 127) and written as I8 with their
  // scales (docs/checkpoints.md §Int8 weights): the tool packs those as they
  // are, the same packed weights as from the float file, so the same output.
  // At fp32 the same file runs on the dequantized weights, q · scale.
  const std::string name = "encoder_post_ln_gelu";
  const scratch_dir f32_scratch, i8_scratch;
  const fs::path f32_model = make_model_dir(f32_scratch, name), i8_model = make_model_dir(i8_scratch, name);
  {
    const io::safetensors_reader source(f32_model / "model.safetensors");
    std::deque<std::vector<std::int8_t>> values;
    std::deque<std::vector<float>> scales;
    std::vector<io::tensor_entry> quantized;
    for (const io::tensor_entry& e : entries_of(source)) {
      if (!(e.name.starts_with("encoder.layer.") && e.name.ends_with(".weight") && e.shape.size() == 2)) {
        quantized.push_back(e);
        continue;
      }
      const io::loaded_tensor<float> w = source.load<float>(e.name);
      const index_t out = e.shape[0], in = e.shape[1];
      std::vector<std::int8_t>& q = values.emplace_back(static_cast<std::size_t>(out * in));
      std::vector<float>& scale = scales.emplace_back(static_cast<std::size_t>(out));
      for (index_t r = 0; r < out; ++r) {
        float max_abs = 0;
        for (index_t p = 0; p < in; ++p) max_abs = std::max(max_abs, std::abs(w.data()[r * in + p]));
        scale[r] = reuseformer::gemm::column_scale(max_abs);
        for (index_t p = 0; p < in; ++p)
          q[r * in + p] = reuseformer::gemm::quantize_weight(w.data()[r * in + p], scale[r]);
      }
      quantized.push_back(io::make_entry(e.name, q, e.shape));
      quantized.push_back(io::make_entry(e.name + "_scale", scale, {out}));
    }
    io::write_safetensors(i8_model / "model.safetensors", quantized);
  }
  const precision_run from_f32 = run_at_precision(f32_scratch, f32_model, name, "int8"),
                      from_i8 = run_at_precision(i8_scratch, i8_model, name, "int8");
  CHECK(from_i8.output == from_f32.output);
  CHECK(from_i8.parameter_bytes == from_f32.parameter_bytes);

  const std::vector<double> expected = read_reference(io::safetensors_reader(fixture_file(name)), "expected");
  const auto rms = [&](const std::vector<float>& actual) {
    double sum = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) sum += (actual[i] - expected[i]) * (actual[i] - expected[i]);
    return std::sqrt(sum / static_cast<double>(expected.size()));
  };
  const precision_run fp32 = run_at_precision(f32_scratch, f32_model, name, "fp32"),
                      dequantized = run_at_precision(i8_scratch, i8_model, name, "fp32");
  REQUIRE(dequantized.output.size() == expected.size());
  INFO("rms error: fp32 " << rms(fp32.output) << ", fp32 on the int8 weights " << rms(dequantized.output) << ", int8 "
                          << rms(from_i8.output));
  CHECK(rms(dequantized.output) > 10 * rms(fp32.output));  // the int8 weights, not the float ones
  CHECK(rms(dequantized.output) <= 1.29e-2);
  CHECK(dequantized.parameter_bytes == fp32.parameter_bytes);
}
