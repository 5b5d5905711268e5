#!/usr/bin/env bash
# Fails if a library header includes a header of a higher module, so that the
# library stays layered one way:
#   core -> simd -> gemm -> attention -> layers -> analysis | io | eigen
# (a module may include its own headers and those of any module to its left;
# analysis, io and eigen are one level and may include one another). The
# umbrella headers (reuseformer.hpp, io.hpp, eigen.hpp) sit above every module.
# A library header never includes project code outside include/ (tests,
# examples, benchmarks, tools).
#   scripts/check-layering.sh [HEADER...]   (default: every tracked library header)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -gt 0 ]]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files 'include/reuseformer/*.hpp')
fi
awk '
BEGIN {
  level["core"] = 0; level["simd"] = 1; level["gemm"] = 2; level["attention"] = 3; level["layers"] = 4
  level["analysis"] = 5; level["io"] = 5; level["eigen"] = 5
}
# The module of a path below reuseformer/, or "umbrella" for a top-level header.
function module_of(path,    parts, n) {
  n = split(path, parts, "/")
  return n == 1 ? "umbrella" : parts[1]
}
FNR == 1 {
  from = FILENAME; sub(/^.*include\/reuseformer\//, "", from)
  from_module = module_of(from)
}
/^[ \t]*#[ \t]*include[ \t]*["<]/ {
  target = $0; sub(/^[ \t]*#[ \t]*include[ \t]*["<]/, "", target); sub(/[">].*/, "", target)
  if (target !~ /\//) next  # a standard or third-party header
  if (target !~ /^reuseformer\//) {
    if (target !~ /^(xsimd|Eigen|unsupported|nlohmann|sys)\//) {
      printf "%s:%d: includes %s, which is not a library header\n", FILENAME, FNR, target; found = 1
    }
    next
  }
  to = substr(target, length("reuseformer/") + 1)
  to_module = module_of(to)
  if (from_module == "umbrella") next
  if (to_module == "umbrella") {
    printf "%s:%d: %s includes the umbrella header %s\n", FILENAME, FNR, from_module, target; found = 1
    next
  }
  if (!(from_module in level) || !(to_module in level)) {
    printf "%s:%d: module %s or %s has no level in scripts/check-layering.sh\n", FILENAME, FNR, from_module, to_module
    found = 1
  } else if (level[to_module] > level[from_module]) {
    printf "%s:%d: %s includes %s, a higher module\n", FILENAME, FNR, from_module, target; found = 1
  }
}
END { exit found }
' "${files[@]}" || {
  echo "Move the code the lower module needs down (or the includer up): core -> simd -> gemm -> attention -> layers -> analysis | io | eigen." >&2
  exit 1
}
echo "layering: all ${#files[@]} library headers include only their own or lower modules"
