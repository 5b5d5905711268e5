#pragma once
// What an encoder holds beyond its checkpoint's tensors: each layer packs its
// three products' weights (query | key | value, output, the two FFN matrices)
// into strips of NR columns (NR: the tile width of the layers' Arch), the last
// strip zero-padded.
#include <cstddef>

#include <reuseformer/reuseformer.hpp>

namespace test_support {

template <class T, class Arch = reuseformer::simd::default_arch>
std::size_t packing_padding_bytes(const reuseformer::encoder_config& c) {
  namespace rf = reuseformer;
  const rf::index_t nr = rf::gemm::packed_weights<T, Arch>::nr, d = c.hidden_size, d_ff = c.intermediate_size;
  const auto padding = [&](rf::index_t out, rf::index_t in) { return (rf::ceil_div(out, nr) * nr - out) * in; };
  std::size_t elements = 0;
  for (rf::index_t l = 0; l < c.num_hidden_layers; ++l) {
    const rf::index_t qk = c.fresh_heads(l) * c.head_dim() * (rf::has_key_projection(c.score) ? 2 : 1);
    elements += static_cast<std::size_t>(padding(qk + d, d) + padding(d, d) + padding(d_ff, d) + padding(d, d_ff));
  }
  return elements * sizeof(T);
}

}  // namespace test_support
