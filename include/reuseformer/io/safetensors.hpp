#pragma once
// safetensors: the reader (memory-mapped, validated, zero-copy where it can) and
// the atomic writer. The format is described in safetensors_reader.hpp.

#include "reuseformer/io/safetensors_reader.hpp"
#include "reuseformer/io/safetensors_writer.hpp"
