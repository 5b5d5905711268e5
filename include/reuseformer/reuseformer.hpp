#pragma once
// reuseformer: header-only transformer encoder layers for the CPU.
// The only header a user needs to include.

#include "reuseformer/attention/attention_mask.hpp"
#include "reuseformer/attention/scaled_dot_product.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/version.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/encoder.hpp"
#include "reuseformer/layers/encoder_layer.hpp"
#include "reuseformer/layers/encoder_parameters.hpp"
#include "reuseformer/layers/feed_forward.hpp"
#include "reuseformer/layers/layer_norm.hpp"
#include "reuseformer/layers/linear.hpp"
#include "reuseformer/layers/multi_head_attention.hpp"
#include "reuseformer/simd/activation.hpp"
#include "reuseformer/simd/arch.hpp"
#include "reuseformer/simd/layer_norm.hpp"
#include "reuseformer/simd/softmax.hpp"
