// Thread safety (native build; also meant to run under -fsanitize=thread with
// -DREUSEFORMER_OPENMP=OFF): a built model is immutable, forward() is const,
// and concurrent calls on one model are independent as long as each has its
// own workspace and its own outputs. Every concurrent result must equal, bit
// for bit, the result of the same call made sequentially beforehand.
//
// Catch2 v2's assertions are not thread-safe: workers only record what they
// see, and the main thread checks it after joining them.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <latch>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <reuseformer/reuseformer.hpp>

#include "support/catch.hpp"
#include "support/finite.hpp"
#include "support/random.hpp"

namespace rf = reuseformer;
using reuseformer_test::all_finite;
using reuseformer_test::random_vector;

namespace {

// One forward call's inputs: [B, N, d] hidden states and a [B, N] mask, viewed
// (several requests may share the same memory).
struct request {
  rf::index_t batch, seq;
  const float* x;
  const std::int64_t* mask;
};

struct outputs {
  std::vector<float> hidden;               // [B, N, d]
  std::vector<std::vector<float>> stacks;  // [B, H, N, N] per attention layer
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool same_bits(const outputs& a, const outputs& b) {
  if (!same_bits(a.hidden, b.hidden) || a.stacks.size() != b.stacks.size()) return false;
  for (std::size_t l = 0; l < a.stacks.size(); ++l)
    if (!same_bits(a.stacks[l], b.stacks[l])) return false;
  return true;
}

// Every value written: run() fills the outputs with NaN first, so a reference
// pass that left any of them unwritten fails here instead of matching a
// concurrent pass that wrote nothing either.
bool all_finite(const outputs& o) {
  return reuseformer_test::all_finite(o.hidden) &&
         std::all_of(o.stacks.begin(), o.stacks.end(), [](const auto& s) { return reuseformer_test::all_finite(s); });
}

// Runs `model` on `r` asking for every layer's probabilities; `out` is
// overwritten with NaN first, so stale values cannot pass for results.
template <class Model>
void run(const Model& model, const request& r, rf::workspace& ws, outputs& out) {
  const rf::index_t d = model.hidden_size(), heads = model.heads(), layers = model.attention_layers();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  out.hidden.assign(static_cast<std::size_t>(r.batch * r.seq * d), nan);
  out.stacks.assign(static_cast<std::size_t>(layers),
                    std::vector<float>(static_cast<std::size_t>(r.batch * heads * r.seq * r.seq), nan));
  std::vector<rf::tensor_view<float, 4>> views;
  for (auto& s : out.stacks) views.emplace_back(s.data(), std::array<rf::index_t, 4>{r.batch, heads, r.seq, r.seq});
  model.forward(rf::tensor_view<const float, 3>(r.x, {r.batch, r.seq, d}),
                rf::tensor_view<float, 3>(out.hidden.data(), {r.batch, r.seq, d}), ws,
                rf::tensor_view<const std::int64_t, 2>(r.mask, {r.batch, r.seq}), {.attentions = views});
}

// What one worker saw; checked on the main thread.
struct report {
  int passes = 0;
  int mismatches = 0;
  std::string error;  // an exception's message, if one escaped
};

// Runs body(worker) on `workers` threads released together; exceptions are
// caught into the reports.
template <class Body>
std::vector<report> on_threads(int workers, Body body) {
  std::vector<report> reports(static_cast<std::size_t>(workers));
  std::latch start(workers);
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w)
    threads.emplace_back([&, w] {
      report& mine = reports[static_cast<std::size_t>(w)];
      start.arrive_and_wait();
      try {
        body(w, mine);
      } catch (const std::exception& e) {
        mine.error = e.what();
      } catch (...) {
        mine.error = "unknown exception";
      }
    });
  for (auto& t : threads) t.join();
  return reports;
}

void check_reports(const std::vector<report>& reports, int passes) {
  for (std::size_t w = 0; w < reports.size(); ++w) {
    CAPTURE(w);
    INFO(reports[w].error);
    CHECK(reports[w].error.empty());
    CHECK(reports[w].passes == passes);
    CHECK(reports[w].mismatches == 0);
  }
}

// Inputs of 4 workers with their own data (different lengths, different
// padding), plus a fifth that shares worker 0's input and mask memory.
struct workload {
  std::vector<std::vector<float>> inputs;
  std::vector<std::vector<std::int64_t>> masks;
  std::vector<request> requests;

  explicit workload(rf::index_t d) {
    constexpr rf::index_t batch = 2;
    for (int w = 0; w < 4; ++w) {
      const rf::index_t seq = 29 + 6 * w;  // 29 .. 47
      inputs.push_back(
          random_vector<float>(static_cast<std::size_t>(batch * seq * d), 100 + static_cast<std::uint64_t>(w)));
      std::vector<std::int64_t> mask(static_cast<std::size_t>(batch * seq), 1);
      for (rf::index_t j = seq - 1 - w; j < seq; ++j)
        mask[static_cast<std::size_t>(seq + j)] = 0;  // w + 1 padding tokens
      masks.push_back(std::move(mask));
    }
    for (std::size_t w = 0; w < 4; ++w)
      requests.push_back({batch, static_cast<rf::index_t>(masks[w].size()) / batch, inputs[w].data(), masks[w].data()});
    requests.push_back(requests[0]);  // the same memory, read by two calls at once
  }
};

// The workload run sequentially, then concurrently (each worker `passes`
// times, with its own workspace made inside the worker), on `threads` threads
// per call; every concurrent result must equal the sequential one bit for bit.
template <class Model>
void check_concurrent_forward(const Model& model, int threads) {
  constexpr int passes = 4;
  const workload work(model.hidden_size());
  const int workers = static_cast<int>(work.requests.size());
  std::vector<outputs> expected(work.requests.size());
  for (std::size_t w = 0; w < work.requests.size(); ++w) {
    auto ws = model.make_workspace(work.requests[w].batch, work.requests[w].seq, threads);
    run(model, work.requests[w], ws, expected[w]);
    REQUIRE(all_finite(expected[w]));
  }

  const auto reports = on_threads(workers, [&](int w, report& mine) {
    const request& r = work.requests[static_cast<std::size_t>(w)];
    rf::workspace ws = model.make_workspace(r.batch, r.seq, threads);
    outputs out;
    for (int pass = 0; pass < passes; ++pass) {
      run(model, r, ws, out);
      ++mine.passes;
      if (!same_bits(out, expected[static_cast<std::size_t>(w)])) ++mine.mismatches;
    }
  });
  check_reports(reports, passes);
}

rf::encoder_config small_config() {
  rf::encoder_config c;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.intermediate_size = 67;
  c.num_hidden_layers = 3;
  return c;
}

// Score reuse (layer 2 reuses every head), relative-position bias, post-LN.
rf::encoder_config reuse_config() {
  rf::encoder_config c = small_config();
  c.reuse_schedule = {0, 2, 4};
  c.use_relative_pe = true;
  c.pe_max_seq_length = 16;
  return c;
}

// Symmetric scores with reuse, causal, pre-LN.
rf::encoder_config symmetric_config() {
  rf::encoder_config c = small_config();
  c.score = rf::score_function::symmetric;
  c.reuse_schedule = {0, 1, 3};
  c.causal = true;
  c.norm = rf::norm_placement::pre;
  return c;
}

}  // namespace

// First in the file, so that the concurrent calls below are the process's
// first calls into the workspace planning (its function-local statics are
// initialised under contention).
TEST_CASE("workspace_bytes and make_workspace may be called concurrently on one const model", "[concurrency]") {
  const rf::encoder_config fc = reuse_config(), dc = symmetric_config();
  rf::encoder_parameters<float> fp(fc);
  rf::encoder_parameters<double> dp(dc);
  fp.fill_random(1);
  dp.fill_random(2);
  const rf::encoder<float> float_model(fc, fp.layers());
  const rf::encoder<double, rf::score_function::symmetric> double_model(dc, dp.layers());

  struct shape {
    rf::index_t batch, seq;
    int threads;
  };
  std::vector<shape> shapes;
  for (const rf::index_t batch : {1, 2, 3})
    for (const rf::index_t seq : {1, 7, 64, 65, 130, 300})
      for (const int threads : {1, 2, 3}) shapes.push_back({batch, seq, threads});

  constexpr int workers = 2, rounds = 5;
  // Worker w records, per round and shape, what it computed.
  std::vector<std::vector<std::size_t>> seen(workers);
  const auto reports = on_threads(workers, [&](int w, report& mine) {
    auto& out = seen[static_cast<std::size_t>(w)];
    for (int round = 0; round < rounds; ++round) {
      for (std::size_t i = 0; i < shapes.size(); ++i) {
        // The two workers walk the shapes in opposite directions.
        const shape& s = shapes[w == 0 ? i : shapes.size() - 1 - i];
        out.push_back(float_model.workspace_bytes(s.batch, s.seq, s.threads));
        out.push_back(double_model.workspace_bytes(s.batch, s.seq, s.threads));
        if (i % 7 == 0) {
          const rf::workspace a = float_model.make_workspace(s.batch, s.seq, s.threads);
          const rf::workspace b = double_model.make_workspace(s.batch, s.seq, s.threads);
          if (a.size_bytes() != out[out.size() - 2] || b.size_bytes() != out.back() || a.threads() != s.threads)
            ++mine.mismatches;
        }
      }
      ++mine.passes;
    }
  });
  check_reports(reports, rounds);

  for (int w = 0; w < workers; ++w) {
    CAPTURE(w);
    std::vector<std::size_t> expected;
    for (int round = 0; round < rounds; ++round)
      for (std::size_t i = 0; i < shapes.size(); ++i) {
        const shape& s = shapes[w == 0 ? i : shapes.size() - 1 - i];
        expected.push_back(float_model.workspace_bytes(s.batch, s.seq, s.threads));
        expected.push_back(double_model.workspace_bytes(s.batch, s.seq, s.threads));
      }
    CHECK(seen[static_cast<std::size_t>(w)] == expected);
  }
}

TEST_CASE("one encoder with score reuse serves concurrent forward passes, each with its own workspace",
          "[concurrency]") {
  const int threads = GENERATE(1, 2);  // per call; 2 only matters with OpenMP
  CAPTURE(threads);
  const rf::encoder_config c = reuse_config();
  rf::encoder_parameters<float> params(c);
  params.fill_random(3, 0.2);
  const rf::encoder<float> model(c, params.layers());
  check_concurrent_forward(model, threads);
}

TEST_CASE("one symmetric-score encoder serves concurrent forward passes, each with its own workspace",
          "[concurrency]") {
  const int threads = GENERATE(1, 2);
  CAPTURE(threads);
  const rf::encoder_config c = symmetric_config();
  rf::encoder_parameters<float> params(c);
  params.fill_random(4, 0.2);
  const rf::encoder<float, rf::score_function::symmetric> model(c, params.layers());
  check_concurrent_forward(model, threads);
}

TEST_CASE("two models sharing nothing but the process run concurrently", "[concurrency]") {
  // Workers alternate between a standard and a symmetric model, so both run at once.
  const rf::encoder_config a = reuse_config(), b = symmetric_config();
  rf::encoder_parameters<float> pa(a), pb(b);
  pa.fill_random(5, 0.2);
  pb.fill_random(6, 0.2);
  const rf::encoder<float> standard(a, pa.layers());
  const rf::encoder<float, rf::score_function::symmetric> symmetric(b, pb.layers());

  constexpr int passes = 3;
  const workload work(a.hidden_size);
  std::vector<outputs> expected_a(work.requests.size()), expected_b(work.requests.size());
  for (std::size_t w = 0; w < work.requests.size(); ++w) {
    auto wa = standard.make_workspace(work.requests[w].batch, work.requests[w].seq);
    auto wb = symmetric.make_workspace(work.requests[w].batch, work.requests[w].seq);
    run(standard, work.requests[w], wa, expected_a[w]);
    run(symmetric, work.requests[w], wb, expected_b[w]);
    REQUIRE(all_finite(expected_a[w]));
    REQUIRE(all_finite(expected_b[w]));
  }
  const auto reports = on_threads(static_cast<int>(work.requests.size()), [&](int w, report& mine) {
    const request& r = work.requests[static_cast<std::size_t>(w)];
    rf::workspace wa = standard.make_workspace(r.batch, r.seq), wb = symmetric.make_workspace(r.batch, r.seq);
    outputs out;
    for (int pass = 0; pass < passes; ++pass) {
      const bool first_standard = (w + pass) % 2 == 0;
      for (int k = 0; k < 2; ++k) {
        if (first_standard == (k == 0)) {
          run(standard, r, wa, out);
          if (!same_bits(out, expected_a[static_cast<std::size_t>(w)])) ++mine.mismatches;
        } else {
          run(symmetric, r, wb, out);
          if (!same_bits(out, expected_b[static_cast<std::size_t>(w)])) ++mine.mismatches;
        }
      }
      ++mine.passes;
    }
  });
  check_reports(reports, passes);
}

TEST_CASE("one embeddings block serves concurrent calls", "[concurrency]") {
  constexpr rf::index_t d = 16, vocab = 50, positions = 40, types = 2, batch = 2, seq = 33;
  const std::vector<float> word = random_vector<float>(vocab * d, 1), position = random_vector<float>(positions * d, 2),
                           type = random_vector<float>(types * d, 3), gain = random_vector<float>(d, 4, 0.5, 1.5),
                           bias = random_vector<float>(d, 5);
  const rf::embeddings<float> embeddings({{word.data(), {vocab, d}},
                                          {position.data(), {positions, d}},
                                          {type.data(), {types, d}},
                                          {{gain.data(), {d}}, {bias.data(), {d}}}},
                                         {.hidden_size = d,
                                          .vocab_size = vocab,
                                          .max_position_embeddings = positions,
                                          .type_vocab_size = types,
                                          .layer_norm_eps = 1e-12});

  constexpr int workers = 4, passes = 5;
  std::vector<std::vector<std::int64_t>> ids(workers), type_ids(workers);
  std::vector<std::vector<float>> expected(workers);
  for (std::size_t w = 0; w < workers; ++w) {
    for (rf::index_t i = 0; i < batch * seq; ++i) {
      ids[w].push_back(static_cast<std::int64_t>((i * 7 + static_cast<rf::index_t>(w) * 13) % vocab));
      type_ids[w].push_back(static_cast<std::int64_t>((i / 5 + static_cast<rf::index_t>(w)) % types));
    }
    expected[w].assign(static_cast<std::size_t>(batch * seq * d), std::numeric_limits<float>::quiet_NaN());
    embeddings.forward({ids[w].data(), {batch, seq}}, {type_ids[w].data(), {batch, seq}},
                       {expected[w].data(), {batch, seq, d}});
    REQUIRE(all_finite(expected[w]));
  }
  const auto reports = on_threads(workers, [&](int w, report& mine) {
    const auto i = static_cast<std::size_t>(w);
    std::vector<float> out(expected[i].size());
    for (int pass = 0; pass < passes; ++pass) {
      std::fill(out.begin(), out.end(), std::numeric_limits<float>::quiet_NaN());
      embeddings.forward({ids[i].data(), {batch, seq}}, {type_ids[i].data(), {batch, seq}},
                         {out.data(), {batch, seq, d}});
      ++mine.passes;
      if (!same_bits(out, expected[i])) ++mine.mismatches;
    }
  });
  check_reports(reports, passes);
}
