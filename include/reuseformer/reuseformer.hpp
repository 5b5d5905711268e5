#pragma once
// reuseformer: header-only transformer encoder layers for the CPU.
// The only header a user of the layers needs to include (dependencies: xsimd,
// and OpenMP when enabled). Loading checkpoints from files is
// reuseformer/io.hpp, which adds nlohmann_json and POSIX file mapping.

#include "reuseformer/analysis/attention_similarity.hpp"
#include "reuseformer/analysis/cost_model.hpp"
#include "reuseformer/analysis/reuse_planner.hpp"
#include "reuseformer/attention/attention_mask.hpp"
#include "reuseformer/attention/decode_attention.hpp"
#include "reuseformer/attention/layer_cache.hpp"
#include "reuseformer/attention/pairwise_factors.hpp"
#include "reuseformer/attention/reuse_state.hpp"
#include "reuseformer/attention/scaled_dot_product.hpp"
#include "reuseformer/attention/score_function.hpp"
#include "reuseformer/core/bfloat16.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/version.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/gemm/triangular.hpp"
#include "reuseformer/layers/any_encoder.hpp"
#include "reuseformer/layers/bf16_products.hpp"
#include "reuseformer/layers/int8_products.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/decoder.hpp"
#include "reuseformer/layers/embeddings.hpp"
#include "reuseformer/layers/encoder.hpp"
#include "reuseformer/layers/encoder_layer.hpp"
#include "reuseformer/layers/encoder_parameters.hpp"
#include "reuseformer/layers/feed_forward.hpp"
#include "reuseformer/layers/layer_norm.hpp"
#include "reuseformer/layers/layer_tensors.hpp"
#include "reuseformer/layers/linear.hpp"
#include "reuseformer/layers/multi_head_attention.hpp"
#include "reuseformer/simd/activation.hpp"
#include "reuseformer/simd/arch.hpp"
#include "reuseformer/simd/layer_norm.hpp"
#include "reuseformer/simd/softmax.hpp"
#include "reuseformer/simd/transpose.hpp"
#include "reuseformer/simd/vector_matrix.hpp"

// Eigen interop and the Eigen product backend, when the build has Eigen 3.4
// (the CMake target defines this; without CMake, define it yourself or include
// reuseformer/eigen.hpp directly).
#ifdef REUSEFORMER_HAS_EIGEN
#include "reuseformer/eigen.hpp"
#endif
