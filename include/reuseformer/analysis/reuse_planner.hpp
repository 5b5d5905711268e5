#pragma once
// Which heads of a model without reuse should reuse which heads of the layer
// below (docs/semantics.md §Reuse planning), from the attention similarity of
// analysis/attention_similarity.hpp.
//
// The library's semantics fix what a reusing layer reads: layer l's stack is
// its F_l = H - K_l fresh heads followed by S^{l-1}[0 … K_l - 1], the FIRST K_l
// entries of the stack below. A plan therefore says, per layer, an order of the
// original heads (a head permutation, which leaves the function unchanged while
// no head is reused: io/planned_checkpoint.hpp applies it to a checkpoint):
// position p of layer l's stack holds original head order[l][p]; positions
// F_l … H - 1 are the reused heads, and position F_l + j takes the
// probabilities at position j of layer l-1's stack, whose original head is
// order[l-1][j]. So the sources of layer l must be a prefix of layer l-1's
// order, and each serves one head.
//
// Planning is layer by layer, from layer 1 up (greedy across layers; optimal
// within a layer): layer l's reused heads and their sources are the
// maximum-similarity assignment (analysis/assignment.hpp) of K_l heads of
// layer l to K_l entries that can be put first in layer l-1's stack: any of its
// fresh heads (whose order is still free), plus, when K_l > F_{l-1}, its reused
// positions F_{l-1} … K_l - 1, which are fixed. The similarity of a source that
// is itself reused is taken as that of the head whose position it fills
// (S_l[j, order[l-1][p]]): a proxy, since its probabilities come from further below.

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <vector>

#include "reuseformer/analysis/assignment.hpp"
#include "reuseformer/analysis/attention_similarity.hpp"
#include "reuseformer/analysis/cost_model.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/layers/config.hpp"

namespace reuseformer::analysis {

struct reuse_plan {
  index_t heads = 0;
  std::vector<index_t> schedule;             // K_l per layer, K_0 = 0
  std::vector<std::vector<index_t>> order;   // [L][H]: original head at each stack position
  std::vector<std::vector<index_t>> source;  // [L][H]: per original head of layer l, the original head of
                                             // layer l-1 whose stack position it reads, or -1 (fresh)

  [[nodiscard]] index_t layers() const { return static_cast<index_t>(schedule.size()); }
  [[nodiscard]] index_t fresh(index_t l) const { return heads - schedule[static_cast<std::size_t>(l)]; }

  // The plan that reuses nothing and keeps every head where it is.
  [[nodiscard]] static reuse_plan none(index_t layers, index_t heads) {
    reuse_plan p{heads, std::vector<index_t>(static_cast<std::size_t>(layers), 0), {}, {}};
    std::vector<index_t> identity(static_cast<std::size_t>(heads));
    std::iota(identity.begin(), identity.end(), 0);
    p.order.assign(static_cast<std::size_t>(layers), identity);
    p.source.assign(static_cast<std::size_t>(layers), std::vector<index_t>(static_cast<std::size_t>(heads), -1));
    return p;
  }
};

}  // namespace reuseformer::analysis

namespace reuseformer::detail {

// Throws unless `schedule` is one entry per layer with K_0 = 0 and 0 <= K_l <= H.
inline void require_schedule(const std::vector<index_t>& schedule, index_t layers, index_t heads) {
  require(static_cast<index_t>(schedule.size()) == layers, "reuse plan: expected a schedule of ", layers,
          " entries (one per layer), found ", schedule.size());
  for (std::size_t l = 0; l < schedule.size(); ++l)
    require(schedule[l] >= 0 && schedule[l] <= (l == 0 ? 0 : heads), "reuse plan: schedule[", l, "]: expected ",
            l == 0 ? "0 (layer 0 has no layer below)" : concat("a head count in [0, ", heads, "]"), ", found ",
            schedule[l]);
}

// Derives plan.source from plan.order and plan.schedule: position F_l + j of
// layer l reads position j of layer l-1.
inline void derive_sources(analysis::reuse_plan& plan) {
  for (index_t l = 0; l < plan.layers(); ++l) {
    auto& source = plan.source[static_cast<std::size_t>(l)];
    source.assign(static_cast<std::size_t>(plan.heads), -1);
    const auto& order = plan.order[static_cast<std::size_t>(l)];
    for (index_t j = 0; j < plan.schedule[static_cast<std::size_t>(l)]; ++j)
      source[static_cast<std::size_t>(order[static_cast<std::size_t>(plan.fresh(l) + j)])] =
          plan.order[static_cast<std::size_t>(l - 1)][static_cast<std::size_t>(j)];
  }
}

// Plans layer l (layers below planned) to reuse `reused` heads: reorders the
// fresh part of layer l-1's stack so that the chosen sources come first, and
// sets layer l's order (fresh heads ascending, then the reused heads in the
// order of their sources). Returns the summed similarity of the chosen pairs,
// and the smallest one in `weakest`.
inline double plan_layer(analysis::reuse_plan& plan, const analysis::layer_similarity& s, index_t l, index_t reused,
                         double& weakest) {
  const index_t h = plan.heads;
  plan.schedule[static_cast<std::size_t>(l)] = reused;
  auto& below = plan.order[static_cast<std::size_t>(l - 1)];
  auto& order = plan.order[static_cast<std::size_t>(l)];
  weakest = 1;
  std::iota(order.begin(), order.end(), 0);
  if (reused == 0) return 0;
  const index_t free = plan.fresh(l - 1), candidates = std::max(free, reused);
  // Rows: heads of layer l. Columns: candidate positions of layer l-1, then H - K
  // "stays fresh" columns, so cheap that every one of them is taken.
  const index_t columns = candidates + h - reused;
  std::vector<double> cost(static_cast<std::size_t>(h * columns), -2.0 * static_cast<double>(h) - 2);
  for (index_t t = 0; t < h; ++t)
    for (index_t c = 0; c < candidates; ++c)
      cost[static_cast<std::size_t>(t * columns + c)] = 1 - s.at(t, below[static_cast<std::size_t>(c)]);
  const std::vector<index_t> column = analysis::solve_assignment(cost, h, columns);
  // Chosen positions of layer l-1 (ascending) and the head of layer l each serves.
  std::vector<index_t> target(static_cast<std::size_t>(candidates), -1);
  for (index_t t = 0; t < h; ++t)
    if (column[static_cast<std::size_t>(t)] < candidates)
      target[static_cast<std::size_t>(column[static_cast<std::size_t>(t)])] = t;
  // Layer l-1's fresh part: chosen heads first, then the others, each in their order.
  std::vector<index_t> fresh_order, rest, served;
  for (index_t c = 0; c < candidates; ++c) {
    const bool chosen = target[static_cast<std::size_t>(c)] >= 0;
    if (c < free) (chosen ? fresh_order : rest).push_back(below[static_cast<std::size_t>(c)]);
    if (chosen && c < free) served.push_back(target[static_cast<std::size_t>(c)]);
  }
  for (index_t c = free; c < candidates; ++c) served.push_back(target[static_cast<std::size_t>(c)]);
  fresh_order.insert(fresh_order.end(), rest.begin(), rest.end());
  std::copy(fresh_order.begin(), fresh_order.end(), below.begin());
  // Layer l: its fresh heads ascending, then position F_l + j for the head served by position j.
  std::vector<char> is_reused(static_cast<std::size_t>(h), 0);
  for (const index_t t : served) is_reused[static_cast<std::size_t>(t)] = 1;
  index_t p = 0;
  for (index_t t = 0; t < h; ++t)
    if (!is_reused[static_cast<std::size_t>(t)]) order[static_cast<std::size_t>(p++)] = t;
  double total = 0;
  for (std::size_t j = 0; j < served.size(); ++j) {
    order[static_cast<std::size_t>(p++)] = served[j];
    const double similarity = s.at(served[j], below[j]);
    total += similarity;
    weakest = std::min(weakest, similarity);
  }
  return total;
}

inline void require_adjacent(const analysis::similarity_report& s) {
  for (index_t l = 1; l < s.layers; ++l) static_cast<void>(s.between(l, l - 1));
}

}  // namespace reuseformer::detail

namespace reuseformer::analysis {

// Σ over the plan's reused heads of S_l[head, source].
[[nodiscard]] inline double plan_similarity(const reuse_plan& plan, const similarity_report& s) {
  double total = 0;
  for (index_t l = 1; l < plan.layers(); ++l)
    for (index_t t = 0; t < plan.heads; ++t)
      if (const index_t i = plan.source[static_cast<std::size_t>(l)][static_cast<std::size_t>(t)]; i >= 0)
        total += s.between(l, l - 1).at(t, i);
  return total;
}

// The plan for a given schedule (K_l per layer; K_0 = 0). Throws
// reuseformer::error on a schedule that does not fit the report's model.
[[nodiscard]] inline reuse_plan plan_reuse(const similarity_report& s, const std::vector<index_t>& schedule) {
  detail::require_schedule(schedule, s.layers, s.heads);
  detail::require_adjacent(s);
  reuse_plan plan = reuse_plan::none(s.layers, s.heads);
  double weakest = 0;
  for (index_t l = 1; l < s.layers; ++l)
    static_cast<void>(detail::plan_layer(plan, s.between(l, l - 1), l, schedule[static_cast<std::size_t>(l)], weakest));
  detail::derive_sources(plan);
  return plan;
}

// The naive plan for `schedule`: no permutation, so layer l's last K_l heads
// take the first K_l heads of layer l-1's stack.
[[nodiscard]] inline reuse_plan naive_reuse(index_t heads, const std::vector<index_t>& schedule) {
  detail::require_schedule(schedule, static_cast<index_t>(schedule.size()), heads);
  reuse_plan plan = reuse_plan::none(static_cast<index_t>(schedule.size()), heads);
  plan.schedule = schedule;
  detail::derive_sources(plan);
  return plan;
}

// Reuses, in each layer l with allowed[l], as many heads as it can while every
// chosen pair has S_l >= minimum: the largest K_l whose assignment meets it.
[[nodiscard]] inline reuse_plan plan_reuse_min_similarity(const similarity_report& s, double minimum,
                                                          const std::vector<bool>& allowed) {
  detail::require_adjacent(s);
  detail::require(static_cast<index_t>(allowed.size()) == s.layers, "reuse plan: expected ", s.layers,
                  " layer flags, found ", allowed.size());
  reuse_plan plan = reuse_plan::none(s.layers, s.heads);
  for (index_t l = 1; l < s.layers; ++l) {
    if (!allowed[static_cast<std::size_t>(l)]) continue;
    for (index_t k = s.heads; k >= 1; --k) {
      reuse_plan trial = plan;
      double weakest = 0;
      static_cast<void>(detail::plan_layer(trial, s.between(l, l - 1), l, k, weakest));
      if (weakest >= minimum) {
        plan = std::move(trial);
        break;
      }
    }
  }
  detail::derive_sources(plan);
  return plan;
}

// The plan whose forward pass of [batch, seq] through `config` (the model the
// report measured, without reuse) costs at most `fraction` of its
// multiply-adds (analysis/cost_model.hpp), adding reused heads one at a time
// where they lose the least similarity (in layers with allowed[l]). Throws
// reuseformer::error when even reusing every allowed head costs more.
[[nodiscard]] inline reuse_plan plan_reuse_budget(const similarity_report& s, const encoder_config& config,
                                                  index_t batch, index_t seq, double fraction,
                                                  const std::vector<bool>& allowed) {
  detail::require_adjacent(s);
  detail::require(static_cast<index_t>(allowed.size()) == s.layers, "reuse plan: expected ", s.layers,
                  " layer flags, found ", allowed.size());
  const auto multiply_adds = [&](const std::vector<index_t>& schedule) {
    encoder_config c = config;
    c.reuse_schedule = schedule;
    return cost<float>(c, batch, seq).multiply_adds;
  };
  std::vector<index_t> schedule(static_cast<std::size_t>(s.layers), 0);
  const double limit = fraction * multiply_adds(schedule);
  reuse_plan plan = reuse_plan::none(s.layers, s.heads);
  while (multiply_adds(schedule) > limit) {
    double best = -1;
    std::vector<index_t> chosen;
    for (index_t l = 1; l < s.layers; ++l) {
      if (!allowed[static_cast<std::size_t>(l)] || schedule[static_cast<std::size_t>(l)] == s.heads) continue;
      std::vector<index_t> trial = schedule;
      ++trial[static_cast<std::size_t>(l)];
      reuse_plan p = plan_reuse(s, trial);
      if (const double score = plan_similarity(p, s); score > best) {
        best = score;
        chosen = trial;
        plan = std::move(p);
      }
    }
    if (chosen.empty()) {
      throw error(detail::concat("--budget ", fraction,
                                 ": expected a fraction of the multiply-adds that reuse can reach, found ",
                                 "that reusing every allowed head still costs ",
                                 multiply_adds(schedule) / (limit / fraction), " of the original"));
    }
    schedule = chosen;
  }
  return plan;
}

// Throws reuseformer::error unless `plan` is well formed and keeps to the
// prefix rule: each layer's order is a permutation of its heads; layer 0
// reuses nothing; the heads at positions F_l … H - 1 of layer l, and only
// those, have a source, and the one at F_l + j reads order[l-1][j] (so the
// sources are the first K_l entries of layer l-1's stack, each serving one head).
inline void check_plan(const reuse_plan& plan) {
  const index_t h = plan.heads;
  detail::require_schedule(plan.schedule, plan.layers(), h);
  detail::require(static_cast<index_t>(plan.order.size()) == plan.layers() &&
                      static_cast<index_t>(plan.source.size()) == plan.layers(),
                  "reuse plan: expected an order and sources per layer");
  for (index_t l = 0; l < plan.layers(); ++l) {
    const auto& order = plan.order[static_cast<std::size_t>(l)];
    const auto& source = plan.source[static_cast<std::size_t>(l)];
    std::vector<index_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (index_t p = 0; p < h; ++p)
      detail::require(static_cast<index_t>(sorted.size()) == h && sorted[static_cast<std::size_t>(p)] == p,
                      "reuse plan: layer ", l, ": expected an order of the heads 0..", h - 1,
                      ", found a repeat or gap at ", p);
    detail::require(static_cast<index_t>(source.size()) == h, "reuse plan: layer ", l, ": expected ", h, " sources");
    for (index_t p = 0; p < h; ++p) {
      const index_t head = order[static_cast<std::size_t>(p)], j = p - plan.fresh(l);
      const index_t expected = j < 0 ? -1 : plan.order[static_cast<std::size_t>(l - 1)][static_cast<std::size_t>(j)];
      detail::require(source[static_cast<std::size_t>(head)] == expected, "reuse plan: layer ", l, " head ", head,
                      " (stack position ", p, "): expected source ", expected, ", found ",
                      source[static_cast<std::size_t>(head)]);
    }
  }
}

}  // namespace reuseformer::analysis
