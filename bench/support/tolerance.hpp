#pragma once
// How close the benchmarks' outputs must be to the exact ones: the error an
// encoder's output may have against its float64 reference, relative to the
// outputs' scale max|reference|, for float, bf16 or int8 products.
//
// Rounding errors have random signs and are independent, so they add in
// quadrature (Higham & Mary's probabilistic analysis): n of relative size u
// leave ~sqrt(n) * u. A layer chains four products on each token (Q, K, V; the
// output projection; the two feed-forward products); softmax weights sum to 1
// and LayerNorm divides by the row's spread, so neither amplifies a relative
// error, and the errors of L layers add: the output is off by about
// sqrt(4 L) * u of its scale, u the relative error of one product. The error
// and max|reference| are both maxima over the same elements, so their ratio is
// that of their typical sizes.
//   fp32 (ours, PyTorch, ONNX Runtime): a dot product of k terms accumulated
//     in float is off by ~sqrt(k) * 2^-24 of its size, k at most
//     max(d_ff, keys) (the feed-forward product, or softmax(QK^T) V). The
//     peers' fused kernels (ONNX Runtime's Attention, SkipLayerNormalization
//     and BiasGelu on MLAS, PyTorch's fast path) are float arithmetic too;
//     their exp and erf approximations are good to a few ulps, inside sqrt(k)
//     ulps.
//   bf16: weights and activations are rounded to 8 significant bits, each by
//     up to 2^-9 relative, so a product of the two by up to 2^-8 (the float
//     accumulation adds nothing comparable).
//   int8 (ours, ONNX Runtime's quantized graph): each operand is rounded to a
//     grid of 255 steps over the range of its group (a weight column; an
//     activation row for us, the whole tensor for ONNX Runtime), a range of
//     at most 2 max|group|: an error uniform within half a step, whose rms is
//     max|group| / (255 sqrt(3)) = k / 442 of the group's rms, k its crest
//     factor max / rms. The two operands' errors add in quadrature: a product
//     is off by sqrt(2) k / 442 ~ k 2^-8.3 of its size, taken as k 2^-8. k is
//     about sqrt(2 ln n) for n normal values: 3.6 for a row of 768, 5.7 for
//     an [8 x 512, 3072] tensor; k = 4 is used (the integer sums and the
//     float dequantization add nothing comparable).
// At BERT-base (12 layers, up to 3072 keys): fp32 2.3e-5, bf16 0.027 and int8
// 0.11 of the scale. Seen in bench/compare.cpp at 1x128 and 8x16-128: fp32 8e-7
// to 1e-6 (ours and the peers' alike), bf16 4e-3 to 5e-3; int8 at 1x128 2e-2
// to 2.3e-2 (ours and ONNX Runtime's quantized graph): a change that makes the
// error 20x (fp32) or 5x (bf16, int8) larger fails the run.
#include <reuseformer/layers/config.hpp>

#include <algorithm>
#include <cmath>
#include <string>

namespace reuseformer_bench {

// The arithmetic of a model's products.
enum class precision { fp32, bf16, int8 };

// Its name in the benchmarks' tables and JSON.
inline const char* name_of(precision p) {
  switch (p) {
    case precision::bf16:
      return "bf16";
    case precision::int8:
      return "int8";
    case precision::fp32:
      break;
  }
  return "fp32";
}

struct tolerance {
  double relative;    // of max|reference|
  std::string basis;  // the formula, printed with a failure
};

// The tolerance of an encoder of config c on `keys` keys per query, in precision p.
inline tolerance tolerance_for(precision p, const reuseformer::encoder_config& c, reuseformer::index_t keys) {
  const double products = std::sqrt(4.0 * static_cast<double>(c.num_hidden_layers));
  if (p == precision::bf16) return {products * std::ldexp(1.0, -8), "bf16: sqrt(4 L) 2^-8"};
  if (p == precision::int8) return {products * 4 * std::ldexp(1.0, -8), "int8: sqrt(4 L) k 2^-8, crest factor k = 4"};
  const auto k = static_cast<double>(std::max(c.intermediate_size, keys));
  return {products * std::sqrt(k) * std::ldexp(1.0, -24), "fp32: sqrt(4 L) sqrt(max(d_ff, keys)) 2^-24"};
}

}  // namespace reuseformer_bench
