// reuseformer-plan run as a program (its contract is the header comment of
// tools/reuseformer_plan.cpp): a planned checkpoint that loads, its plan.json
// and heatmap, each planning target, and every error path with its exact
// message (exit 1 or 2, nothing written).

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <reuseformer/io.hpp>

#include "support/catch.hpp"
#include "support/program.hpp"
#include "support/temp_dir.hpp"

#ifndef REUSEFORMER_PLAN
#error "REUSEFORMER_PLAN must be defined (a string literal: the path of the reuseformer-plan program)"
#endif

namespace fs = std::filesystem;
namespace io = reuseformer::io;
using reuseformer::index_t;
using reuseformer_test::temp_dir;

namespace {

const fs::path fixture_dir = REUSEFORMER_FIXTURE_DIR;

using reuseformer_test::listing;
using reuseformer_test::read_text;
using tool_result = reuseformer_test::program_result;

// Runs the tool; stdout and stderr are captured in scratch/ (outside the directories a test lists).
tool_result run_tool(const temp_dir& scratch, const std::vector<std::string>& args) {
  return reuseformer_test::run_program(REUSEFORMER_PLAN, args, scratch.path);
}

// scratch/<name>: the fixture's config.json and weights as a checkpoint directory.
fs::path model_dir(const temp_dir& scratch, const std::string& fixture, const std::string& name = "model") {
  const fs::path dir = scratch / name;
  fs::create_directories(dir);
  fs::copy_file(fixture_dir / (fixture + ".config.json"), dir / "config.json");
  fs::copy_file(fixture_dir / (fixture + ".safetensors"), dir / "model.safetensors");
  return dir;
}

}  // namespace

TEST_CASE("reuseformer-plan: a planned checkpoint, its report and heatmap", "[tool][planner]") {
  temp_dir scratch;
  // encoder_post_ln_gelu: 2 layers of 4 heads; its file also holds hidden_states [2, 7, 32] and a mask.
  const fs::path model = model_dir(scratch, "encoder_post_ln_gelu");
  const std::string calibration = (fixture_dir / "encoder_post_ln_gelu.safetensors").string();
  const tool_result r =
      run_tool(scratch, {"--model", model.string(), "--calibration", calibration, "--reuse-heads", "2", "--out",
                         (scratch / "planned").string(), "--threads", "1", "--repeat", "1"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  CHECK(r.out.find("layer 1 vs 0") != std::string::npos);
  CHECK(r.out.find("plan (planned): reuse_schedule [0, 2]") != std::string::npos);
  CHECK(r.out.find("drift on ") != std::string::npos);
  CHECK(listing(scratch / "planned") ==
        std::vector<std::string>{"config.json", "model.safetensors", "plan.json", "similarity.png"});
  const io::model<float> planned = io::load_model<float>(scratch / "planned");
  CHECK(planned.config().encoder.reuse_schedule == std::vector<index_t>{0, 2});
  const nlohmann::json report = nlohmann::json::parse(read_text(scratch / "planned" / "plan.json"));
  CHECK(report["reuse_schedule"] == nlohmann::json::array({0, 2}));
  CHECK(report["plan"][0]["reused"].size() == 2);
  CHECK(report["predicted_multiply_adds"]["saved_fraction"].get<double>() > 0);
  CHECK(report["drift"]["cosine"].get<double>() > 0);
  CHECK(read_text(scratch / "planned" / "similarity.png").substr(1, 3) == "PNG");

  SECTION("the other targets") {
    CHECK(run_tool(scratch, {"--model", model.string(), "--calibration", calibration, "--budget", "0.97", "--out",
                             (scratch / "budget").string(), "--repeat", "1"})
              .status == 0);
    const nlohmann::json budget = nlohmann::json::parse(read_text(scratch / "budget" / "plan.json"));
    CHECK(budget["predicted_multiply_adds"]["saved_fraction"].get<double>() >= 0.03);
    CHECK(run_tool(scratch, {"--model", model.string(), "--calibration", calibration, "--min-similarity", "0", "--out",
                             (scratch / "all").string(), "--repeat", "1"})
              .status == 0);
    CHECK(nlohmann::json::parse(read_text(scratch / "all" / "plan.json"))["reuse_schedule"] ==
          nlohmann::json::array({0, 4}));
    CHECK(run_tool(scratch, {"--model", model.string(), "--calibration", calibration, "--reuse-heads", "4", "--naive",
                             "--out", (scratch / "naive").string(), "--repeat", "1"})
              .status == 0);
    CHECK(nlohmann::json::parse(read_text(scratch / "naive" / "plan.json"))["method"] == "naive");
  }
}

TEST_CASE("reuseformer-plan: every bad input is refused with a message, nothing written", "[tool][planner][errors]") {
  temp_dir scratch;
  const fs::path model = model_dir(scratch, "encoder_post_ln_gelu");
  const std::string calibration = (fixture_dir / "encoder_post_ln_gelu.safetensors").string();
  const std::string config = (model / "config.json").string();
  const std::string out = (scratch / "out").string();
  fs::create_directory(scratch / "taken");
  // A calibration batch of the wrong width.
  const std::vector<float> narrow(3 * 16);
  io::write_safetensors(scratch / "narrow.safetensors", {io::make_entry("hidden_states", narrow, {1, 3, 16})});
  const fs::path reuse = model_dir(scratch, "reuse_partial", "reuse");
  const fs::path single = model_dir(scratch, "encoder_post_ln_gelu_new", "single");
  const std::vector<std::string> before = listing(scratch.path);

  // `message` is the whole first line of stderr, or its start when it ends in "…".
  const auto refused = [&](const std::vector<std::string>& args, int status, const std::string& message) {
    const tool_result r = run_tool(scratch, args);
    CHECK(r.status == status);
    const std::string line = r.err.substr(0, r.err.find('\n'));
    if (message.ends_with("…"))
      CHECK(line.starts_with("reuseformer-plan: " + message.substr(0, message.size() - std::string("…").size())));
    else
      CHECK(line == "reuseformer-plan: " + message);
    CHECK(r.out.empty());
    std::vector<std::string> after = listing(scratch.path);
    std::erase_if(after, [](const std::string& name) { return name == "stdout.txt" || name == "stderr.txt"; });
    CHECK(after == before);
  };
  const std::vector<std::string> base = {"--model", model.string(), "--calibration", calibration};
  const auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };

  refused(with({"--reuse-heads", "2", "--out", (scratch / "taken").string()}), 1,
          (scratch / "taken").string() +
              ": expected a path that does not exist (the output directory is created), found an existing directory");
  refused(with({"--reuse-heads", "5", "--out", out}), 1,
          "--reuse-heads 5: expected at most 4 (" + config + ": num_attention_heads), found 5");
  refused(with({"--reuse-heads", "1", "--layers", "1-2", "--out", out}), 1,
          "--layers 1-2: expected layers within 1-1 (" + config + ": num_hidden_layers 2)");
  refused({"--model", model.string(), "--calibration", (scratch / "narrow.safetensors").string(), "--reuse-heads", "1",
           "--out", out},
          1,
          (scratch / "narrow.safetensors").string() +
              ": tensor 'hidden_states': expected shape [B, N, 32] with B, N >= 1, found [1, 3, 16]");
  refused(
      {"--model", reuse.string(), "--calibration", (fixture_dir / "reuse_partial.safetensors").string(),
       "--reuse-heads", "1", "--out", out},
      1,
      (reuse / "config.json").string() + ": expected a model without reuse to plan, found 2 reused heads in layer 1");
  refused({"--model", single.string(), "--calibration", (fixture_dir / "encoder_post_ln_gelu_new.safetensors").string(),
           "--reuse-heads", "1", "--out", out},
          1, (single / "config.json").string() + ": expected a model of at least 2 layers to plan reuse, found 1");
  refused(with({"--budget", "0.2", "--out", out}), 1,
          "--budget 0.2: expected a fraction of the multiply-adds that reuse can reach, found that reusing every "
          "allowed head still costs 0.…");
  refused(with({"--out", out}), 2, "expected exactly one of --reuse-heads, --budget and --min-similarity");
  refused(with({"--reuse-heads", "1", "--budget", "0.5", "--out", out}), 2,
          "expected exactly one of --reuse-heads, --budget and --min-similarity");
  refused(with({"--budget", "1.5", "--out", out}), 2,
          "--budget: expected a fraction of the original multiply-adds in (0, 1], found '1.5'");
  refused(with({"--min-similarity", "0.5", "--naive", "--out", out}), 2, "--naive: expected with --reuse-heads");
  refused({"--model", model.string(), "--reuse-heads", "1", "--out", out}, 2,
          "--model, --calibration and --out are required");
  refused(with({"--reuse-heads", "x", "--out", out}), 2, "--reuse-heads: expected an integer >= 0, found 'x'");
  refused(with({"--frobnicate"}), 2, "unknown option '--frobnicate'");
}
