#!/usr/bin/env bash
# Installs the Debian packages a build needs, if any is missing.
#   scripts/install-deps.sh            library, tests, examples and benchmarks
#   scripts/install-deps.sh --fixtures also PyTorch, to regenerate test fixtures (and fortunes, the
#                                      corpus of tools/train/train_mlm.py)
#   scripts/install-deps.sh --fuzz     also clang and libFuzzer (scripts/fuzz.sh)
#   scripts/install-deps.sh --bench    also PyTorch (a peer, and the ONNX export) and gnuplot (scripts/bench.sh)
#   scripts/install-deps.sh --arm64    also the aarch64 cross compiler (its libstdc++ and libgomp) and
#                                      qemu-aarch64 to run its programs (cmake --preset arm64)
#   scripts/install-deps.sh --lint     also clang-format and clang-tidy (scripts/lint.sh)
# As root it runs apt-get; otherwise it prints the exact command and exits 1.
set -euo pipefail

packages=(g++ cmake make libxsimd-dev nlohmann-json3-dev libeigen3-dev catch2 libbenchmark-dev libstb-dev)
if [[ "${1:-}" == "--fixtures" ]]; then packages+=(python3-torch python3-numpy python3-matplotlib fortunes); fi
if [[ "${1:-}" == "--fuzz" ]]; then packages+=(clang-14 libclang-rt-14-dev); fi
if [[ "${1:-}" == "--bench" ]]; then packages+=(python3-torch gnuplot-nox); fi
if [[ "${1:-}" == "--arm64" ]]; then packages+=(g++-aarch64-linux-gnu qemu-user); fi
if [[ "${1:-}" == "--lint" ]]; then packages+=(clang-format-16 clang-tidy-14); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

command="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "reuseformer needs these Debian packages: ${missing[*]}" >&2
  echo "Install them as root, then run this command again:" >&2
  echo "  sudo sh -c '$command'" >&2
  exit 1
fi
echo "Installing: ${missing[*]}"
sh -c "$command"
