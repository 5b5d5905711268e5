// Attention similarity (analysis/attention_similarity.hpp), the reuse planner
// (analysis/reuse_planner.hpp, analysis/assignment.hpp) and the planned
// checkpoint rewrite (io/planned_checkpoint.hpp); docs/semantics.md
// §Attention similarity and §Reuse planning.
#include <reuseformer/analysis/attention_similarity.hpp>
#include <reuseformer/analysis/reuse_planner.hpp>
#include <reuseformer/io.hpp>
#include <reuseformer/io/planned_checkpoint.hpp>
#include <reuseformer/reuseformer.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/catch.hpp"
#include "support/errors.hpp"
#include "support/random.hpp"
#include "support/temp_dir.hpp"

namespace rf = reuseformer;
namespace an = reuseformer::analysis;
namespace io = reuseformer::io;
namespace fs = std::filesystem;
using reuseformer_test::error_message;
using reuseformer_test::random_vector;
using reuseformer_test::temp_dir;

namespace {

rf::encoder_config small_config(rf::score_function score = rf::score_function::standard, bool relative = false,
                                rf::norm_placement norm = rf::norm_placement::post, rf::index_t layers = 3) {
  rf::encoder_config c;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.intermediate_size = 48;
  c.num_hidden_layers = layers;
  c.score = score;
  c.norm = norm;
  c.use_relative_pe = relative;
  c.pe_max_seq_length = 4;
  return c;
}

// config.json for `c` (no reuse).
void write_config(const fs::path& dir, const rf::encoder_config& c) {
  const nlohmann::json json = {{"hidden_size", c.hidden_size},
                               {"num_attention_heads", c.num_attention_heads},
                               {"intermediate_size", c.intermediate_size},
                               {"num_hidden_layers", c.num_hidden_layers},
                               {"hidden_act", "gelu"},
                               {"layer_norm_eps", c.layer_norm_eps},
                               {"plpi_affinity_function", rf::name_of(c.score)},
                               {"norm_first", c.norm == rf::norm_placement::pre},
                               {"use_relative_pe", c.use_relative_pe},
                               {"pe_max_seq_length", c.pe_max_seq_length}};
  std::ofstream(dir / "config.json") << json.dump(2);
}

// A checkpoint directory of `c` with the parameters `p`.
void write_model(const fs::path& dir, const rf::encoder_parameters<float>& p) {
  fs::create_directories(dir);
  write_config(dir, p.config());
  io::write_safetensors(dir / "model.safetensors", io::encoder_tensors(p.config(), p.layers()));
}

struct batch {
  rf::index_t b = 3, n = 7, d = 32;
  std::vector<float> hidden = random_vector<float>(static_cast<std::size_t>(b * n * d), 11);
  std::vector<std::int64_t> mask = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0};
  [[nodiscard]] rf::tensor_view<const float, 3> input() const { return {hidden.data(), {b, n, d}}; }
  [[nodiscard]] rf::attention_mask attention() const {
    return rf::tensor_view<const std::int64_t, 2>(mask.data(), {b, n});
  }
};

// The final hidden states of the checkpoint in `dir` on `x`.
std::vector<float> run(const fs::path& dir, const batch& x) {
  const io::model<float> model = io::load_model<float>(dir);
  std::vector<float> out(x.hidden.size());
  rf::workspace ws = model.make_workspace(x.b, x.n);
  model.forward(x.input(), rf::tensor_view<float, 3>(out.data(), {x.b, x.n, x.d}), ws, x.attention());
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// A similarity report with random entries in [0, 1] for L layers of H heads.
an::similarity_report random_report(rf::index_t layers, rf::index_t heads, std::uint64_t seed) {
  an::similarity_report r{layers, heads, 1, {}};
  for (rf::index_t l = 1; l < layers; ++l) {
    const auto values =
        random_vector<double>(static_cast<std::size_t>(heads * heads), seed + static_cast<std::uint64_t>(l), 0, 1);
    r.pairs.push_back({l, l - 1, heads, values, {}});
  }
  return r;
}

}  // namespace

TEST_CASE("assignment: the optimum of every small problem, by brute force", "[planner]") {
  for (std::uint64_t seed = 0; seed < 60; ++seed) {
    const rf::index_t n = 1 + static_cast<rf::index_t>(seed % 4), m = n + static_cast<rf::index_t>(seed / 4 % 3);
    const auto cost = random_vector<double>(static_cast<std::size_t>(n * m), seed, -1, 1);
    const std::vector<rf::index_t> col = an::solve_assignment(cost, n, m);
    double found = 0;
    for (rf::index_t r = 0; r < n; ++r)
      found += cost[static_cast<std::size_t>(r * m + col[static_cast<std::size_t>(r)])];
    std::vector<rf::index_t> columns(static_cast<std::size_t>(m));
    std::iota(columns.begin(), columns.end(), 0);
    double best = 1e9;
    do {  // every injective map rows -> columns appears as the first n of some permutation
      double total = 0;
      for (rf::index_t r = 0; r < n; ++r)
        total += cost[static_cast<std::size_t>(r * m + columns[static_cast<std::size_t>(r)])];
      best = std::min(best, total);
    } while (std::next_permutation(columns.begin(), columns.end()));
    std::vector<rf::index_t> sorted = col;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    CHECK(found == Approx(best).margin(1e-12));
  }
}

TEST_CASE("attention similarity: a stack against itself is 1 on the diagonal", "[planner][similarity]") {
  rf::encoder_parameters<float> p(small_config());
  p.fill_random(3, 0.3);
  const rf::encoder<float> model(p.config(), p.layers());
  const batch x;
  std::vector<float> out(x.hidden.size()), stacks(static_cast<std::size_t>(3 * x.b * 4 * x.n * x.n));
  std::vector<rf::tensor_view<float, 4>> views;
  for (int l = 0; l < 3; ++l)
    views.emplace_back(stacks.data() + l * x.b * 4 * x.n * x.n, std::array<rf::index_t, 4>{x.b, 4, x.n, x.n});
  rf::workspace ws = model.make_workspace(x.b, x.n);
  model.forward(x.input(), rf::tensor_view<float, 3>(out.data(), {x.b, x.n, x.d}), ws, x.attention(),
                {.attentions = views});
  const rf::tensor_view<const float, 4> layer1 = views[1];
  const an::layer_similarity self = an::stack_similarity(layer1, layer1, x.attention(), true);
  for (rf::index_t j = 0; j < 4; ++j) {
    CHECK(self.at(j, j) == Approx(1).margin(1e-12));
    CHECK(self.jensen_shannon[static_cast<std::size_t>(j * 5)] == Approx(1).margin(1e-12));
    CHECK(self.best_match(j) == j);
    for (rf::index_t i = 0; i < 4; ++i) {
      CHECK(self.at(j, i) == Approx(self.at(i, j)).margin(1e-12));
      CHECK(self.at(j, i) <= 1 + 1e-12);
      CHECK(self.at(j, i) >= -1e-12);
    }
  }

  SECTION("the model-level analysis measures the same stacks, dense or packed") {
    const an::similarity_report dense = an::attention_similarity(model, x.input(), x.attention(), {.max_distance = 2});
    REQUIRE(dense.pairs.size() == 3);  // (1, 0), (2, 1), (2, 0)
    CHECK(dense.rows == 17);
    const rf::tensor_view<const float, 4> layer0 = views[0];
    const an::layer_similarity direct = an::stack_similarity(layer1, layer0, x.attention());
    for (std::size_t k = 0; k < 16; ++k)
      CHECK(dense.between(1, 0).total_variation[k] == Approx(direct.total_variation[k]).margin(1e-6));
    // The packed batch of the real tokens: the same rows, so the same S up to rounding.
    const std::vector<rf::index_t> offsets = {0, 7, 11, 17};
    std::vector<float> tokens;
    for (rf::index_t b = 0; b < x.b; ++b)
      for (rf::index_t r = 0; r < offsets[static_cast<std::size_t>(b + 1)] - offsets[static_cast<std::size_t>(b)]; ++r)
        tokens.insert(tokens.end(), x.hidden.begin() + (b * x.n + r) * x.d, x.hidden.begin() + (b * x.n + r + 1) * x.d);
    const an::similarity_report packed = an::attention_similarity(
        model, rf::tensor_view<const float, 2>(tokens.data(), {17, x.d}), offsets, {.max_distance = 2});
    for (const auto& [l, m] : {std::pair<rf::index_t, rf::index_t>{1, 0}, {2, 1}, {2, 0}})
      for (std::size_t k = 0; k < 16; ++k)
        CHECK(packed.between(l, m).total_variation[k] == Approx(dense.between(l, m).total_variation[k]).margin(1e-5));
    CHECK(error_message([&] { static_cast<void>(dense.between(2, 0 - 1)); }) ==
          "attention similarity: expected a measured pair of layers, found none for layer 2 against layer -1 "
          "(max_distance too small?)");
  }
}

TEST_CASE("planner: a layer that copies the query/key of the layer below is planned with zero drift", "[planner]") {
  // Pre-LN; layer 0 adds nothing to the stream (zero output projection and
  // feed-forward output), so layer 1 sees layer 0's input, and with layer 0's
  // LayerNorm, query and key its probabilities are layer 0's, head for head.
  const rf::encoder_config c = small_config(rf::score_function::standard, false, rf::norm_placement::pre);
  rf::encoder_parameters<float> p(c);
  p.fill_random(7, 0.4);
  auto layers = p.layers();
  const auto writable = [&](const auto& view) { return p.values().data() + (view.data() - p.values().data()); };
  const auto zero = [&](const auto& view) { std::fill_n(writable(view), view.size(), 0.0f); };
  zero(layers[0].attention.output.weight);
  zero(layers[0].attention.output.bias);
  zero(layers[0].feed_forward.output.weight);
  zero(layers[0].feed_forward.output.bias);
  for (const auto& [to, from] : {std::pair{layers[1].attention.query.weight, layers[0].attention.query.weight},
                                 std::pair{layers[1].attention.key.weight, layers[0].attention.key.weight}})
    std::copy_n(from.data(), from.size(), writable(to));
  for (const auto& [to, from] : {std::pair{layers[1].attention.query.bias, layers[0].attention.query.bias},
                                 std::pair{layers[1].attention.key.bias, layers[0].attention.key.bias},
                                 std::pair{layers[1].attention_norm.weight, layers[0].attention_norm.weight},
                                 std::pair{layers[1].attention_norm.bias, layers[0].attention_norm.bias}})
    std::copy_n(from.data(), from.size(), writable(to));

  temp_dir dir;
  write_model(dir / "model", p);
  const batch x;
  const an::similarity_report s =
      an::attention_similarity(io::load_model<float>(dir / "model").encoder(), x.input(), x.attention());
  for (rf::index_t j = 0; j < 4; ++j) {
    CHECK(s.between(1, 0).at(j, j) == Approx(1).margin(1e-6));
    CHECK(s.between(1, 0).best_match(j) == j);
  }
  const std::vector<float> original = run(dir / "model", x);
  for (const rf::index_t k : {2, 4}) {
    const an::reuse_plan plan = an::plan_reuse(s, {0, k, 0});
    an::check_plan(plan);
    rf::index_t reused = 0;
    for (rf::index_t j = 0; j < 4; ++j)
      if (plan.source[1][static_cast<std::size_t>(j)] >= 0) {
        CHECK(plan.source[1][static_cast<std::size_t>(j)] == j);
        ++reused;
      }
    CHECK(reused == k);
    const fs::path out = dir / ("planned" + std::to_string(k));
    io::write_planned_checkpoint(dir / "model", plan, out);
    CHECK(io::read_config_json((out / "config.json").string()).encoder.reuse_schedule ==
          std::vector<rf::index_t>{0, k, 0});
    CHECK(max_abs_diff(run(out, x), original) < 5e-5);  // the same probabilities; sums in another order
  }
  // The naive plan reuses heads 0..K-1 of layer 0 for heads 2, 3 of layer 1: not the same probabilities.
  io::write_planned_checkpoint(dir / "model", an::naive_reuse(4, {0, 2, 0}), dir / "naive");
  CHECK(max_abs_diff(run(dir / "naive", x), original) > 1e-3);
}

TEST_CASE("planned checkpoint: a head permutation without reuse keeps the outputs", "[planner][io]") {
  const batch x;
  for (const rf::score_function score : rf::all_score_functions)
    for (const bool relative : {false, true}) {
      CAPTURE(rf::name_of(score), relative);
      rf::encoder_parameters<float> p(small_config(score, relative));
      p.fill_random(13, 0.3);
      temp_dir dir;
      write_model(dir / "model", p);
      an::reuse_plan plan = an::reuse_plan::none(3, 4);
      std::mt19937_64 bits(static_cast<std::uint64_t>(score) * 2 + relative);
      for (auto& order : plan.order) std::shuffle(order.begin(), order.end(), bits);
      io::write_planned_checkpoint(dir / "model", plan, dir / "permuted");
      const std::vector<float> a = run(dir / "model", x), b = run(dir / "permuted", x);
      CHECK(max_abs_diff(a, b) < 2e-5);
      CHECK(max_abs_diff(a, b) > 0);  // the weights did move (the sums are in another order)
    }
}

TEST_CASE("planner: every plan keeps to the prefix rule (random similarities and schedules)", "[planner]") {
  std::mt19937_64 bits(99);
  for (std::uint64_t trial = 0; trial < 300; ++trial) {
    const auto layers = static_cast<rf::index_t>(2 + bits() % 5), heads = static_cast<rf::index_t>(1 + bits() % 6);
    const an::similarity_report s = random_report(layers, heads, trial * 31);
    std::vector<rf::index_t> schedule(static_cast<std::size_t>(layers), 0);
    for (rf::index_t l = 1; l < layers; ++l)
      schedule[static_cast<std::size_t>(l)] = static_cast<rf::index_t>(bits() % static_cast<std::uint64_t>(heads + 1));
    CAPTURE(trial, layers, heads, schedule);
    const an::reuse_plan plan = an::plan_reuse(s, schedule);
    CHECK(plan.schedule == schedule);
    CHECK_NOTHROW(an::check_plan(plan));
    CHECK_NOTHROW(an::check_plan(an::naive_reuse(heads, schedule)));
    // Layer 1 reads an unreused layer 0: the plan is the best assignment there.
    const rf::index_t k = schedule[1];
    double planned = 0;
    for (rf::index_t t = 0; t < heads; ++t)
      if (plan.source[1][static_cast<std::size_t>(t)] >= 0)
        planned += s.between(1, 0).at(t, plan.source[1][static_cast<std::size_t>(t)]);
    std::vector<rf::index_t> targets(static_cast<std::size_t>(heads)), sources(static_cast<std::size_t>(heads));
    std::iota(targets.begin(), targets.end(), 0);
    double best = 0;
    do {  // targets[0..k) reuse sources[0..k), over all orders of both
      std::iota(sources.begin(), sources.end(), 0);
      do {
        double total = 0;
        for (rf::index_t j = 0; j < k; ++j)
          total += s.between(1, 0).at(targets[static_cast<std::size_t>(j)], sources[static_cast<std::size_t>(j)]);
        best = std::max(best, total);
      } while (heads <= 4 && std::next_permutation(sources.begin(), sources.end()));
    } while (heads <= 4 && std::next_permutation(targets.begin(), targets.end()));
    if (heads <= 4) CHECK(planned == Approx(best).margin(1e-9));

    const double minimum = 0.3 + 0.6 * static_cast<double>(trial % 7) / 6;
    const an::reuse_plan by_similarity =
        an::plan_reuse_min_similarity(s, minimum, std::vector<bool>(static_cast<std::size_t>(layers), true));
    CHECK_NOTHROW(an::check_plan(by_similarity));
    for (rf::index_t l = 1; l < layers; ++l)
      for (rf::index_t t = 0; t < heads; ++t)
        if (const rf::index_t i = by_similarity.source[static_cast<std::size_t>(l)][static_cast<std::size_t>(t)];
            i >= 0)
          CHECK(s.between(l, l - 1).at(t, i) >= minimum);
  }
}

TEST_CASE("planner: a multiply-add budget from the cost model", "[planner]") {
  const rf::encoder_config c = small_config(rf::score_function::standard, false, rf::norm_placement::post, 4);
  const an::similarity_report s = random_report(4, 4, 5);
  const auto cost = [&](const std::vector<rf::index_t>& schedule) {
    rf::encoder_config planned = c;
    planned.reuse_schedule = schedule;
    return an::cost<float>(planned, 2, 16).multiply_adds;
  };
  const double base = cost({0, 0, 0, 0});
  const std::vector<bool> all(4, true);
  for (const double fraction : {0.99, 0.95, 0.9}) {
    const an::reuse_plan plan = an::plan_reuse_budget(s, c, 2, 16, fraction, all);
    an::check_plan(plan);
    CHECK(cost(plan.schedule) <= fraction * base);
  }
  CHECK(error_message([&] { static_cast<void>(an::plan_reuse_budget(s, c, 2, 16, 0.1, all)); })
            .starts_with("--budget 0.1: expected a fraction of the multiply-adds that reuse can reach, found that "
                         "reusing every allowed head still costs 0."));
}

TEST_CASE("planned checkpoint: errors leave no output directory", "[planner][io][errors]") {
  rf::encoder_parameters<float> p(small_config());
  p.fill_random(1, 0.2);
  temp_dir dir;
  write_model(dir / "model", p);
  const an::reuse_plan plan = an::naive_reuse(4, {0, 2, 1});

  fs::create_directory(dir / "exists");
  CHECK(error_message([&] { io::write_planned_checkpoint(dir / "model", plan, dir / "exists"); }) ==
        (dir / "exists").string() +
            ": expected a path that does not exist (the output directory is created), found an existing directory");

  CHECK(error_message([&] {
          io::write_planned_checkpoint(dir / "model", an::naive_reuse(4, {0, 2}), dir / "out");
        }) == "reuse plan: expected 3 layers of 4 heads (" + (dir / "model" / "config.json").string() +
                  "), found 2 layers of 4 heads");

  an::reuse_plan broken = plan;
  std::swap(broken.order[1][0], broken.order[1][3]);
  CHECK(error_message([&] { io::write_planned_checkpoint(dir / "model", broken, dir / "out"); }) ==
        "reuse plan: layer 1 head 3 (stack position 0): expected source -1, found 1");

  // A checkpoint that already reuses heads.
  io::write_planned_checkpoint(dir / "model", plan, dir / "planned");
  CHECK(error_message([&] { io::write_planned_checkpoint(dir / "planned", plan, dir / "out"); }) ==
        (dir / "planned" / "config.json").string() +
            ": expected a model without reuse to plan, found 2 reused heads in layer 1");

  // A failure after the staging directory was made (a tensor of the wrong shape): nothing is left.
  fs::create_directory(dir / "bad");
  fs::copy(dir / "model" / "config.json", dir / "bad" / "config.json");
  std::vector<io::tensor_entry> tensors = io::encoder_tensors(p.config(), p.layers());
  for (auto& t : tensors)
    if (t.name == "encoder.layer.2.attention.output.dense.weight") t.shape = {16, 64};
  io::write_safetensors(dir / "bad" / "model.safetensors", tensors);
  CHECK(error_message([&] { io::write_planned_checkpoint(dir / "bad", plan, dir / "out"); }) ==
        (dir / "bad" / "model.safetensors").string() +
            ": tensor 'encoder.layer.2.attention.output.dense.weight': expected shape [32, 32], found [16, 64]");
  std::vector<std::string> entries = dir.entries();
  std::sort(entries.begin(), entries.end());
  CHECK(entries == std::vector<std::string>{"bad", "exists", "model", "planned"});
}

namespace {

const fs::path trained = fs::path(REUSEFORMER_FIXTURE_DIR) / "trained_mlm";

// The trained model's embeddings of the first `count` calibration sequences, and their mask.
struct calibration_batch {
  rf::index_t b = 0, n = 0, d = 0;
  std::vector<float> hidden;
  std::vector<std::int64_t> mask;
};
calibration_batch embedded(const io::model<float>& model, const fs::path& file, rf::index_t count) {
  const io::safetensors_reader in(file);
  const io::model_input x = io::read_model_input(in, model.config().encoder.hidden_size, true);
  calibration_batch c{std::min(count, x.batch), x.seq, model.config().encoder.hidden_size, {}, {}};
  c.hidden.resize(static_cast<std::size_t>(c.b * c.n * c.d));
  model.embeddings()->forward(rf::tensor_view<const std::int64_t, 2>(x.ids.data(), {c.b, c.n}), {},
                              rf::tensor_view<float, 3>(c.hidden.data(), {c.b, c.n, c.d}));
  c.mask = in.load_integers("attention_mask");
  c.mask.resize(static_cast<std::size_t>(c.b * c.n));
  return c;
}

}  // namespace

TEST_CASE("trained fixture: a planned checkpoint equals the training script's reuse modules", "[planner][trained]") {
  // planned_reference.safetensors: tools/train/train_mlm.py --reference on the
  // checkpoint reuseformer-plan wrote for --reuse-heads 2 with this calibration
  // (float64), and the plan's orders.
  const io::safetensors_reader reference(trained / "planned_reference.safetensors");
  const io::model<float> model = io::load_model<float>(trained);
  const calibration_batch c = embedded(model, trained / "calibration.safetensors", 64);
  const an::similarity_report s =
      an::attention_similarity(model.encoder(), rf::tensor_view<const float, 3>(c.hidden.data(), {c.b, c.n, c.d}),
                               rf::tensor_view<const std::int64_t, 2>(c.mask.data(), {c.b, c.n}));
  const rf::index_t layers = model.config().encoder.num_hidden_layers;
  std::vector<rf::index_t> schedule(static_cast<std::size_t>(layers), 2);
  schedule[0] = 0;
  const an::reuse_plan plan = an::plan_reuse(s, schedule);
  CHECK(nlohmann::json(plan.order).dump() == reference.metadata().at("orders"));

  temp_dir dir;
  io::write_planned_checkpoint(trained, plan, dir / "planned");
  const io::model<float> planned = io::load_model<float>(dir / "planned");
  const io::model_input x = io::read_model_input(reference, c.d, true);
  std::vector<float> hidden(static_cast<std::size_t>(x.batch * x.seq * c.d)), out(hidden.size());
  const rf::tensor_view<float, 3> h(hidden.data(), {x.batch, x.seq, c.d});
  planned.embeddings()->forward(rf::tensor_view<const std::int64_t, 2>(x.ids.data(), {x.batch, x.seq}), {}, h);
  rf::workspace ws = planned.make_workspace(x.batch, x.seq);
  planned.forward(h, rf::tensor_view<float, 3>(out.data(), {x.batch, x.seq, c.d}), ws, x.mask());
  const io::loaded_tensor<double> expected = reference.load<double>("expected");
  double worst = 0;
  for (std::size_t i = 0; i < out.size(); ++i)
    worst = std::max(worst, std::abs(out[i] - expected.data()[i]) / (1e-4 + 1e-4 * std::abs(expected.data()[i])));
  CHECK(worst <= 1);  // |a - e| <= 1e-4 + 1e-4 |e|: float against float64 through 4 post-LN layers
}
