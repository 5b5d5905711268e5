#pragma once
// The linear assignment problem (Hungarian method with potentials, O(n² m)):
// given costs [n, m] with n <= m, the columns col[r] of distinct columns, one per
// row, that minimise Σ_r cost[r, col[r]]. The reuse planner solves one per layer.

#include <cstddef>
#include <limits>
#include <vector>

#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"

namespace reuseformer::analysis {

// cost: rows × columns row-major, finite. Returns, for each row, its column.
// Throws reuseformer::error unless 1 <= rows <= columns and cost has rows·columns values.
[[nodiscard]] inline std::vector<index_t> solve_assignment(const std::vector<double>& cost, index_t rows,
                                                           index_t columns) {
  detail::require(rows >= 1 && rows <= columns, "assignment: expected 1 <= rows <= columns, found ", rows, " rows and ",
                  columns, " columns");
  detail::require(static_cast<index_t>(cost.size()) == rows * columns, "assignment: expected ", rows * columns,
                  " costs, found ", cost.size());
  // 1-based potentials u (rows), v (columns); match[c] = row matched to column c (0: none).
  const auto n = static_cast<std::size_t>(rows), m = static_cast<std::size_t>(columns);
  constexpr double infinity = std::numeric_limits<double>::infinity();
  std::vector<double> u(n + 1), v(m + 1);
  std::vector<std::size_t> match(m + 1), way(m + 1);
  for (std::size_t r = 1; r <= n; ++r) {
    match[0] = r;
    std::size_t column = 0;
    std::vector<double> least(m + 1, infinity);
    std::vector<char> used(m + 1, 0);
    do {  // grow an alternating tree from row r until it reaches a free column
      used[column] = 1;
      const std::size_t row = match[column];
      double delta = infinity;
      std::size_t next = 0;
      for (std::size_t c = 1; c <= m; ++c) {
        if (used[c]) continue;
        const double reduced = cost[(row - 1) * m + (c - 1)] - u[row] - v[c];
        if (reduced < least[c]) {
          least[c] = reduced;
          way[c] = column;
        }
        if (least[c] < delta) {
          delta = least[c];
          next = c;
        }
      }
      for (std::size_t c = 0; c <= m; ++c) {
        if (used[c]) {
          u[match[c]] += delta;
          v[c] -= delta;
        } else {
          least[c] -= delta;
        }
      }
      column = next;
    } while (match[column] != 0);
    do {  // flip the augmenting path
      const std::size_t previous = way[column];
      match[column] = match[previous];
      column = previous;
    } while (column != 0);
  }
  std::vector<index_t> col(n);
  for (std::size_t c = 1; c <= m; ++c)
    if (match[c] != 0) col[match[c] - 1] = static_cast<index_t>(c - 1);
  return col;
}

}  // namespace reuseformer::analysis
