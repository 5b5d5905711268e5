"""The peers: each engine's runner, built and warmed up at construction, once()
timing one forward pass, finish() returning its JSON entry (version, path,
errors against the reference). MAKERS holds them by name.

TorchPeer runs PyTorch in this process; OrtPeer runs ONNX Runtime in an
ort_run.mjs child (onnxruntime-node), on a .onnx file made once and cached
under --work-dir: the torch.onnx.export of make_bert_graph (onnxruntime) or a
fused graph (onnxruntime-fused, onnxruntime-int8).
"""

import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from . import OUTPUT_NAME, PeerError
from .graphs import causal_mask, import_onnx, make_bert_graph, make_fused_graph, torch_encoder, FUSED_GRAPH_VERSION
from .process import child_env, loaded_blas

PEERS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where ort_run.mjs is


def stats(ms):
    return {"ms": ms,
            "median_ms": statistics.median(ms) if ms else None,
            "min_ms": min(ms) if ms else None,
            "max_ms": max(ms) if ms else None}


def compare(np, out, reference, tokens=None):
    """max |out - reference| and the root mean square of out - reference, or None
    without a reference; non-finite outputs are reported. tokens: a [B, N] mask of
    the positions to compare (None: all)."""
    if reference is None:
        return {"max_abs_diff_vs_reference": None}
    if out.shape != reference.shape:
        raise PeerError(f"output shape {list(out.shape)} differs from the reference's {list(reference.shape)}")
    diff = np.abs(out.astype(np.float64) - reference.astype(np.float64))
    if tokens is not None:
        diff = diff[tokens != 0]
    if not np.all(np.isfinite(diff)):
        return {"max_abs_diff_vs_reference": None, "nonfinite_elements": int(np.sum(~np.isfinite(diff)))}
    return {"max_abs_diff_vs_reference": float(diff.max()) if diff.size else 0.0,
            "rms_diff_vs_reference": float(np.sqrt(np.mean(diff * diff))) if diff.size else 0.0}


_torch = None


def import_torch(threads):
    """Imports torch once and sets its threads: T intra-op, 1 inter-op."""
    global _torch
    if _torch is None:
        try:
            import torch
        except Exception as e:  # ImportError, or a broken install
            raise PeerError(f"PyTorch is not available for {sys.executable} ({e}); "
                            "run bench/peers/install.sh") from None
        torch.set_num_threads(threads)
        # Only once, before any inter-op work: a second call aborts the process.
        torch.set_num_interop_threads(1)
        _torch = torch
    return _torch


class TorchPeer:
    """PyTorch's encoder on the input, warmed up; once() times one pass."""

    def __init__(self, args, model, x, mask, reference, nested=False):
        torch = self.torch = import_torch(args.threads)
        self.enc = torch_encoder(model, nested)
        self.hidden = torch.from_numpy(x)
        self.padding = torch.from_numpy(mask) == 0  # True = padding key
        self.attn_mask = causal_mask(x.shape[1]) if model.causal else None
        self.model, self.mask, self.reference, self.nested = model, mask, reference, nested
        # Which path runs: watch for the fused kernel during the warm-up pass.
        fused = torch._transformer_encoder_layer_fwd
        calls = []

        def spy(*a, **k):
            calls.append(1)
            return fused(*a, **k)

        torch._transformer_encoder_layer_fwd = spy
        try:
            self.out = self.forward()  # warm-up
        finally:
            torch._transformer_encoder_layer_fwd = fused
        self.fast_calls = len(calls)

    def forward(self):
        with self.torch.inference_mode():
            return self.enc(self.hidden, mask=self.attn_mask, src_key_padding_mask=self.padding)

    def once(self):
        start = time.perf_counter()
        self.out = self.forward()
        return (time.perf_counter() - start) * 1e3

    def finish(self):
        import numpy as np

        model, mask = self.model, self.mask
        if model.layers == 0:
            path = "no layers"
        elif self.fast_calls == model.layers:
            path = "fast path (torch._transformer_encoder_layer_fwd, " + (
                "nested tensor: padded tokens skipped)" if self.nested and not mask.all()
                else "padded tokens computed)")
        else:
            why = []
            if model.act not in ("gelu", "relu"):
                why.append(f"activation {model.act} is neither relu nor gelu")
            if model.causal:
                why.append("a causal src_mask is not supported by the fast path")
            if model.heads % 2:
                why.append("num_head is odd")
            path = "standard nn.Module path (" + ("; ".join(why) or "fast path refused") + ")"
        return {"version": self.torch.__version__, "path": path, **loaded_blas(),
                **compare(np, self.out.numpy(), self.reference, mask if self.nested else None)}


@contextlib.contextmanager
def fd_redirect(path):
    """Sends this process's stdout and stderr (C++ ones included) to `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def cached_onnx(args, name, prefix, write, describe):
    """Returns work_dir/onnx/name, calling write(tmp) to make it when absent.

    The file appears whole or not at all (written to a temporary, then renamed);
    a failure raises PeerError with describe()'s words and the error.
    """
    cache = os.path.join(args.work_dir, "onnx")
    path = os.path.join(cache, name)
    if os.path.exists(path):
        return path
    os.makedirs(cache, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".onnx", dir=cache)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except Exception as e:
        raise PeerError(f"{describe()}: {type(e).__name__}: {e}") from None
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
    return path


def export_onnx(args, model, x, mask):
    """Exports (once per model, shape, opset and torch version) and returns the .onnx path."""
    torch = import_torch(args.threads)
    b, n, _ = x.shape
    key = hashlib.sha256(f"{model.fingerprint}|{b}x{n}|bert|{args.opset}|{torch.__version__}"
                         .encode()).hexdigest()[:24]
    tail = []  # the last lines torch printed, for the error message

    def write(tmp):
        import warnings

        module = make_bert_graph(model)
        log = tmp + ".log"
        try:
            with fd_redirect(log), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # Grad enabled and parameters requiring grad: the trace takes the ordinary
                # module path (PyTorch's fused inference kernels have no ONNX form).
                torch.onnx.export(module, (torch.from_numpy(x), torch.from_numpy(mask)), tmp,
                                  input_names=["hidden_states", "attention_mask"], output_names=[OUTPUT_NAME],
                                  opset_version=args.opset, do_constant_folding=True)
        finally:
            with contextlib.suppress(OSError), open(log, errors="replace") as f:
                tail.extend(line.strip() for line in f.read().strip().splitlines()[-5:])
            with contextlib.suppress(OSError):
                os.remove(log)

    def describe():
        return (f"torch.onnx.export (opset {args.opset}) failed"
                + (f" [{' | '.join(tail)}]" if tail else ""))

    return cached_onnx(args, f"bert-b{b}-n{n}-{key}.onnx", ".export-", write, describe)


def fused_onnx(args, model, quantized=False):
    """Writes (once per model, graph version and precision) the fused graph and returns the .onnx path.

    Its batch and sequence dimensions are symbolic: one file serves every shape.
    """
    onnx, _, _ = import_onnx()
    kind = "fused-int8" if quantized else "fused"
    key = hashlib.sha256(f"{model.fingerprint}|{kind}|{FUSED_GRAPH_VERSION}|onnx {onnx.__version__}"
                         .encode()).hexdigest()[:24]
    return cached_onnx(args, f"{kind}-{key}.onnx", f".{kind}-",
                       lambda tmp: onnx.save(make_fused_graph(model, quantized), tmp),
                       lambda: f"writing the {kind} ONNX graph failed")


def check_node(args):
    if shutil.which(args.node) is None:
        raise PeerError(f"node ({args.node}) not found; Node.js runs onnxruntime-node")
    package = os.path.join(args.node_modules, "onnxruntime-node", "package.json")
    if not os.path.exists(package):
        raise PeerError(f"onnxruntime-node is not installed in {args.node_modules}; run bench/peers/install.sh")


class OrtPeer:
    """An ONNX Runtime session in an ort_run.mjs child, warmed up; once() times one pass.

    The child times each pass itself when asked (one line on its stdin), so
    that no process start or file transfer is timed.
    """

    def __init__(self, args, onnx_path, x, mask, reference, graph, precision="fp32"):
        check_node(args)
        self.reference, self.graph, self.args, self.precision = reference, graph, args, precision
        self.work = tempfile.mkdtemp(prefix="reuseformer-peers-")
        x.tofile(os.path.join(self.work, "hidden_states.bin"))
        mask.astype("<i8").tofile(os.path.join(self.work, "attention_mask.bin"))
        request = {"inputs": [{"name": "hidden_states", "type": "float32", "dims": list(x.shape),
                               "file": "hidden_states.bin"},
                              {"name": "attention_mask", "type": "int64", "dims": list(mask.shape),
                               "file": "attention_mask.bin"}],
                   "output": OUTPUT_NAME}
        with open(os.path.join(self.work, "request.json"), "w") as f:
            json.dump(request, f)
        cmd = [args.node, os.path.join(PEERS_DIR, "ort_run.mjs"), "--node-modules", args.node_modules,
               "--model", onnx_path, "--work", self.work, "--threads", str(args.threads),
               "--spinning", args.ort_spinning]
        self.errors = open(os.path.join(self.work, "stderr.txt"), "w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors,
                                     text=True, env=child_env())
        self.reply("ready")

    def failure(self):
        self.proc.wait()
        self.errors.seek(0)
        message = self.errors.read().strip() or f"exit status {self.proc.returncode}"
        shutil.rmtree(self.work, ignore_errors=True)
        return PeerError(" | ".join(message.splitlines()[-5:]))

    def reply(self, expected=None):
        line = self.proc.stdout.readline().strip()
        if not line or (expected is not None and line != expected):
            raise self.failure()
        return line

    def once(self):
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(self.reply())

    def finish(self):
        import numpy as np

        self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise self.failure()
        try:
            with open(os.path.join(self.work, "result.json")) as f:
                result = json.load(f)
            out = np.fromfile(os.path.join(self.work, "output.bin"), dtype="<f4").reshape(result["output_dims"])
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
        return {"version": result["version"], "precision": self.precision,
                "path": (f"CPU execution provider, graph optimisation 'all', intra-op spinning "
                         f"{self.args.ort_spinning}, {self.graph}"),
                **compare(np, out, self.reference)}


def onnxruntime_peer(args, model, x, mask, reference):
    return OrtPeer(args, export_onnx(args, model, x, mask), x, mask, reference,
                   f"ONNX from torch.onnx.export (Hugging Face-style BERT layers, opset {args.opset})")


def onnxruntime_fused_peer(args, model, x, mask, reference, quantized=False):
    gelu = {"gelu": "BiasGelu", "relu": "Add + Relu"}.get(model.act, "FastGelu")
    products = ("DynamicQuantizeLinear + QAttention (s8 weights per column); DynamicQuantizeMatMul"
                if quantized else "Attention; MatMul")
    return OrtPeer(args, fused_onnx(args, model, quantized), x, mask, reference,
                   f"{'int8 ' if quantized else ''}fused graph written with onnx.helper (com.microsoft {products}, "
                   f"SkipLayerNormalization, {gelu})", "int8" if quantized else "fp32")


# The peers by name: each called with (args, model, x, mask, reference).
MAKERS = {"pytorch": TorchPeer, "pytorch-nested": lambda *a: TorchPeer(*a, nested=True),
          "onnxruntime": onnxruntime_peer, "onnxruntime-fused": onnxruntime_fused_peer,
          "onnxruntime-int8": lambda *a: onnxruntime_fused_peer(*a, quantized=True)}
