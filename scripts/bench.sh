#!/usr/bin/env bash
# The main job: builds the library for this machine (-march=native) and runs the
# BERT-base encoder benchmark, printing time and memory.
# Usage: scripts/bench.sh [--batch B] [--seq N] [--threads T] [--repeat R]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release -DREUSEFORMER_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j "$(nproc)" --target bert_base_encoder
build/release/examples/bert_base_encoder "$@"
