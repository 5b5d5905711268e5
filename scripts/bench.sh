#!/usr/bin/env bash
# The main job: the comparison table. Builds the library for this machine
# (-march=native), times a BERT-base encoder (12 layers) in every variant
# (vanilla, score reuse, symmetric, pairwise), each on float, bf16 and int8
# products, runs PyTorch and ONNX Runtime (float, and its int8 quantized graph)
# on the same weights and input (bench/peers), prints one table per shape and
# writes build/compare/results.json, speedup.png and memory.png.
#   scripts/bench.sh [--shapes 1x128,8x128,1x512,8x512] [--ragged 8x32-512,8x16-128|none]
#                    [--threads T] [--repeat R] [--layers L] [--no-peers]
# A ragged batch (BxLO-HI: B lengths drawn from a fixed seed, uniform in
# [LO, HI]) is timed padded, padding::skip and packed; its peers are PyTorch
# padded and with nested tensors (padding skipped) and ONNX Runtime padded.
# Peers and our variants are timed in alternation, round by round. Every
# output, ours and the peers', is checked against its model's float64 output
# (bench/support/tolerance.hpp): one that is out of tolerance or not finite
# makes the comparison, and so this script, exit 1 after the tables.
# As root it installs what is missing (Debian: gnuplot, python3-torch; npm:
# onnxruntime-node); otherwise it prints the command to run. Without the peers
# (or with --no-peers) it still prints the table of our variants.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

shapes=1x128,8x128,1x512,8x512
ragged=8x32-512,8x16-128
threads=$jobs
repeat=5
layers=12
peers=yes
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shapes | --ragged | --threads | --repeat | --layers)
      [[ $# -ge 2 ]] || { echo "scripts/bench.sh: $1 needs a value" >&2; exit 2; }
      declare "${1#--}=$2"
      shift 2 ;;
    --no-peers) peers=no; shift ;;
    *) echo "usage: scripts/bench.sh [--shapes 1x128,8x512] [--ragged 8x32-512|none] [--threads T] [--repeat R] [--layers L] [--no-peers]" >&2
       exit 2 ;;
  esac
done

dir=build/compare
scripts/install-deps.sh
# The peers and the plot are extras: when they cannot be installed (no network,
# not root) the table is still made, and says that the peers are missing.
if [[ $peers == yes ]] && ! { scripts/install-deps.sh --bench && bench/peers/install.sh build/peers; }; then
  echo "scripts/bench.sh: PyTorch / ONNX Runtime unavailable (see above); the table will have no peer rows" >&2
  peers=no
fi
cmake --preset release -DREUSEFORMER_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j "$jobs" --target reuseformer_compare
compare=build/release/bench/reuseformer_compare
options=(--shapes "$shapes" --ragged "$ragged" --threads "$threads" --repeat "$repeat" --layers "$layers")

rm -rf "$dir"
if [[ $peers == yes ]]; then
  # The peers run in a child of the comparison, one pass of each after each of
  # its rounds (bench/support/peer_process.hpp), on the exported model and inputs.
  "$compare" export "$dir" "${options[@]}"
  options+=(--peers "/usr/bin/python3 bench/peers/peers.py --node-modules build/peers/node_modules")
fi
"$compare" run "$dir" "${options[@]}"
if command -v gnuplot >/dev/null; then
  gnuplot "$dir/plot.gp" && echo "plots: $dir/speedup.png, $dir/memory.png"
fi
