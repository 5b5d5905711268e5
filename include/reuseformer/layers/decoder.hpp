#pragma once
// Incremental causal decoding with a causal encoder's layers (docs/semantics.md
// §Incremental decoding): a prompt is prefilled once, then each step feeds one
// new token per sequence and returns its output, reading earlier tokens from a
// key/value cache (layers/kv_cache.hpp) instead of recomputing them.
//
//   reuseformer::encoder<float> model(config, layer_weights);   // config.causal = true
//   reuseformer::decoder state(model, batch, max_length, threads);  // caches and workspace, once
//   state.prefill(prompt, prompt_out, lengths);   // [B, N, d], per-sequence lengths
//   state.step(token, token_out);                 // [B, 1, d], repeatedly; no allocation
//
// The outputs are those of the model's causal forward pass over the whole
// sequence so far. The decoder runs the model's own parts (packed projection
// weights, LayerNorms, feed-forward blocks, kernels); it owns only the cache,
// the positions and its workspace. Reuse layers cache no keys for the heads
// they reuse: their probability row for the new token is the one the layer
// below computed in the same step.

#include <algorithm>
#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "reuseformer/attention/decode_attention.hpp"
#include "reuseformer/attention/reuse_state.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/layers/encoder.hpp"
#include "reuseformer/layers/forward_interface.hpp"
#include "reuseformer/layers/kv_cache.hpp"

namespace reuseformer {

template <class T, score_function Score = score_function::standard, class Arch = simd::default_arch,
          class Products = packed_products>
class decoder {
 public:
  using model_type = encoder<T, Score, Arch, Products>;

  // Exact bytes of the cache for `batch` sequences of up to `max_length` tokens
  // (layers/kv_cache.hpp), and of the workspace for prompts of up to
  // max_length tokens and for steps on `threads` threads.
  [[nodiscard]] static std::size_t cache_bytes(const model_type& model, index_t batch, index_t max_length) {
    return detail::kv_cache<T>::bytes(model.config(), batch, max_length);
  }
  [[nodiscard]] static std::size_t workspace_bytes(const model_type& model, index_t batch, index_t max_length,
                                                   int threads) {
    arena measure;
    const std::size_t start = measure.mark();
    static_cast<void>(plan_prefill(model, measure, batch, max_length, threads));
    measure.release(start);
    static_cast<void>(plan_step(model, measure, batch, max_length, threads));
    return measure.high_water();
  }

  // A decoder for `batch` sequences of up to `max_length` tokens each (prompt
  // and generated tokens together) on `threads` threads; every sequence starts
  // empty. Views `model`, which the caller keeps alive. Allocates the cache and
  // the workspace, once. Throws reuseformer::error unless the model is causal
  // and batch, max_length, threads >= 1.
  decoder(const model_type& model, index_t batch, index_t max_length, int threads = 1)
      : model_((validate(model, batch, max_length, threads), model)),
        batch_(batch),
        max_length_(max_length),
        cache_(model.config(), batch, max_length),
        lengths_(static_cast<std::size_t>(batch), 0),
        workspace_(workspace_bytes(model, batch, max_length, threads), threads) {}

  [[nodiscard]] index_t batch() const { return batch_; }
  [[nodiscard]] index_t max_length() const { return max_length_; }
  [[nodiscard]] int threads() const { return workspace_.threads(); }
  [[nodiscard]] std::size_t cache_bytes() const { return cache_.size_bytes(); }
  [[nodiscard]] std::size_t workspace_bytes() const { return workspace_.size_bytes(); }
  // Tokens each sequence holds in the cache (its next token's position).
  [[nodiscard]] std::span<const index_t> lengths() const { return lengths_; }

  // Starts every sequence afresh from a prompt [B, N, d] (1 <= N <= max_length):
  // sequence b's prompt is its first lengths[b] rows (all N when `lengths` is
  // empty; each in [1, N]). Writes the causal forward pass's output of those
  // rows to output [B, N, d] (which may be the prompt itself) and zeros to the
  // rows after them, and caches them. Throws reuseformer::error on a wrong
  // shape, batch or length, before anything is written. Allocates no memory.
  void prefill(tensor_view<const T, 3> prompt, tensor_view<T, 3> output, std::span<const index_t> lengths = {}) {
    const index_t seq = prompt.extent(1), d = model_.hidden_size();
    detail::require(prompt.extent(0) == batch_, "prompt: expected batch ", batch_, " (the decoder's), found ",
                    prompt.extent(0));
    detail::require(seq >= 1 && seq <= max_length_, "prompt: expected 1 to ", max_length_,
                    " tokens (the decoder's max_length), found ", seq);
    detail::require_shape(prompt, {batch_, seq, d}, "prompt");
    check_output(prompt, output, "output");
    detail::require(lengths.empty() || static_cast<index_t>(lengths.size()) == batch_,
                    "prompt lengths: expected none or ", batch_, " (one per sequence), found ", lengths.size());
    for (std::size_t b = 0; b < lengths.size(); ++b)
      detail::require(lengths[b] >= 1 && lengths[b] <= seq, "prompt lengths[", b, "]: expected a value in [1, ", seq,
                      "], found ", lengths[b]);
    for (std::size_t b = 0; b < lengths_.size(); ++b) lengths_[b] = lengths.empty() ? seq : lengths[b];

    // Rows after a prompt are zeroed: the causal mask keeps them from the
    // prompt's rows, and zeros keep them finite (a non-finite value times a
    // zero probability would still be NaN).
    T* const stream = output.data();
    if (stream != prompt.data()) std::copy(prompt.data(), prompt.data() + prompt.size(), stream);
    const auto clear_tails = [&] {
      for (index_t b = 0; b < batch_; ++b)
        std::fill(stream + (b * seq + length(b)) * d, stream + (b + 1) * seq * d, T(0));
    };
    clear_tails();

    arena a = workspace_.make_arena();
    const prefill_buffers buffers = plan_prefill(model_, a, batch_, seq, threads());
    for (index_t l = 0; l < model_.attention_layers(); ++l) {
      const auto& layer = model_.layers()[static_cast<std::size_t>(l)];
      const attention::head_io<T> routing = layer_heads(buffers.pool, l);
      arena layer_arena = buffers.layers;
      const auto lb = access::plan(layer, layer_arena, batch_shape::dense(batch_, seq), threads());
      access::execute(layer, stream, batch_ * seq, lb, [&](const T* x, T* out, auto after) {
        access::execute(layer.attention(), x, out, sequences::dense(batch_, seq), static_cast<const T*>(nullptr),
                        lb.attention, routing, after);
        const auto projected = access::operands(layer.attention(), lb.attention, batch_ * seq);
        const attention::layer_cache<T>& cache = cache_.layer(l);
        for (index_t b = 0; b < batch_; ++b)
          for (index_t j = 0; j < length(b); ++j)
            cache.store(b, j, projected.key.data + (b * seq + j) * projected.key.ld,
                        projected.value.data + (b * seq + j) * projected.value.ld);
      });
    }
    clear_tails();
  }

  // Appends one token per sequence, token [B, 1, d], and writes its output
  // [B, 1, d] (which may be the token itself): row b is the causal forward
  // pass's output at position lengths()[b] of sequence b. Throws
  // reuseformer::error on a wrong shape or when a sequence's cache is full
  // (lengths()[b] == max_length), before anything is written. Allocates no memory.
  void step(tensor_view<const T, 3> token, tensor_view<T, 3> output) {
    const index_t d = model_.hidden_size();
    detail::require_shape(token, {batch_, 1, d}, "token");
    check_output(token, output, "output");
    for (index_t b = 0; b < batch_; ++b)
      detail::require(length(b) < max_length_, "step: sequence ", b, " holds ", length(b),
                      " tokens, the decoder's max_length: expected fewer than ", max_length_, ", found ", length(b));

    T* const stream = output.data();
    if (stream != token.data()) std::copy(token.data(), token.data() + token.size(), stream);
    arena a = workspace_.make_arena();
    const step_buffers buffers = plan_step(model_, a, batch_, max_length_, threads());
    for (index_t l = 0; l < model_.attention_layers(); ++l) {
      const auto& layer = model_.layers()[static_cast<std::size_t>(l)];
      const auto& attention = layer.attention();
      attention::head_io<T> routing = layer_heads(buffers.pool, l);
      access::route_relative_bias(attention, routing);
      arena layer_arena = buffers.layers;
      const auto lb = access::plan(layer, layer_arena, batch_shape::dense(batch_, 1), threads());
      access::execute(layer, stream, batch_, lb, [&](const T* x, T* out, auto after) {
        const auto projected = access::project(attention, x, batch_, lb.attention);
        const attention::layer_cache<T>& cache = cache_.layer(l);
        for (index_t b = 0; b < batch_; ++b)
          cache.store(b, length(b), projected.key.data + b * projected.key.ld,
                      projected.value.data + b * projected.value.ld);
        routing.q = projected.query;
        attention::decode_attention<T, Arch>(cache, lengths_.data(), access::scale(attention), routing,
                                             gemm::matrix<T>{lb.attention.context, batch_, d, d}, buffers.scratch);
        access::finish(attention, out, batch_, lb.attention, after);
      });
    }
    for (index_t& length : lengths_) ++length;
  }

 private:
  using access = detail::module_access;

  // Prefill: the reuse state of a causal forward pass [B, slots, N, N], then
  // each layer's temporaries (layers run one at a time).
  struct prefill_buffers {
    attention::probability_store<T> pool;
    arena layers;
  };
  // Step: the reuse state, one row per slot and sequence [B, slots, L], the
  // attention core's per-thread rows, then each layer's temporaries for B rows.
  struct step_buffers {
    attention::probability_store<T> pool;
    thread_scratch<T> scratch;
    arena layers;
  };

  static prefill_buffers plan_prefill(const model_type& model, arena& a, index_t batch, index_t seq, int threads) {
    T* const pool = a.take<T>(model.reuse_plan().slots() * batch * seq * seq);
    prefill_buffers b{{pool, model.reuse_plan().slots()}, a};
    access::plan_largest(model.layers(), a, batch_shape::dense(batch, seq), threads);
    return b;
  }

  static step_buffers plan_step(const model_type& model, arena& a, index_t batch, index_t max_length, int threads) {
    T* const pool = a.take<T>(model.reuse_plan().slots() * batch * max_length);
    const auto scratch = detail::take_thread_scratch<T>(a, attention::decode_scratch_elements<T>(max_length), threads);
    step_buffers b{{pool, model.reuse_plan().slots()}, scratch, a};
    access::plan_largest(model.layers(), a, batch_shape::dense(batch, 1), threads);
    return b;
  }

  static void validate(const model_type& model, index_t batch, index_t max_length, int threads) {
    detail::require(model.config().causal, "decoder: expected a causal model (causal = true), found causal = false");
    detail::require(batch >= 1 && max_length >= 1 && threads >= 1,
                    "decoder: expected batch, max_length and threads >= 1, found batch ", batch, ", max_length ",
                    max_length, ", threads ", threads);
  }

  // output has input's shape and is input itself or memory that does not overlap it.
  static void check_output(const tensor_view<const T, 3>& input, const tensor_view<T, 3>& output, const char* name) {
    detail::require_shape(output, input.shape(), name);
    const T *in = input.data(), *out = output.data();
    detail::require(out == in || detail::disjoint(in, out, input.size()), name,
                    ": expected the input itself or memory that does not overlap it");
  }

  [[nodiscard]] index_t length(index_t b) const { return lengths_[static_cast<std::size_t>(b)]; }

  // Layer l's reused and kept heads in `pool`, as the encoder routes them.
  [[nodiscard]] attention::head_io<T> layer_heads(attention::probability_store<T> pool, index_t l) const {
    return attention::encoder_layer_heads(model_.reuse_plan(), pool, l, attention::probability_store<T>{});
  }

  const model_type& model_;
  index_t batch_, max_length_;
  detail::kv_cache<T> cache_;
  std::vector<index_t> lengths_;
  workspace workspace_;
};

}  // namespace reuseformer
