// An 8192-token sequence through a small model (d = 64, H = 2, d_ff = 128,
// 2 layers, batch 1, float, 2 threads), with standard attention and with score
// reuse (schedule {0, 1}), without and with a causal mask:
// - the workspace make_workspace(1, 8192, 2) sizes from workspace_bytes()
//   suffices, and the reuse state is the one [N, N] head layer 1 reads;
// - the forward pass allocates nothing (counting operator new, as in
//   test_allocation.cpp);
// - the outputs are finite and pass a spot check against a 64-token run, which
//   is checked against the double reference:
//   * without a mask, the input is one 64-token block repeated 128 times. Each
//     key then appears 128 times with the same logit, so every probability is
//     the 64-token one divided by 128 and every context row (hence every
//     output row) equals the 64-token run's, up to float rounding (sums of
//     8192 instead of 64 terms);
//   * under a causal mask, rows 0..63 cannot depend on later tokens. They are
//     even bit-identical to a single-threaded 64-token run's: query block 0
//     (64 to 72 rows) multiplies keys 0..71 at most, the same products of the
//     same shapes in the same tiles, the extra keys with zero probabilities; the projection and feed-forward GEMMs have
//     inner dimensions (64, 128) within one depth block of the micro-kernel, so each element's sum runs in the same
//     order whatever tile or thread computes it; LayerNorm works row by row. Against a two-threaded 64-token run they
//     agree only up to rounding (see below).
// Workspace bytes, reuse-state bytes and the wall time of each pass are
// printed to the test log. Sanitizer builds (the debug-sanitize preset) and
// unoptimised ones use 2048 tokens instead: the same code paths, 1/16 of the
// attention work.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "support/allocation_counter.hpp"

#include <reuseformer/reuseformer.hpp>

#include "support/catch.hpp"
#include "support/compare.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace rf = reuseformer;
using reuseformer_test::compare;
using reuseformer_test::count_allocations;

namespace {

struct long_case {
  const char* name;
  bool reuse;
  bool causal;
};

}  // namespace

TEST_CASE("a long (8192-token) sequence fits its workspace, allocates nothing and stays exact", "[long]") {
  const long_case lc =
      GENERATE(long_case{"standard", false, false}, long_case{"reuse {0, 1}", true, false},
               long_case{"standard, causal", false, true}, long_case{"reuse {0, 1}, causal", true, true});
  CAPTURE(lc.name);
  // Sanitizer builds (-O1, every access checked: GCC defines
  // __SANITIZE_ADDRESS__, not __OPTIMIZE__ alone) and unoptimised ones: 8192
  // would take minutes per pass.
#if defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  constexpr rf::index_t seq = 8192;
#else
  constexpr rf::index_t seq = 2048;
#endif
  constexpr rf::index_t period = 64, d = 64;
  constexpr int threads = 2;

  rf::encoder_config c;
  c.hidden_size = d;
  c.num_attention_heads = 2;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.causal = lc.causal;
  if (lc.reuse) c.reuse_schedule = {0, 1};
  rf::encoder_parameters<float> params(c);
  params.fill_random(8, 1.0 / std::sqrt(double(d)));
  const rf::encoder<float> model(c, params.layers());

  // One 64-token block, repeated.
  const std::vector<float> block = reuseformer_test::random_vector<float>(static_cast<std::size_t>(period * d), 23);
  std::vector<float> x(static_cast<std::size_t>(seq * d));
  for (rf::index_t r = 0; r < seq / period; ++r) std::copy(block.begin(), block.end(), x.begin() + r * period * d);

  // The 64-token run on 1 and on 2 threads (the latter also warms up:
  // it starts OpenMP's thread pool), checked against the double reference.
  const auto short_run = [&](int short_threads) {
    std::vector<float> out(block.size());
    auto short_ws = model.make_workspace(1, period, short_threads);
    model.forward(rf::tensor_view<const float, 3>(block.data(), {1, period, d}),
                  rf::tensor_view<float, 3>(out.data(), {1, period, d}), short_ws);
    return out;
  };
  const std::vector<float> short_out = short_run(threads), short_serial = short_run(1);
  {
    rf::encoder_parameters<double> exact(c);
    exact.assign_from(params);
    const auto expected = reuseformer_test::reference::encoder(std::vector<double>(block.begin(), block.end()), 1,
                                                               period, c, exact.layers(), {});
    CHECK_CLOSE(compare(short_out, expected, reuseformer_test::reference::tolerance<float>,
                        reuseformer_test::reference::tolerance<float>));
    CHECK_CLOSE(compare(short_serial, expected, reuseformer_test::reference::tolerance<float>,
                        reuseformer_test::reference::tolerance<float>));
  }

  const std::size_t bytes = model.workspace_bytes(1, seq, threads);
  const std::size_t state = model.reuse_state_bytes(1, seq);
  CHECK(state == (lc.reuse ? static_cast<std::size_t>(seq * seq) * sizeof(float) : 0));  // one [N, N] head, or none
  CHECK(bytes > state);
  rf::workspace ws = model.make_workspace(1, seq, threads);
  CHECK(ws.size_bytes() == bytes);

  std::vector<float> y(x.size(), -1.0f);
  // Two passes: the first touches the workspace's pages for the first time.
  double seconds[2] = {0, 0};
  const long news = count_allocations([&] {
    for (double& s : seconds) {
      const auto start = std::chrono::steady_clock::now();
      model.forward(rf::tensor_view<const float, 3>(x.data(), {1, seq, d}),
                    rf::tensor_view<float, 3>(y.data(), {1, seq, d}), ws);
      s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
  });
  std::printf(
      "long sequence [%s]: N = %td, threads = %d: workspace %zu bytes (%.1f MiB), reuse state %zu bytes (%.1f MiB), "
      "forward %.3f s (first pass), %.3f s (second pass)\n",
      lc.name, seq, threads, bytes, double(bytes) / (1 << 20), state, double(state) / (1 << 20), seconds[0],
      seconds[1]);
  std::fflush(stdout);
  CHECK(news == 0);
  CHECK(std::all_of(y.begin(), y.end(), [](float v) { return std::isfinite(v); }));

  if (!lc.causal) {
    // Every copy of the block equals the 64-token run up to rounding.
    double worst = 0;
    for (rf::index_t r = 0; r < seq / period; ++r) {
      CAPTURE(r);
      const auto result =
          compare(y.data() + r * period * d, short_out.data(), short_out.size(),
                  reuseformer_test::reference::tolerance<float>, reuseformer_test::reference::tolerance<float>);
      CHECK_CLOSE(result);
      for (std::size_t i = 0; i < short_out.size(); ++i)
        worst = std::max(worst, double(std::abs(y[r * period * d + i] - short_out[i])));
    }
    std::printf("long sequence [%s]: largest difference to the 64-token run %.3g\n", lc.name, worst);
  } else {
    // The causal prefix: bit for bit the 64-token run on one thread, and up to
    // rounding the 64-token run on two threads (whose feed-forward products,
    // 64 rows by 128 columns, are split across the threads by columns, which
    // changes the micro-kernel's tiling, hence the summation order, for some
    // columns; the 8192-row products split by rows only).
    CHECK(std::memcmp(y.data(), short_serial.data(), short_serial.size() * sizeof(float)) == 0);
    CHECK_CLOSE(compare(y.data(), short_out.data(), short_out.size(), 1e-5, 1e-5));
  }
}
