#pragma once
// eigen::products: the layers' product backend (layers/product_backend.hpp)
// on Eigen 3.4's general matrix product, the baseline our own GEMM is measured
// against. Select it as the last template parameter of a layer:
//   reuseformer::encoder<float, score_function::standard, simd::default_arch, eigen::products>
//
// Each Linear keeps a row-major copy of its stacked weight [out, in] (its
// parameter_bytes() counts that copy, unpacked, and the bias): Eigen packs the
// operands itself on every product, as it does for any Eigen expression.
//
// A product is split across the workspace's threads exactly as the default
// backend splits it (gemm::detail::parallel_parts, our OpenMP team), and each
// part runs Eigen's sequential kernel (general_matrix_matrix_product with no
// parallel info), so Eigen starts no threads of its own inside ours. Eigen
// chooses its cache blocking for each part's shape as it would for the same
// product written as an Eigen expression (computeProductBlockingSizes); its
// packing buffers are the part's slice of the workspace scratch instead of the
// heap (level3_blocking with blockA/blockB given), so a forward pass allocates
// nothing. The epilogues (bias, activation, residual LayerNorm) run on each
// part's block once Eigen's product on it is complete.

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <span>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::eigen {

struct products {
  // Eigen vectorises for the compiler's target, whatever Arch says; Arch only
  // sets the grain of the split across threads, as for the other backends.
  template <class T, class Arch>
  class weight {
   public:
    // Copies the blocks `parts` (each [out_i, in], row stride ld), stacked in order.
    weight(std::span<const gemm::matrix<const T>> parts, index_t in) : weight_(out_of(parts), in) {
      index_t row = 0;
      for (const gemm::matrix<const T>& p : parts)
        for (index_t i = 0; i < p.rows; ++i, ++row) std::copy_n(p.data + i * p.ld, in, weight_.row(row).data());
      // The largest blocks any part asks for: Eigen's depth block for this
      // depth, every output row, and the token block Eigen picks for many
      // tokens. Parts that ask for more are held to these (any blocking is
      // valid for the kernel; Eigen's picks stay within them in practice).
      kc_ = in;
      mc_ = out_features();
      nc_ = index_t{1} << 30;
      if (kc_ > 0 && mc_ > 0) Eigen::internal::computeProductBlockingSizes<T, T>(kc_, mc_, nc_, Eigen::Index{1});
      mc_ = out_features();
    }

    [[nodiscard]] index_t in_features() const { return weight_.cols(); }
    [[nodiscard]] index_t out_features() const { return weight_.rows(); }
    // The row-major copy of the weight, unpacked.
    [[nodiscard]] std::size_t bytes() const { return static_cast<std::size_t>(weight_.size()) * sizeof(T); }
    // Eigen's packed blocks of the weight (kc x mc) and of the tokens (kc x nc),
    // each starting on a cache line as Eigen's aligned packet loads require.
    [[nodiscard]] index_t scratch_elements() const {
      return in_features() == 0 || out_features() == 0 ? 0 : round_to_line<T>(kc_ * mc_) + round_to_line<T>(kc_ * nc_);
    }

    // y = x Wᵀ or y += x Wᵀ, then `epilogue` (see layers/product_backend.hpp).
    template <class Epilogue>
    void multiply(gemm::matrix<const T> x, gemm::matrix<T> y, gemm::update mode, const thread_scratch<T>& scratch,
                  const Epilogue& epilogue) const {
      const index_t k = in_features();
      gemm::detail::parallel_parts<T, Arch>(
          y.rows, y.cols, k, scratch, epilogue,
          [&](index_t row0, index_t rows, index_t col0, index_t cols, T* mine, const auto& done) {
            if (rows == 0 || cols == 0) return;
            const gemm::matrix<T> c = y.block(row0, rows, col0, cols);
            if (mode == gemm::update::overwrite)
              for (index_t i = 0; i < rows; ++i) std::fill_n(c.data + i * c.ld, cols, T(0));
            if (k > 0) multiply_part(x.block(row0, rows, 0, k), col0, c, mine);
            done(0, rows, 0, cols);
          });
    }

   private:
    using row_major = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

    // Eigen's packing buffers, given instead of allocated.
    class scratch_blocking : public Eigen::internal::level3_blocking<T, T> {
     public:
      scratch_blocking(T* block_a, T* block_b, index_t kc, index_t mc, index_t nc) {
        this->m_blockA = block_a;
        this->m_blockB = block_b;
        this->m_kc = kc;
        this->m_mc = mc;
        this->m_nc = nc;
      }
    };

    static index_t out_of(std::span<const gemm::matrix<const T>> parts) {
      index_t out = 0;
      for (const gemm::matrix<const T>& p : parts) out += p.rows;
      return out;
    }

    // c [rows, cols] += x [rows, k] · W[col0 : col0 + cols, :]ᵀ, computed as
    // Eigen computes a column-major product: cᵀ = W_part · xᵀ, with W_part
    // row-major [cols, k], xᵀ column-major [k, rows] (stride x.ld) and cᵀ
    // column-major [cols, rows] (stride c.ld).
    void multiply_part(gemm::matrix<const T> x, index_t col0, gemm::matrix<T> c, T* scratch) const {
      const index_t k = x.cols;
      Eigen::Index kc = k, mc = c.cols, nc = c.rows;
      Eigen::internal::computeProductBlockingSizes<T, T>(kc, mc, nc, Eigen::Index{1});
      kc = std::min(kc, kc_);
      mc = std::min(mc, mc_);
      nc = std::min(nc, nc_);
      scratch_blocking blocking(scratch, scratch + round_to_line<T>(kc_ * mc_), kc, mc, nc);
      using kernel = Eigen::internal::general_matrix_matrix_product<Eigen::Index, T, Eigen::RowMajor, false, T,
                                                                    Eigen::ColMajor, false, Eigen::ColMajor, 1>;
      kernel::run(c.cols, c.rows, k, weight_.data() + col0 * k, k, x.data, x.ld, c.data, 1, c.ld, T(1), blocking);
    }

    row_major weight_;
    Eigen::Index kc_ = 0, mc_ = 0, nc_ = 0;
  };
};

}  // namespace reuseformer::eigen
