#pragma once
// reuseformer: header-only transformer encoder layers for the CPU.
// The only header a user of the layers needs to include (dependencies: xsimd,
// and OpenMP when enabled): the configuration, the modules (encoder, its
// layers, decoder, embeddings), their product backends, workspaces and the
// reuse analysis. The kernels they run on (gemm/, simd/, attention/) come with
// them, in their own namespaces. Two more headers add what needs more:
//   reuseformer/io.hpp     loading checkpoints (nlohmann_json, POSIX file mapping)
//   reuseformer/eigen.hpp  Eigen interop and the Eigen product backend (Eigen 3.4)

#include "reuseformer/analysis/attention_similarity.hpp"
#include "reuseformer/analysis/cost_model.hpp"
#include "reuseformer/analysis/reuse_planner.hpp"
#include "reuseformer/attention/attention_mask.hpp"
#include "reuseformer/attention/reuse_state.hpp"
#include "reuseformer/attention/score_function.hpp"
#include "reuseformer/core/bfloat16.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/version.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/layers/any_encoder.hpp"
#include "reuseformer/layers/bf16_products.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/decoder.hpp"
#include "reuseformer/layers/embeddings.hpp"
#include "reuseformer/layers/encoder.hpp"
#include "reuseformer/layers/encoder_layer.hpp"
#include "reuseformer/layers/encoder_parameters.hpp"
#include "reuseformer/layers/feed_forward.hpp"
#include "reuseformer/layers/int8_products.hpp"
#include "reuseformer/layers/layer_norm.hpp"
#include "reuseformer/layers/layer_tensors.hpp"
#include "reuseformer/layers/linear.hpp"
#include "reuseformer/layers/multi_head_attention.hpp"
