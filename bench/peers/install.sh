#!/bin/sh
# Installs what bench/peers/peers.py needs; does nothing that is already done.
#
#   bench/peers/install.sh [PREFIX]
#
# - PyTorch and onnx for /usr/bin/python3: Debian's python3-torch (PyTorch 1.13,
#   with numpy) and python3-onnx (onnx 1.12, which writes the onnxruntime-fused
#   peer's graph), through apt-get, when `import torch` / `import onnx` fails.
#   Needs root; otherwise the command to run is printed and the script exits 1.
# - onnxruntime-node 1.30 (which carries the CPU build of ONNX Runtime) from the
#   npm registry into PREFIX/node_modules (PREFIX defaults to build/peers under
#   the repository root). --ignore-scripts: the package's install script would
#   download GPU libraries we do not use.
# - OpenBLAS (Debian's libopenblas0-openmp) unpacked into PREFIX/openblas-openmp,
#   for PyTorch only: Debian's torch does its matrix products through the system
#   libblas.so.3, which is the reference (netlib) BLAS unless an optimised one is
#   installed system-wide: a BERT-base layer then takes ~0.7 s instead of ~20 ms.
#   peers.py puts this directory on LD_LIBRARY_PATH; the system's BLAS
#   alternative is left as it is. `apt-get download` needs no root.
#
# Quiet on success; on failure one message on stderr (with the tail of the
# failing command's log) and exit status 1. Usage errors exit 2.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=/usr/bin/python3
ort_version=1.30

die() {
  echo "bench/peers/install.sh: $*" >&2
  exit 1
}

case $# in
  0) prefix=$root/build/peers ;;
  1) case $1 in -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
     prefix=$1 ;;
  *) echo "usage: bench/peers/install.sh [PREFIX]" >&2; exit 2 ;;
esac

log=$(mktemp "${TMPDIR:-/tmp}/peers-install.XXXXXX")
trap 'rm -f "$log"' EXIT

# --- PyTorch and onnx (Debian) ----------------------------------------------
[ -x "$python" ] || die "$python not found (the peers run on Debian's python3: apt-get install python3)"
missing=
"$python" -c 'import torch, numpy' >/dev/null 2>&1 || missing="$missing python3-torch"
"$python" -c 'import onnx' >/dev/null 2>&1 || missing="$missing python3-onnx"
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    die "missing for $python:$missing; run as root: apt-get install -y$missing"
  fi
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086  # $missing is a list of package names
  if ! apt-get install -y -q $missing >"$log" 2>&1; then
    # A fresh container often has no package lists yet.
    apt-get update -q >>"$log" 2>&1 || true
    # shellcheck disable=SC2086
    apt-get install -y -q $missing >>"$log" 2>&1 ||
      { tail -n 20 "$log" >&2; die "apt-get install$missing failed"; }
  fi
  "$python" -c 'import torch, numpy, onnx' >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; die "$missing installed but '$python -c \"import torch, onnx\"' fails"; }
fi

# --- ONNX Runtime for Node.js -------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found (Node.js >= 16 is needed to run onnxruntime-node)"
command -v npm >/dev/null 2>&1 || die "npm not found (it installs onnxruntime-node)"

mkdir -p "$prefix" || die "cannot create $prefix"
prefix=$(cd "$prefix" && pwd)
pkg=$prefix/node_modules/onnxruntime-node

# Present = the right minor version, and its native binding loads.
ort_ok() {
  node -e '
    const [pkg, want] = process.argv.slice(1);
    const v = require(pkg + "/package.json").version;
    if (!v.startsWith(want + ".")) { console.error("found onnxruntime-node " + v); process.exit(1); }
    require(pkg);
  ' "$pkg" "$ort_version" >"$log" 2>&1
}

if ! ort_ok; then
  if ! (cd "$prefix" && npm install --prefix "$prefix" --ignore-scripts --no-audit --no-fund --loglevel=error \
          "onnxruntime-node@$ort_version") >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "npm install onnxruntime-node@$ort_version into $prefix failed"
  fi
  ort_ok || { tail -n 20 "$log" >&2; die "onnxruntime-node installed into $prefix but does not load"; }
fi

# --- OpenBLAS for PyTorch (unpacked, not installed) ---------------------------
blas=$prefix/openblas-openmp
if [ ! -e "$blas/libblas.so.3" ]; then
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    die "apt-get and dpkg-deb are needed to fetch libopenblas0-openmp"
  fi
  work=$(mktemp -d "${TMPDIR:-/tmp}/peers-openblas.XXXXXX")
  chmod 755 "$work"  # apt's _apt user downloads into it
  if ! (cd "$work" && apt-get download -q libopenblas0-openmp) >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    rm -rf "$work"
    die "apt-get download libopenblas0-openmp failed (try apt-get update first)"
  fi
  if ! dpkg-deb -x "$work"/libopenblas0-openmp_*.deb "$work/x" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    rm -rf "$work"
    die "cannot unpack libopenblas0-openmp"
  fi
  lib=$(find "$work/x" -type d -name openblas-openmp | head -n 1)
  if [ -z "$lib" ] || [ ! -e "$lib/libblas.so.3" ]; then
    rm -rf "$work"
    die "libopenblas0-openmp has no libblas.so.3"
  fi
  rm -rf "$blas.tmp"
  if ! { cp -a "$lib" "$blas.tmp" && mv "$blas.tmp" "$blas"; }; then
    rm -rf "$work" "$blas.tmp"
    die "cannot copy OpenBLAS into $blas"
  fi
  rm -rf "$work"
fi
# Its own dependencies (libgfortran5, libgomp1) come from the system.
if ldd "$blas/libblas.so.3" 2>&1 | grep -q "not found"; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libgfortran5 libgomp1 >"$log" 2>&1 ||
      { tail -n 20 "$log" >&2; die "apt-get install libgfortran5 libgomp1 (for OpenBLAS) failed"; }
  fi
  missing=$(ldd "$blas/libblas.so.3" 2>&1 | grep "not found" | awk '{print $1}' | tr '\n' ' ')
  [ -z "$missing" ] || die "$blas/libblas.so.3 cannot load: missing $missing(apt-get install libgfortran5 libgomp1)"
fi
exit 0
