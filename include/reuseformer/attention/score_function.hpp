#pragma once
// How a fresh head's attention logits are formed (docs/semantics.md §Symmetric
// and pairwise scores). Chosen at compile time: multi_head_attention,
// encoder_layer and encoder take one as a template argument, and the config read
// from disk (`plpi_affinity_function`) must name the same one. The traits below
// are constexpr so that code which only needs shapes (parameters, cost model)
// asks them at run time from the config, and the layers ask them at compile time:
// one definition serves both.
//
// Per fresh head h, with Q_h = X W_Q,hᵀ + b_Q,h and scale s = 1/sqrt(dh):
//   standard            s · Q_h K_hᵀ          K_h from its own key projection
//   symmetric           s · Q_h Q_hᵀ          no key projection (K := Q, bias included)
//   pairwise            s · Q_h P_h Q_hᵀ      P [H - K_l, dh, dh], unconstrained
//   pairwise_diagonal   s · Q_h P_h Q_hᵀ      P diagonal (off-diagonal entries exactly 0)
//   pairwise_symmetric  s · Q_h P_h Q_hᵀ      P symmetric (P_h = P_hᵀ exactly)
// The three pairwise kinds share the tensor `attention.self.pairwise_factors`
// with the released code's shape; the constraints are checked when a layer is
// built, so a symmetric-logits computation is never applied to factors that
// would make it wrong.

#include <optional>
#include <string_view>

namespace reuseformer {

enum class score_function { standard, symmetric, pairwise, pairwise_diagonal, pairwise_symmetric };

inline constexpr score_function all_score_functions[] = {score_function::standard, score_function::symmetric,
                                                         score_function::pairwise, score_function::pairwise_diagonal,
                                                         score_function::pairwise_symmetric};

// The key projection exists (only for standard scores).
[[nodiscard]] constexpr bool has_key_projection(score_function f) { return f == score_function::standard; }

// The layer has `pairwise_factors` P [H - K_l, dh, dh].
[[nodiscard]] constexpr bool has_pairwise_factors(score_function f) {
  return f == score_function::pairwise || f == score_function::pairwise_diagonal ||
         f == score_function::pairwise_symmetric;
}

// The logits of a head are symmetric by construction (before any mask), so one
// triangle is computed and mirrored.
[[nodiscard]] constexpr bool has_symmetric_logits(score_function f) {
  return f == score_function::symmetric || f == score_function::pairwise_diagonal ||
         f == score_function::pairwise_symmetric;
}

// The name used by config.json (`plpi_affinity_function`): "vanilla",
// "symmetric", "pairwise", and this library's "pairwise_diagonal",
// "pairwise_symmetric".
[[nodiscard]] constexpr std::string_view name_of(score_function f) {
  switch (f) {
    case score_function::standard:
      return "vanilla";
    case score_function::symmetric:
      return "symmetric";
    case score_function::pairwise:
      return "pairwise";
    case score_function::pairwise_diagonal:
      return "pairwise_diagonal";
    case score_function::pairwise_symmetric:
      return "pairwise_symmetric";
  }
  return "unknown";
}

// The score function named `name` (as name_of() writes it), or none.
[[nodiscard]] constexpr std::optional<score_function> score_function_named(std::string_view name) {
  for (const score_function f : all_score_functions)
    if (name_of(f) == name) return f;
  return std::nullopt;
}

// Calls visitor.template operator()<F>() with the compile-time form of `f`: the
// one place a score function read at run time picks a compiled instantiation.
//   visit(config.score, [&]<score_function F>() { encoder<float, F> model(config, layers); ... });
template <class Visitor>
decltype(auto) visit(score_function f, Visitor&& visitor) {
  switch (f) {
    case score_function::symmetric:
      return visitor.template operator()<score_function::symmetric>();
    case score_function::pairwise:
      return visitor.template operator()<score_function::pairwise>();
    case score_function::pairwise_diagonal:
      return visitor.template operator()<score_function::pairwise_diagonal>();
    case score_function::pairwise_symmetric:
      return visitor.template operator()<score_function::pairwise_symmetric>();
    case score_function::standard:
      break;
  }
  return visitor.template operator()<score_function::standard>();
}

}  // namespace reuseformer
