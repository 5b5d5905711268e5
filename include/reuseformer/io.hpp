#pragma once
// reuseformer's file formats: the layers (reuseformer/reuseformer.hpp) plus
// Hugging Face checkpoints (config.json, safetensors) and model inputs.
// Needs nlohmann_json and POSIX memory mapping, which the layers do not: with
// CMake, link reuseformer::io instead of reuseformer::reuseformer.

#include "reuseformer/reuseformer.hpp"

#include "reuseformer/io/bert_model.hpp"
#include "reuseformer/io/config_json.hpp"
#include "reuseformer/io/encoder_tensors.hpp"
#include "reuseformer/io/model_input.hpp"
#include "reuseformer/io/planned_checkpoint.hpp"
#include "reuseformer/io/safetensors.hpp"
