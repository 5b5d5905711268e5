#pragma once
// How alike the attention probabilities of heads in different layers are, on
// calibration inputs (docs/semantics.md §Attention similarity): the measure a
// reuse plan (analysis/reuse_planner.hpp) is chosen from.
//
// For a later layer l, an earlier layer m < l, a head j of l and a head i of m:
//   S_{l,m}[j, i] = mean over the real query rows r of the batch of
//                   1 - TV(A_l[j, r], A_m[i, r]),   TV(p, q) = ½ Σ_k |p_k - q_k|
// where A_l[j, r] is row r of the probabilities of head j at position j of layer
// l's stack (fresh heads first, docs/semantics.md §Score reuse) and a real row
// is a query that is a token (attention_mask 1; every row of a packed batch).
// Optionally also 1 - JS(p, q), the Jensen-Shannon divergence in bits (in [0, 1]).
// Both are 1 for identical rows and 0 for rows with disjoint support.
//
//   const auto s = analysis::attention_similarity(model.encoder(), hidden, mask);
//   s.between(3, 2).at(j, i)        // S_3[j, i]
//
// Memory: the model runs layer by layer, keeping the probability stacks of the
// last max_distance + 1 layers only (two by default: [B, H, N, N] each), besides
// the hidden states and one layer's workspace; never all layers' stacks.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "reuseformer/attention/attention_mask.hpp"
#include "reuseformer/attention/reuse_state.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/sequences.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/workspace.hpp"

namespace reuseformer::analysis {

// S_{layer, source} for one pair of layers, source < layer.
struct layer_similarity {
  index_t layer = 0, source = 0;
  index_t heads = 0;                    // H
  std::vector<double> total_variation;  // [H, H] row-major: [j * H + i] = S[j, i] (1 - TV)
  std::vector<double> jensen_shannon;   // [H, H], 1 - JS; empty unless asked for

  [[nodiscard]] double at(index_t j, index_t i) const {
    return total_variation[static_cast<std::size_t>(j * heads + i)];
  }
  // The head i of the source layer most like head j (the lowest index on a tie).
  [[nodiscard]] index_t best_match(index_t j) const {
    const auto row = total_variation.begin() + j * heads;
    return static_cast<index_t>(std::max_element(row, row + heads) - row);
  }
};

struct similarity_options {
  // Layer l is compared with layers l - 1 ... l - max_distance (>= 1); each
  // more keeps one more [B, H, N, N] stack in memory.
  index_t max_distance = 1;
  bool jensen_shannon = false;  // also 1 - JS (a logarithm per compared pair of entries)
  int threads = 1;
};

struct similarity_report {
  index_t layers = 0, heads = 0;
  index_t rows = 0;                     // real query rows averaged over
  std::vector<layer_similarity> pairs;  // by layer, then by decreasing source

  // S_{layer, source}; throws reuseformer::error when it was not measured.
  [[nodiscard]] const layer_similarity& between(index_t layer, index_t source) const {
    for (const layer_similarity& p : pairs)
      if (p.layer == layer && p.source == source) return p;
    throw error(detail::concat("attention similarity: expected a measured pair of layers, found none for layer ", layer,
                               " against layer ", source, " (max_distance too small?)"));
  }
};

}  // namespace reuseformer::analysis

namespace reuseformer::detail {

// Σ over real rows of (1 - TV) and (1 - JS) between every head j of `later`
// and every head i of `earlier`, two probability stacks laid out as the
// library stores them (per sequence b, `heads` [N_b, N_b] matrices), added to
// `out` (whose vectors are [H, H]). real_rows: one flag per token row, or null (all real).
template <class T>
void accumulate_similarity(const T* later, const T* earlier, index_t heads, const sequences& batch,
                           const unsigned char* real_rows, analysis::layer_similarity& out, int threads) {
  const bool js = !out.jensen_shannon.empty();
  parallel_for(heads, threads, [&](index_t j, int) {
    for (index_t b = 0; b < batch.batch(); ++b) {
      const index_t n = batch.length(b), before = batch.squares_before(b) * heads;
      for (index_t r = 0; r < n; ++r) {
        if (real_rows != nullptr && real_rows[batch.start(b) + r] == 0) continue;
        const T* p = later + before + j * n * n + r * n;
        for (index_t i = 0; i < heads; ++i) {
          const T* q = earlier + before + i * n * n + r * n;
          double tv = 0, divergence = 0;
          for (index_t k = 0; k < n; ++k) tv += std::abs(static_cast<double>(p[k]) - static_cast<double>(q[k]));
          if (js)
            for (index_t k = 0; k < n; ++k) {
              const double x = p[k], y = q[k], m = 0.5 * (x + y);
              if (x > 0) divergence += 0.5 * x * std::log2(x / m);
              if (y > 0) divergence += 0.5 * y * std::log2(y / m);
            }
          out.total_variation[static_cast<std::size_t>(j * heads + i)] += 1 - 0.5 * tv;
          if (js) out.jensen_shannon[static_cast<std::size_t>(j * heads + i)] += 1 - divergence;
        }
      }
    }
  });
}

// The shared body of both forms of attention_similarity: run_layer(l, stack)
// runs layer l on the running hidden states, writing its probability stack to
// `stack` (H heads) and reading the heads it reuses from `below` (layer l-1's).
template <class T, class RunLayer>
analysis::similarity_report measure_similarity(index_t layers, index_t heads, const sequences& batch,
                                               const unsigned char* real_rows, const analysis::similarity_options& o,
                                               RunLayer&& run_layer) {
  require(o.max_distance >= 1, "attention similarity: max_distance: expected >= 1, found ", o.max_distance);
  require(o.threads >= 1, "attention similarity: threads: expected >= 1, found ", o.threads);
  analysis::similarity_report report{layers, heads, 0, {}};
  for (index_t b = 0; b < batch.batch(); ++b)
    for (index_t r = 0; r < batch.length(b); ++r) report.rows += real_rows == nullptr || real_rows[batch.start(b) + r];
  const index_t kept = std::min(o.max_distance, std::max<index_t>(layers - 1, 0)) + 1;
  const auto stack_size = static_cast<std::size_t>(heads * batch.shape().squares);
  std::vector<std::vector<T>> ring(static_cast<std::size_t>(kept), std::vector<T>(stack_size));
  const auto stack_of = [&](index_t l) -> std::vector<T>& { return ring[static_cast<std::size_t>(l % kept)]; };
  for (index_t l = 0; l < layers; ++l) {
    run_layer(l, stack_of(l).data(), l > 0 ? stack_of(l - 1).data() : nullptr);
    for (index_t m = l - 1; m >= 0 && m >= l - o.max_distance; --m) {
      analysis::layer_similarity s{
          l, m, heads, std::vector<double>(static_cast<std::size_t>(heads * heads)),
          o.jensen_shannon ? std::vector<double>(static_cast<std::size_t>(heads * heads)) : std::vector<double>{}};
      accumulate_similarity(stack_of(l).data(), stack_of(m).data(), heads, batch, real_rows, s, o.threads);
      const double rows = static_cast<double>(std::max<index_t>(report.rows, 1));
      for (double& v : s.total_variation) v /= rows;
      for (double& v : s.jensen_shannon) v /= rows;
      report.pairs.push_back(std::move(s));
    }
  }
  return report;
}

// The first K heads of every sequence's stack (H heads each), as a layer that
// reuses K heads takes them (K heads per sequence).
template <class T>
void copy_reused_heads(const T* stack, index_t heads, index_t reused, const sequences& batch, T* out) {
  for (index_t b = 0; b < batch.batch(); ++b) {
    const index_t n2 = batch.length(b) * batch.length(b), before = batch.squares_before(b);
    std::copy_n(stack + heads * before, reused * n2, out + reused * before);
  }
}

// One flag per row of a [batch, seq] batch: 1 for a token, 0 for padding
// (all 1 without a mask). Throws as attention_mask::to_additive.
inline std::vector<unsigned char> real_rows(const attention_mask& mask, index_t batch, index_t seq) {
  std::vector<unsigned char> real(static_cast<std::size_t>(batch * seq), 1);
  if (mask.present()) {
    std::vector<float> additive(real.size());
    mask.to_additive(batch, seq, additive.data());
    for (std::size_t i = 0; i < real.size(); ++i) real[i] = additive[i] == 0.0f;
  }
  return real;
}

// Calls f(encoder) with the compile-time encoder behind `model` (an encoder,
// or an any_encoder, which dispatches).
template <class Encoder, class F>
decltype(auto) with_compiled(const Encoder& model, F&& f) {
  if constexpr (requires { model.visit_compiled(f); })
    return model.visit_compiled(f);
  else
    return f(model);
}

}  // namespace reuseformer::detail

namespace reuseformer::analysis {

// S between each layer l >= 1 of `model` (an encoder<T, …> or any_encoder<T, …>)
// and the layers up to o.max_distance below it, on the dense batch `input`
// [B, N, d] with an optional attention_mask [B, N] (padded query rows are left
// out of the mean; padded keys have probability 0 in every row). Throws
// reuseformer::error as the model's forward() would on bad input.
template <class Encoder, class T>
[[nodiscard]] similarity_report attention_similarity(const Encoder& model, tensor_view<const T, 3> input,
                                                     const attention_mask& mask = {},
                                                     const similarity_options& o = {}) {
  return detail::with_compiled(model, [&](const auto& e) {
    const index_t batch = input.extent(0), seq = input.extent(1), d = e.hidden_size(), heads = e.heads();
    detail::require_shape(input, {batch, seq, d}, "attention similarity: input");
    const std::vector<unsigned char> real = detail::real_rows(mask, batch, seq);
    std::vector<T> hidden(input.data(), input.data() + input.size());
    std::vector<T> reused;
    std::size_t bytes = 0;
    for (const auto& layer : e.layers()) bytes = std::max(bytes, layer.workspace_bytes(batch, seq, o.threads));
    workspace ws(bytes, o.threads);
    const tensor_view<T, 3> x(hidden.data(), {batch, seq, d});
    return detail::measure_similarity<T>(
        e.attention_layers(), heads, sequences::dense(batch, seq), real.data(), o,
        [&](index_t l, T* stack, const T* below) {
          const auto& layer = e.layers()[static_cast<std::size_t>(l)];
          const index_t k = layer.first_reused_heads();
          reused.resize(static_cast<std::size_t>(batch * k * seq * seq));
          if (k > 0) detail::copy_reused_heads(below, heads, k, sequences::dense(batch, seq), reused.data());
          const tensor_view<T, 4> out(stack, {batch, heads, seq, seq});
          layer.forward(x, x, ws, mask,
                        attention_io<T>{tensor_view<const T, 4>(reused.data(), {batch, k, seq, seq}), {&out, 1}});
        });
  });
}

// The same on a packed batch: tokens [T, d], offsets [B + 1] (core/sequences.hpp);
// every row is real.
template <class Encoder, class T>
[[nodiscard]] similarity_report attention_similarity(const Encoder& model, tensor_view<const T, 2> tokens,
                                                     std::span<const index_t> offsets,
                                                     const similarity_options& o = {}) {
  return detail::with_compiled(model, [&](const auto& e) {
    const index_t d = e.hidden_size(), heads = e.heads();
    detail::require_shape(tokens, {tokens.extent(0), d}, "attention similarity: tokens");
    detail::require_offsets(offsets, tokens.extent(0));
    const sequences batch = sequences::packed(offsets);
    std::vector<T> hidden(tokens.data(), tokens.data() + tokens.size());
    std::vector<T> reused;
    std::size_t bytes = 0;
    for (const auto& layer : e.layers()) bytes = std::max(bytes, layer.workspace_bytes(offsets, o.threads));
    workspace ws(bytes, o.threads);
    const tensor_view<T, 2> x(hidden.data(), {tokens.extent(0), d});
    return detail::measure_similarity<T>(
        e.attention_layers(), heads, batch, nullptr, o, [&](index_t l, T* stack, const T* below) {
          const auto& layer = e.layers()[static_cast<std::size_t>(l)];
          const index_t k = layer.first_reused_heads();
          reused.resize(static_cast<std::size_t>(k * batch.shape().squares));
          if (k > 0) detail::copy_reused_heads(below, heads, k, batch, reused.data());
          const tensor_view<T, 1> out(stack, {heads * batch.shape().squares});
          layer.forward(
              x, x, offsets, ws,
              packed_attention_io<T>{tensor_view<const T, 1>(reused.data(), {k * batch.shape().squares}), {&out, 1}});
        });
  });
}

// S between two probability stacks of one batch (the same layout as
// attention_io's: [B, H, N, N], dense), over the rows `mask` marks real: the
// measure above for any pair of stacks (a layer against itself gives 1 on the
// diagonal).
template <class T>
[[nodiscard]] layer_similarity stack_similarity(tensor_view<const T, 4> later, tensor_view<const T, 4> earlier,
                                                const attention_mask& mask = {}, bool jensen_shannon = false) {
  const index_t batch = later.extent(0), heads = later.extent(1), seq = later.extent(2);
  detail::require_shape(later, {batch, heads, seq, seq}, "attention similarity: later stack");
  detail::require_shape(earlier, {batch, heads, seq, seq}, "attention similarity: earlier stack");
  const std::vector<unsigned char> real = detail::real_rows(mask, batch, seq);
  layer_similarity s{
      1, 0, heads, std::vector<double>(static_cast<std::size_t>(heads * heads)),
      jensen_shannon ? std::vector<double>(static_cast<std::size_t>(heads * heads)) : std::vector<double>{}};
  detail::accumulate_similarity(later.data(), earlier.data(), heads, sequences::dense(batch, seq), real.data(), s, 1);
  const auto rows = static_cast<double>(std::max<index_t>(std::count(real.begin(), real.end(), 1), 1));
  for (double& v : s.total_variation) v /= rows;
  for (double& v : s.jensen_shannon) v /= rows;
  return s;
}

}  // namespace reuseformer::analysis
