#!/usr/bin/python3
"""Runs a Hugging Face BERT-style encoder in PyTorch and in ONNX Runtime (three
graphs, one quantized to int8), with the same weights and input as
reuseformer-encode, times each and compares their outputs with ours.

    /usr/bin/python3 bench/peers/peers.py --model DIR --input IN.safetensors
        [--reference OUT.safetensors] [--threads T] [--repeat R | --serve]
        [--peers pytorch,pytorch-nested,onnxruntime,onnxruntime-fused,onnxruntime-int8]
        [--node-modules DIR]
        [--work-dir DIR] [--opset K] [--ort-spinning on|off] [--blas DIR|system]
        [--node NODE] --out peers.json

DIR holds config.json (hidden_size, num_attention_heads, intermediate_size,
num_hidden_layers, hidden_act, layer_norm_eps; norm_first and causal are
honoured too) and model.safetensors with the Hugging Face BERT encoder tensor
names (optionally prefixed "bert."). IN holds hidden_states [B, N, d] (float)
and optionally attention_mask [B, N] (1 = token, 0 = padding). REFERENCE is
reuseformer-encode's --output file (tensor last_hidden_state [B, N, d]).

Peers:
  pytorch      torch.nn.TransformerEncoder of nn.TransformerEncoderLayer (post-LN
               unless norm_first; dropout 0; batch_first; enable_nested_tensor=False so
               padded tokens are computed like ours), eval(), under
               torch.inference_mode(), torch.set_num_threads(T),
               torch.set_num_interop_threads(1). "path" in the JSON tells whether
               PyTorch's fused inference fast path (torch._transformer_encoder_layer_fwd)
               ran, or the ordinary module path and why. Debian's torch does its matrix
               products through libblas.so.3: peers.py re-executes itself with --blas
               (default build/peers/openblas-openmp, unpacked there by install.sh)
               first on LD_LIBRARY_PATH, so PyTorch runs on OpenBLAS (OpenMP build,
               sharing torch's T OpenMP threads) instead of the system's reference
               BLAS; "blas" in the JSON names the library that was loaded.
  pytorch-nested
               the pytorch peer built with enable_nested_tensor=True: with a padding
               mask (and no causal mask) its fast path turns the batch into a nested
               tensor and skips the padded tokens; its outputs at padded positions are 0.
               The padding-skipping peer for ragged batches.
  onnxruntime  the same weights exported with torch.onnx.export (fixed shapes, one
               export per model and shape, cached under --work-dir) and run by
               ort_run.mjs through onnxruntime-node (CPU execution provider,
               intraOpNumThreads T, interOpNumThreads 1, sequential, graph
               optimisation level "all", intra-op spinning --ort-spinning, default
               on). The export is a Hugging Face-style BERT layer written out
               (separate Q, K, V Linear layers, MatMul, Softmax, decomposed
               LayerNorm, erf GELU; graphs.make_bert_graph), which ONNX Runtime's
               own optimiser turns into Gemm, FusedMatMul, Softmax,
               SkipLayerNormalization and Gelu (it does not form its fused
               Attention op from it).
  onnxruntime-fused
               the same weights in the graph ONNX Runtime's transformer optimizer
               (onnxruntime/python/tools/transformers) makes of BERT, written
               directly with onnx.helper (Debian's python3-onnx; one file per model,
               symbolic batch and sequence, cached under --work-dir): per layer
               com.microsoft Attention (packed QKV weight [d, 3d] and bias, the
               [B, N] attention_mask cast to int32 as its key padding mask_index,
               unidirectional when causal), MatMul, SkipLayerNormalization (with the
               projection bias), MatMul, BiasGelu (FastGelu for the tanh GELUs, Add +
               Relu for relu), MatMul, SkipLayerNormalization; see
               graphs.make_fused_graph.
               Run by ort_run.mjs with the same session options as onnxruntime.
  onnxruntime-int8
               the onnxruntime-fused graph as ONNX Runtime's dynamic quantizer
               (quantize_dynamic, s8 weights per column) and optimiser make it:
               per layer DynamicQuantizeLinear of the layer input feeding
               com.microsoft QAttention, and com.microsoft DynamicQuantizeMatMul
               for the three other products; SkipLayerNormalization and BiasGelu
               as above (one file per model, "fused-int8-*.onnx"); see
               graphs.make_fused_graph(quantized=True). Same session options.

Each peer is built and runs 1 untimed warm-up pass; then come R rounds, each
one timed forward pass of every peer in turn. With --serve the caller paces
the rounds, so that they alternate with its own timed passes and a machine
that slows down or speeds up during the run affects both alike: peers.py
prints "ready" (stdout) once every peer is warmed up, then runs one round for
each line it reads on stdin and answers "done"; at the end of stdin it writes
the JSON and exits. Everything else it prints goes to stderr.

Output JSON:
  {"threads": T, "batch": B, "seq": N, "hidden_size": d, "layers": L,
   "reference": path or null, "reference_error": message (only if unreadable),
   "peers": {NAME: {"version": "...", "path": "...", "ms": [...], "median_ms": x,
                    "min_ms": x, "max_ms": x, "max_abs_diff_vs_reference": x or null,
                    "rms_diff_vs_reference": x (with a finite difference)}
                   or {"error": "message"}}}
The pytorch entry also has "blas" (the BLAS library loaded) and, on the
reference BLAS, "blas_warning"; the ONNX Runtime entries have "precision"
("fp32", or "int8" for onnxruntime-int8). max_abs_diff_vs_reference is
max |peer - reference| over the B*N*d elements (padded positions included,
except for pytorch-nested, which writes 0 there: its difference counts real tokens),
and rms_diff_vs_reference the root mean square of peer - reference over them;
null without a reference, or null plus "nonfinite_elements": count when the
difference is not finite (PyTorch gives NaN and the ONNX graphs mean values,
not zeros, for a sequence with no token at all). peers.py judges nothing:
reuseformer_compare holds these against the tolerance of each peer's precision
(bench/support/tolerance.hpp).

Exit status: 0 when the JSON was written (a peer that is unavailable or fails
gets {"error": ...} instead of its results), 2 for a usage error (bad or missing
arguments, a path that does not exist), 1 when the JSON cannot be written.
"""

import argparse
import importlib
import json
import os
import sys
import tempfile

from peerlib import PeerError
from peerlib.model import Model, read_input, read_reference
from peerlib.process import protocol_channel, serve, use_blas
from peerlib.runners import MAKERS, stats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = tuple(MAKERS)
DEFAULT_PEERS = ("pytorch", "onnxruntime", "onnxruntime-fused", "onnxruntime-int8")  # pytorch-nested: ragged batches


def positive(minimum):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, found {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, found {text!r}")
        return v
    return parse


def peer_list(text):
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in PEERS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(PEERS)}, found {text!r}")
    return list(dict.fromkeys(names))


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="peers.py", description="Times the same BERT encoder in PyTorch and ONNX Runtime and "
                                     "compares their outputs with reuseformer-encode's.")
    p.add_argument("--model", required=True, help="directory with config.json and model.safetensors")
    p.add_argument("--input", required=True, help="safetensors with hidden_states [B,N,d] and attention_mask [B,N]")
    p.add_argument("--reference", help="reuseformer-encode --output file (last_hidden_state [B,N,d])")
    p.add_argument("--threads", type=positive(1), default=os.cpu_count() or 1, help="intra-op threads (default: all)")
    p.add_argument("--repeat", type=positive(0), default=10,
                   help="timed rounds after 1 warm-up, without --serve (default 10)")
    p.add_argument("--serve", action="store_true",
                   help="time one round per line read from stdin instead of --repeat rounds (see above)")
    p.add_argument("--peers", type=peer_list, default=list(DEFAULT_PEERS),
                   help="subset of " + ",".join(PEERS) + " (default: " + ",".join(DEFAULT_PEERS) + ")")
    p.add_argument("--node-modules", default=os.path.join(ROOT, "build", "peers", "node_modules"),
                   help="node_modules holding onnxruntime-node (default: build/peers/node_modules)")
    p.add_argument("--work-dir", default=os.path.join(ROOT, "build", "peers", "work"),
                   help="cache for exported .onnx files (default: build/peers/work)")
    p.add_argument("--opset", type=positive(7), default=14, help="ONNX opset of the export (default 14)")
    p.add_argument("--ort-spinning", choices=("on", "off"), default="on",
                   help="ONNX Runtime's intra-op thread spinning (session.intra_op.allow_spinning; default on)")
    p.add_argument("--blas", default=os.path.join(ROOT, "build", "peers", "openblas-openmp"),
                   help="directory with the libblas.so.3 PyTorch should use, put on LD_LIBRARY_PATH "
                        "(default: build/peers/openblas-openmp, from install.sh); 'system' for the system's")
    p.add_argument("--node", default="node", help="the Node.js executable (default node)")
    p.add_argument("--out", required=True, help="where the JSON goes")
    args = p.parse_args(argv)
    for flag, path, want_dir in (("--model", args.model, True), ("--input", args.input, False),
                                 ("--reference", args.reference, False)):
        if path is not None and not (os.path.isdir(path) if want_dir else os.path.isfile(path)):
            p.error(f"{flag}: {path}: no such {'directory' if want_dir else 'file'}")
    args.node_modules = os.path.abspath(args.node_modules)
    args.work_dir = os.path.abspath(args.work_dir)
    return args


def main(argv):
    args = parse_args(argv)
    if any(p.startswith("pytorch") for p in args.peers) or "onnxruntime" in args.peers:  # those that run torch
        use_blas(args.blas, __file__, argv)
    protocol = protocol_channel() if args.serve else None
    report = {"threads": args.threads, "batch": None, "seq": None, "hidden_size": None, "layers": None,
              "reference": os.path.abspath(args.reference) if args.reference else None, "peers": {}}
    try:
        importlib.import_module("numpy")  # python3-torch brings it

        model = Model(args.model)
        x, mask = read_input(args.input, model.d)
        report.update(batch=int(x.shape[0]), seq=int(x.shape[1]), hidden_size=model.d, layers=model.layers)
        common_error = None
    except PeerError as e:
        common_error = str(e)
    except ImportError as e:
        common_error = f"numpy is not available for {sys.executable} ({e}); run bench/peers/install.sh"

    reference = None
    if common_error is None and args.reference:
        try:
            reference = read_reference(args.reference, x.shape)
        except (PeerError, OSError) as e:
            report["reference_error"] = str(e)

    live, times = {}, {}

    def attempt(name, step):
        """step(), or the peer's error entry: one peer's failure must not hide the others' results."""
        try:
            return step()
        except PeerError as e:
            report["peers"][name] = {"error": str(e)}
        except Exception as e:
            report["peers"][name] = {"error": f"{type(e).__name__}: {e}"}
        live.pop(name, None)
        return None

    for name in args.peers:
        if common_error is not None:
            report["peers"][name] = {"error": common_error}
            continue
        peer = attempt(name, lambda: MAKERS[name](args, model, x, mask, reference))
        if peer is not None:
            live[name], times[name] = peer, []

    def one_round():
        for name, peer in list(live.items()):
            ms = attempt(name, peer.once)
            if ms is not None:
                times[name].append(ms)

    if args.serve:
        serve(protocol, one_round)
    else:
        for _ in range(args.repeat):
            one_round()
    for name, peer in list(live.items()):
        result = attempt(name, peer.finish)
        if result is not None:
            report["peers"][name] = {**result, **stats(times[name])}
    report["peers"] = {name: report["peers"][name] for name in args.peers}  # in the order asked

    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    try:
        directory = os.path.dirname(os.path.abspath(args.out))
        fd, tmp = tempfile.mkstemp(prefix=".peers-", suffix=".json", dir=directory)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, args.out)
    except OSError as e:
        print(f"peers.py: {args.out}: cannot write the report: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
