#!/usr/bin/python3
"""Runs a Hugging Face BERT-style encoder in PyTorch and in ONNX Runtime (three
graphs, one quantized to int8), with the same weights and input as
reuseformer-encode, times each and compares their outputs with ours.

    /usr/bin/python3 bench/peers/peers.py --model DIR --input IN.safetensors
        [--reference OUT.safetensors] [--threads T] [--repeat R | --serve]
        [--peers pytorch,pytorch-nested,onnxruntime,onnxruntime-fused,onnxruntime-int8]
        [--node-modules DIR]
        [--work-dir DIR] [--opset K] [--onnx-graph bert|torch-encoder]
        [--ort-spinning on|off] [--blas DIR|system] [--node NODE] --out peers.json

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
               on). --onnx-graph picks what is exported: "bert"
               (default) is a Hugging Face-style BERT layer written out (separate Q,
               K, V Linear layers, MatMul, Softmax, decomposed LayerNorm, erf GELU);
               "torch-encoder" exports the nn.TransformerEncoder of the pytorch peer
               (one packed QKV projection). ONNX Runtime's own optimiser turns both
               into Gemm, FusedMatMul, Softmax, SkipLayerNormalization and Gelu
               (it does not form its fused Attention op from these graphs); on a
               2-core machine the two time the same within noise.
  onnxruntime-fused
               the same weights in the graph ONNX Runtime's transformer optimizer
               (onnxruntime/python/tools/transformers) makes of BERT, written
               directly with onnx.helper (Debian's python3-onnx; one file per model,
               symbolic batch and sequence, cached under --work-dir): per layer
               com.microsoft Attention (packed QKV weight [d, 3d] and bias, the
               [B, N] attention_mask cast to int32 as its key padding mask_index,
               unidirectional when causal), MatMul, SkipLayerNormalization (with the
               projection bias), MatMul, BiasGelu (FastGelu for the tanh GELUs, Add +
               Relu for relu), MatMul, SkipLayerNormalization; see make_fused_graph.
               Run by ort_run.mjs with the same session options as onnxruntime.
  onnxruntime-int8
               the onnxruntime-fused graph as ONNX Runtime's dynamic quantizer
               (quantize_dynamic, s8 weights per column) and optimiser make it:
               per layer DynamicQuantizeLinear of the layer input feeding
               com.microsoft QAttention, and com.microsoft DynamicQuantizeMatMul
               for the three other products; SkipLayerNormalization and BiasGelu
               as above (one file per model, "fused-int8-*.onnx"); see
               make_fused_graph(quantized=True). Same session options.

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
import contextlib
import hashlib
import importlib
import json
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEERS = ("pytorch", "pytorch-nested", "onnxruntime", "onnxruntime-fused", "onnxruntime-int8")
DEFAULT_PEERS = ("pytorch", "onnxruntime", "onnxruntime-fused", "onnxruntime-int8")  # pytorch-nested: ragged batches
OUTPUT_NAME = "last_hidden_state"  # reuseformer-encode's output tensor


class PeerError(Exception):
    """A failure to report in the peer's {"error": ...} entry."""


# --------------------------------------------------------------------------
# safetensors, without the safetensors package
# --------------------------------------------------------------------------

def _np_dtype(np, name):
    return {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
            "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
            "U8": np.uint8, "BOOL": np.bool_}.get(name)


def read_safetensors(path):
    try:
        return _read_safetensors(path)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise PeerError(f"{path}: malformed safetensors header ({type(e).__name__}: {e})") from None


def _read_safetensors(path):
    """Returns {name: numpy array} (views of one buffer; BF16 widened to F32) and the metadata.

    Format: u64 little-endian header length, a JSON header
    {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
    then the raw little-endian tensor bytes (offsets relative to the data start).
    """
    import numpy as np

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise PeerError(f"{path}: not a safetensors file ({size} bytes)")
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > size - 8:
            raise PeerError(f"{path}: header length {header_len} exceeds the file")
        try:
            header = json.loads(f.read(header_len))
        except ValueError as e:
            raise PeerError(f"{path}: bad JSON header: {e}") from None
        data = bytearray(size - 8 - header_len)  # writable, so the arrays below are views, not copies
        if f.readinto(data) != len(data):
            raise PeerError(f"{path}: truncated")
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _np_dtype(np, info.get("dtype"))
        if dtype is None:
            raise PeerError(f"{path}: {name}: unsupported dtype {info.get('dtype')}")
        shape = [int(s) for s in info["shape"]]
        begin, end = (int(o) for o in info["data_offsets"])
        count = math.prod(shape)
        if not 0 <= begin <= end <= len(data) or end - begin != count * np.dtype(dtype).itemsize:
            raise PeerError(f"{path}: {name}: data_offsets {begin}..{end} do not fit shape {shape}")
        a = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=begin).reshape(shape)
        if info["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        elif not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        tensors[name] = a
    return tensors, header.get("__metadata__", {})


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------

LAYER_TENSORS = (
    "attention.self.query.weight", "attention.self.query.bias",
    "attention.self.key.weight", "attention.self.key.bias",
    "attention.self.value.weight", "attention.self.value.bias",
    "attention.output.dense.weight", "attention.output.dense.bias",
    "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
    "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias",
    "output.LayerNorm.weight", "output.LayerNorm.bias",
)


class Model:
    """config.json + model.safetensors, checked for what the peers can run."""

    def __init__(self, directory):
        import numpy as np

        config_path = os.path.join(directory, "config.json")
        try:
            with open(config_path) as f:
                c = json.load(f)
        except (OSError, ValueError) as e:
            raise PeerError(f"{config_path}: {e}") from None

        def integer(key, minimum=1):
            v = c.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
                raise PeerError(f"{config_path}: {key}: expected an integer >= {minimum}, found {v!r}")
            return v

        self.d = integer("hidden_size")
        self.heads = integer("num_attention_heads")
        self.d_ff = integer("intermediate_size")
        self.layers = integer("num_hidden_layers", 0)
        if self.d % self.heads:
            raise PeerError(f"{config_path}: hidden_size {self.d} is not a multiple of num_attention_heads {self.heads}")
        self.act = c.get("hidden_act", "gelu")
        if self.act not in ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu"):
            raise PeerError(f"{config_path}: hidden_act {self.act!r}: the peers run gelu, gelu_new, "
                            "gelu_pytorch_tanh and relu")
        self.eps = float(c.get("layer_norm_eps", 1e-12))
        self.norm_first = bool(c.get("norm_first", False))
        self.causal = bool(c.get("causal", False))

        # What the peers cannot express: they are plain BERT.
        unsupported = []
        score = c.get("plpi_affinity_function", "vanilla")
        if score != "vanilla":
            unsupported.append(f"plpi_affinity_function {score!r}")
        if c.get("use_relative_pe"):
            unsupported.append("use_relative_pe")
        schedule = c.get("reuse_schedule")
        if isinstance(schedule, list) and any(schedule):
            unsupported.append(f"reuse_schedule {schedule}")
        reuse = c.get("reuse_attention", 0)
        if reuse and min(int(c.get("max_reuse_layer_idx", 6)), self.layers - 1) >= 1:
            unsupported.append(f"reuse_attention {reuse}")
        if unsupported:
            raise PeerError(f"{config_path}: the peers run vanilla BERT layers only, not " + ", ".join(unsupported))

        weights_path = os.path.join(directory, "model.safetensors")
        try:
            tensors, _ = read_safetensors(weights_path)
        except OSError as e:
            raise PeerError(f"{weights_path}: {e}") from None
        prefix = "bert." if any(n.startswith("bert.encoder.") for n in tensors) else ""
        d, f = self.d, self.d_ff
        shapes = {"weight": {"attention.self": (d, d), "attention.output.dense": (d, d),
                             "intermediate": (f, d), "output.dense": (d, f)},
                  "bias": {"intermediate": (f,)}}
        self.weights = []  # per layer {suffix: float32 array}
        for l in range(self.layers):
            layer = {}
            for suffix in LAYER_TENSORS:
                name = f"{prefix}encoder.layer.{l}.{suffix}"
                if name not in tensors:
                    raise PeerError(f"{weights_path}: missing tensor {name}")
                a = tensors[name]
                if not np.issubdtype(a.dtype, np.floating):
                    raise PeerError(f"{weights_path}: {name}: expected a float tensor, found {a.dtype}")
                kind = suffix.rsplit(".", 1)[1]
                want = (d,) if kind == "bias" else None
                for key, shape in shapes[kind].items():
                    if suffix.startswith(key):
                        want = shape
                        break
                if "LayerNorm" in suffix:
                    want = (d,)
                if tuple(a.shape) != want:
                    raise PeerError(f"{weights_path}: {name}: expected shape {list(want)}, found {list(a.shape)}")
                layer[suffix] = np.require(a, np.float32, ["C", "A"])
            self.weights.append(layer)

        st = os.stat(weights_path)
        with open(config_path, "rb") as fc:
            self.fingerprint = hashlib.sha256(
                fc.read() + f"|{os.path.realpath(weights_path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


def read_input(path, d):
    import numpy as np

    tensors, _ = read_safetensors(path)
    if "hidden_states" not in tensors:
        have = ", ".join(sorted(tensors)) or "none"
        raise PeerError(f"{path}: no hidden_states tensor (the peers run the encoder on hidden_states "
                        f"[B, N, d], not the embeddings; tensors: {have})")
    x = tensors["hidden_states"]
    if x.ndim != 3 or x.shape[2] != d or not np.issubdtype(x.dtype, np.floating):
        raise PeerError(f"{path}: hidden_states: expected float [B, N, {d}], found {x.dtype} {list(x.shape)}")
    b, n = x.shape[:2]
    if "attention_mask" in tensors:
        m = tensors["attention_mask"]
        if tuple(m.shape) != (b, n):
            raise PeerError(f"{path}: attention_mask: expected shape {[b, n]}, found {list(m.shape)}")
        if not np.all((m == 0) | (m == 1)):
            raise PeerError(f"{path}: attention_mask: expected only 0 and 1")
        mask = m.astype(np.int64)
    else:
        mask = np.ones((b, n), dtype=np.int64)
    return np.require(x, np.float32, ["C", "A"]), np.require(mask, np.int64, ["C", "A"])


def read_reference(path, shape):
    tensors, _ = read_safetensors(path)
    if OUTPUT_NAME not in tensors:
        raise PeerError(f"{path}: no {OUTPUT_NAME} tensor")
    y = tensors[OUTPUT_NAME]
    if tuple(y.shape) != tuple(shape):
        raise PeerError(f"{path}: {OUTPUT_NAME}: expected shape {list(shape)}, found {list(y.shape)}")
    return y


# --------------------------------------------------------------------------
# PyTorch modules
# --------------------------------------------------------------------------

def torch_activation(model):
    import torch.nn.functional as F

    if model.act == "gelu":
        return "gelu"  # exact erf GELU
    if model.act == "relu":
        return "relu"
    return lambda x: F.gelu(x, approximate="tanh")


def torch_encoder(model, nested=False):
    """nn.TransformerEncoder loaded with the checkpoint (float32, eval); nested:
    enable_nested_tensor, so that its fast path skips padded tokens."""
    import torch
    from torch import nn

    layer = nn.TransformerEncoderLayer(model.d, model.heads, model.d_ff, dropout=0.0,
                                       activation=torch_activation(model), layer_norm_eps=model.eps,
                                       batch_first=True, norm_first=model.norm_first)
    enc = nn.TransformerEncoder(layer, model.layers, enable_nested_tensor=nested)
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    with torch.no_grad():
        for mod, w in zip(enc.layers, model.weights):
            mod.self_attn.in_proj_weight.copy_(torch.cat([t(w["attention.self.query.weight"]),
                                                          t(w["attention.self.key.weight"]),
                                                          t(w["attention.self.value.weight"])]))
            mod.self_attn.in_proj_bias.copy_(torch.cat([t(w["attention.self.query.bias"]),
                                                        t(w["attention.self.key.bias"]),
                                                        t(w["attention.self.value.bias"])]))
            mod.self_attn.out_proj.weight.copy_(t(w["attention.output.dense.weight"]))
            mod.self_attn.out_proj.bias.copy_(t(w["attention.output.dense.bias"]))
            mod.norm1.weight.copy_(t(w["attention.output.LayerNorm.weight"]))
            mod.norm1.bias.copy_(t(w["attention.output.LayerNorm.bias"]))
            mod.linear1.weight.copy_(t(w["intermediate.dense.weight"]))
            mod.linear1.bias.copy_(t(w["intermediate.dense.bias"]))
            mod.linear2.weight.copy_(t(w["output.dense.weight"]))
            mod.linear2.bias.copy_(t(w["output.dense.bias"]))
            mod.norm2.weight.copy_(t(w["output.LayerNorm.weight"]))
            mod.norm2.bias.copy_(t(w["output.LayerNorm.bias"]))
    return enc.eval()


def causal_mask(n):
    import torch

    return torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)  # True = not allowed


def make_torch_encoder_graph(model):
    """The pytorch peer's nn.TransformerEncoder as (hidden_states, attention_mask) -> output."""
    from torch import nn

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = torch_encoder(model)

        def forward(self, hidden_states, attention_mask):
            n = hidden_states.shape[1]
            return self.enc(hidden_states, mask=causal_mask(n) if model.causal else None,
                            src_key_padding_mask=attention_mask == 0)

    return Wrapper().eval()


def make_bert_graph(model):
    """A Hugging Face-style BERT encoder written out in basic ops (the graph HF exports)."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    d, h = model.d, model.heads
    dh = d // h

    def linear(w, b):
        lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        return lin

    def layer_norm(w, b):
        ln = nn.LayerNorm(d, eps=model.eps)
        with torch.no_grad():
            ln.weight.copy_(torch.from_numpy(w))
            ln.bias.copy_(torch.from_numpy(b))
        return ln

    class Layer(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.query = linear(w["attention.self.query.weight"], w["attention.self.query.bias"])
            self.key = linear(w["attention.self.key.weight"], w["attention.self.key.bias"])
            self.value = linear(w["attention.self.value.weight"], w["attention.self.value.bias"])
            self.dense = linear(w["attention.output.dense.weight"], w["attention.output.dense.bias"])
            self.norm1 = layer_norm(w["attention.output.LayerNorm.weight"], w["attention.output.LayerNorm.bias"])
            self.intermediate = linear(w["intermediate.dense.weight"], w["intermediate.dense.bias"])
            self.output = linear(w["output.dense.weight"], w["output.dense.bias"])
            self.norm2 = layer_norm(w["output.LayerNorm.weight"], w["output.LayerNorm.bias"])

        def heads(self, x):  # [B, N, d] -> [B, H, N, dh]
            b, n, _ = x.shape
            return x.view(b, n, h, dh).permute(0, 2, 1, 3)

        def attention(self, x, additive):
            q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh) + additive
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
            b, _, n, _ = ctx.shape
            return self.dense(ctx.permute(0, 2, 1, 3).contiguous().view(b, n, d))

        def ffn(self, x):
            y = self.intermediate(x)
            if model.act == "gelu":
                y = y * 0.5 * (1.0 + torch.erf(y / math.sqrt(2.0)))
            elif model.act == "relu":
                y = F.relu(y)
            else:
                y = 0.5 * y * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (y + 0.044715 * torch.pow(y, 3.0))))
            return self.output(y)

        def forward(self, x, additive):
            if model.norm_first:
                x = x + self.attention(self.norm1(x), additive)
                return x + self.ffn(self.norm2(x))
            x = self.norm1(x + self.attention(x, additive))
            return self.norm2(x + self.ffn(x))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.ModuleList(Layer(w) for w in model.weights)

        def forward(self, hidden_states, attention_mask):
            # HF BERT's extended mask: (1 - mask) * finfo.min on [B, 1, 1, N] (keys only).
            additive = (1.0 - attention_mask[:, None, None, :].to(hidden_states.dtype)) * torch.finfo(torch.float32).min
            if model.causal:
                n = hidden_states.shape[1]
                additive = additive + causal_mask(n).to(hidden_states.dtype) * torch.finfo(torch.float32).min
            x = hidden_states
            for layer in self.layer:
                x = layer(x, additive)
            return x

    return Encoder().eval()


# --------------------------------------------------------------------------
# The fused graph: ONNX Runtime's contrib operators, written with onnx.helper
# --------------------------------------------------------------------------

FUSED_GRAPH_VERSION = 1  # bump when make_fused_graph changes what it writes (part of the cache key)


def import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except Exception as e:  # ImportError, or a broken install
        raise PeerError(f"the onnx package is not available for {sys.executable} ({e}); "
                        "run bench/peers/install.sh (Debian's python3-onnx)") from None
    return onnx, helper, numpy_helper


def make_fused_graph(model, quantized=False):
    """The encoder as the ONNX graph ONNX Runtime's transformer optimizer produces for BERT,
    or (quantized) that graph as onnxruntime.quantization.quantize_dynamic then rewrites it.

    Written directly with onnx.helper from the contrib operators (domain com.microsoft)
    of onnxruntime/python/tools/transformers (fusion_attention.py, fusion_skiplayernorm.py,
    fusion_biasgelu.py, fusion_fastgelu.py), post-LN layer l:

        a  = Attention(x, Wqkv [d, 3d], bqkv [3d], mask_index)   num_heads H, unidirectional = causal
        x1 = SkipLayerNormalization(MatMul(a, Wo), x, gamma1, beta1, bo)
        f  = BiasGelu(MatMul(x1, W1), b1)     gelu (erf); FastGelu for gelu_new / gelu_pytorch_tanh;
                                              Relu(Add(...)) for relu
        x  = SkipLayerNormalization(MatMul(f, W2), x1, gamma2, beta2, b2)

    Pre-LN (norm_first) as ONNX Runtime fuses GPT-2: LayerNormalization before the
    first layer, then each SkipLayerNormalization also returns the residual sum
    (its output 3) that the next residual adds to; the last residual is two Adds.

    mask_index is the [B, N] attention_mask cast to int32: the raw 2-D key padding
    mask (1 = token, 0 = padding) that ONNX Runtime's CPU Attention kernel accepts
    as (batch_size, total_sequence_length), padded keys getting mask_filter_value
    (-10000) added to their scores, as in BERT. MatMul weights are the checkpoint's
    [out, in] matrices transposed to [in, out]; Wqkv = [Wq^T | Wk^T | Wv^T].
    Inputs hidden_states [B, N, d] float and attention_mask [B, N] int64 (B and N
    symbolic); output last_hidden_state.

    quantized: what quantize_dynamic(weight_type=QInt8, per_channel=True,
    reduce_range=False) makes of it, with the DynamicQuantizeMatMul that ONNX
    Runtime's optimiser fuses its MatMulInteger subgraphs into written directly
    (onnxruntime/python/tools/quantization: operators/attention.py, matmul.py,
    quant_utils.py):

        x_q, x_scale, x_zp = DynamicQuantizeLinear(x)      u8, per tensor, range widened to hold 0
        a = QAttention(x_q, Wqkv_q, bqkv, x_scale, Wqkv_scale, mask_index, x_zp, Wqkv_zp)
        each MatMul(y, W)  ->  DynamicQuantizeMatMul(y, W_q, W_scale, W_zp)
                                                           (y quantized inside, u8 per tensor)

    W_q: s8, symmetric per output column: scale = max |column| / 127 (1 for a
    column of zeros), W_q = round-half-even(W / scale) in [-127, 127], zero
    points int8 zeros, one per column. Both CPU kernels take per-column scales
    and zero points (attention_quant.cc: weight_scale "scalar for per tensor
    quantization, (3 * hidden_size) for per column quantization";
    dynamic_quantize_matmul.cc: MLAS_QUANTIZATION_GRANULARITY::PerColumn).
    Biases, SkipLayerNormalization, BiasGelu and the attention core (scores,
    softmax, A·V inside QAttention) stay float.
    """
    import numpy as np

    onnx, helper, numpy_helper = import_onnx()
    d = model.d
    nodes, inits = [], []

    def init(name, array, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def node(op, inputs, outputs, domain="", **attrs):
        nodes.append(helper.make_node(op, inputs, outputs, name=f"{op}_{len(nodes)}", domain=domain, **attrs))
        return outputs[0]

    def quantized_weight(name, w):
        """w [in, out] as s8 per output column: the names of W_q, W_scale, W_zp."""
        scale = np.abs(w).max(axis=0) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.round(w / scale), -127, 127)
        return (init(f"{name}_quantized", q, np.int8), init(f"{name}_scale", scale),
                init(f"{name}_zero_point", np.zeros(w.shape[1]), np.int8))

    def product(x, name, w):
        """x [.., in] times the weight w [in, out]: MatMul, or DynamicQuantizeMatMul."""
        if not quantized:
            return node("MatMul", [x, init(name, w)], [f"{name}.out"])
        return node("DynamicQuantizeMatMul", [x, *quantized_weight(name, w)], [f"{name}.out"],
                    domain="com.microsoft")

    def skip_ln(l, inp, skip, which, bias, out, sum_out=None):
        # SkipLayerNormalization inputs: input, skip, gamma, beta, bias; outputs: output,
        # mean, inv_std_var, input_skip_bias_sum.
        ln = "attention.output.LayerNorm" if which == 1 else "output.LayerNorm"
        g = init(f"layer{l}.{ln}.weight", model.weights[l][f"{ln}.weight"])
        b = init(f"layer{l}.{ln}.bias", model.weights[l][f"{ln}.bias"])
        outs = [out] if sum_out is None else [out, "", "", sum_out]
        return node("SkipLayerNormalization", [inp, skip, g, b, bias], outs, domain="com.microsoft",
                    epsilon=model.eps)

    def ffn(l, x):
        w = model.weights[l]
        up = product(x, f"layer{l}.intermediate.dense.weight_t", w["intermediate.dense.weight"].T)
        bias = init(f"layer{l}.intermediate.dense.bias", w["intermediate.dense.bias"])
        if model.act == "gelu":
            act = node("BiasGelu", [up, bias], [f"layer{l}.ffn_act"], domain="com.microsoft")
        elif model.act == "relu":
            act = node("Relu", [node("Add", [up, bias], [f"layer{l}.ffn_up_bias"])], [f"layer{l}.ffn_act"])
        else:  # gelu_new, gelu_pytorch_tanh: the tanh approximation
            act = node("FastGelu", [up, bias], [f"layer{l}.ffn_act"], domain="com.microsoft")
        return product(act, f"layer{l}.output.dense.weight_t", w["output.dense.weight"].T)

    def attention(l, x):
        w = model.weights[l]
        qkv_w = np.concatenate([w[f"attention.self.{p}.weight"].T for p in ("query", "key", "value")], axis=1)
        qkv_b = np.concatenate([w[f"attention.self.{p}.bias"] for p in ("query", "key", "value")])
        name, bias = f"layer{l}.attention.qkv.weight", init(f"layer{l}.attention.qkv.bias", qkv_b)
        if quantized:
            xq = [f"layer{l}.attention.input_{part}" for part in ("quantized", "scale", "zero_point")]
            node("DynamicQuantizeLinear", [x], xq)
            w_q, w_scale, w_zp = quantized_weight(name, qkv_w)
            a = node("QAttention", [xq[0], w_q, bias, xq[1], w_scale, "mask_index", xq[2], w_zp],
                     [f"layer{l}.attention"], domain="com.microsoft", num_heads=model.heads,
                     unidirectional=int(model.causal))
        else:
            a = node("Attention", [x, init(name, qkv_w), bias, "mask_index"], [f"layer{l}.attention"],
                     domain="com.microsoft", num_heads=model.heads, unidirectional=int(model.causal))
        return product(a, f"layer{l}.attention.output.dense.weight_t", w["attention.output.dense.weight"].T)

    node("Cast", ["attention_mask"], ["mask_index"], to=onnx.TensorProto.INT32)
    x = "hidden_states"
    L = model.layers
    if L == 0:
        node("Identity", [x], [OUTPUT_NAME])
    elif not model.norm_first:
        for l in range(L):
            w = model.weights[l]
            x1 = skip_ln(l, attention(l, x), x, 1,
                         init(f"layer{l}.attention.output.dense.bias", w["attention.output.dense.bias"]),
                         f"layer{l}.x1")
            x = skip_ln(l, ffn(l, x1), x1, 2, init(f"layer{l}.output.dense.bias", w["output.dense.bias"]),
                        OUTPUT_NAME if l == L - 1 else f"layer{l}.out")
    else:
        w0 = model.weights[0]
        normed = node("LayerNormalization", [x, init("layer0.attention.output.LayerNorm.weight",
                                                     w0["attention.output.LayerNorm.weight"]),
                                             init("layer0.attention.output.LayerNorm.bias",
                                                  w0["attention.output.LayerNorm.bias"])],
                      ["layer0.ln1"], axis=-1, epsilon=model.eps)
        for l in range(L):
            w = model.weights[l]
            # x1 = x + attention(ln1(x)) (+ bias); ln2(x1) feeds the FFN.
            ln2 = skip_ln(l, attention(l, normed), x, 2,
                          init(f"layer{l}.attention.output.dense.bias", w["attention.output.dense.bias"]),
                          f"layer{l}.ln2", sum_out=f"layer{l}.x1")
            x1 = f"layer{l}.x1"
            down = ffn(l, ln2)
            bias = init(f"layer{l}.output.dense.bias", w["output.dense.bias"])
            if l + 1 < L:
                # x = x1 + ffn (+ bias), and the next layer's ln1(x), in one node.
                normed = skip_ln(l + 1, down, x1, 1, bias, f"layer{l + 1}.ln1", sum_out=f"layer{l}.out")
                x = f"layer{l}.out"
            else:
                node("Add", [node("Add", [down, bias], [f"layer{l}.ffn_out"]), x1], [OUTPUT_NAME])

    graph = helper.make_graph(
        nodes, "reuseformer_bert_fused_int8" if quantized else "reuseformer_bert_fused",
        [helper.make_tensor_value_info("hidden_states", onnx.TensorProto.FLOAT, ["batch", "sequence", d]),
         helper.make_tensor_value_info("attention_mask", onnx.TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["batch", "sequence", d])],
        initializer=inits)
    return helper.make_model(graph, producer_name="reuseformer bench/peers/peers.py",
                             opset_imports=[helper.make_opsetid("", 14), helper.make_opsetid("com.microsoft", 1)])


# --------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------

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
    """Exports (once per model, shape, graph, opset and torch version) and returns the .onnx path."""
    torch = import_torch(args.threads)
    b, n, _ = x.shape
    key = hashlib.sha256(f"{model.fingerprint}|{b}x{n}|{args.onnx_graph}|{args.opset}|{torch.__version__}"
                         .encode()).hexdigest()[:24]
    tail = []  # the last lines torch printed, for the error message

    def write(tmp):
        import warnings

        module = make_bert_graph(model) if args.onnx_graph == "bert" else make_torch_encoder_graph(model)
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
        return (f"torch.onnx.export (opset {args.opset}, graph {args.onnx_graph}) failed"
                + (f" [{' | '.join(tail)}]" if tail else ""))

    return cached_onnx(args, f"{args.onnx_graph}-b{b}-n{n}-{key}.onnx", ".export-", write, describe)


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
        cmd = [args.node, os.path.join(HERE, "ort_run.mjs"), "--node-modules", args.node_modules,
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
                   f"ONNX from torch.onnx.export (graph '{args.onnx_graph}', opset {args.opset})")


def onnxruntime_fused_peer(args, model, x, mask, reference, quantized=False):
    gelu = {"gelu": "BiasGelu", "relu": "Add + Relu"}.get(model.act, "FastGelu")
    products = ("DynamicQuantizeLinear + QAttention (s8 weights per column); DynamicQuantizeMatMul"
                if quantized else "Attention; MatMul")
    return OrtPeer(args, fused_onnx(args, model, quantized), x, mask, reference,
                   f"{'int8 ' if quantized else ''}fused graph written with onnx.helper (com.microsoft {products}, "
                   f"SkipLayerNormalization, {gelu})", "int8" if quantized else "fp32")


# --------------------------------------------------------------------------

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
    p.add_argument("--onnx-graph", choices=("bert", "torch-encoder"), default="bert",
                   help="what torch.onnx.export writes for the onnxruntime peer (default bert)")
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


BLAS_ENV = "REUSEFORMER_PEERS_BLAS"            # set once re-executed with the BLAS directory
SAVED_ENV = "REUSEFORMER_PEERS_LD_LIBRARY_PATH"  # LD_LIBRARY_PATH before that, for the node child


def use_blas(args, argv):
    """Re-executes this script with args.blas first on LD_LIBRARY_PATH.

    The dynamic loader reads LD_LIBRARY_PATH only when a process starts, so
    torch's libblas.so.3 can be redirected only by starting again. Debian's
    torch otherwise gets the system's libblas.so.3, the reference BLAS unless
    an optimised one is installed system-wide (about 30x slower for BERT-base).
    """
    if args.blas == "system" or "pytorch" not in args.peers and "onnxruntime" not in args.peers:
        return
    lib = os.path.abspath(args.blas)
    if not os.path.isfile(os.path.join(lib, "libblas.so.3")) or os.environ.get(BLAS_ENV) == lib:
        return  # not installed (the pytorch entry says which BLAS ran), or done
    env = dict(os.environ)
    env[BLAS_ENV] = lib
    env[SAVED_ENV] = os.environ.get("LD_LIBRARY_PATH", "")
    env["LD_LIBRARY_PATH"] = lib + (":" + env[SAVED_ENV] if env[SAVED_ENV] else "")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + list(argv), env)


def child_env():
    """This process's environment without the LD_LIBRARY_PATH use_blas added."""
    env = dict(os.environ)
    if BLAS_ENV in env:
        if env.get(SAVED_ENV):
            env["LD_LIBRARY_PATH"] = env[SAVED_ENV]
        else:
            env.pop("LD_LIBRARY_PATH", None)
        env.pop(BLAS_ENV)
        env.pop(SAVED_ENV, None)
    return env


def loaded_blas():
    """The BLAS libraries mapped into this process, and a warning for the reference BLAS."""
    paths = set()
    with contextlib.suppress(OSError), open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and "blas" in os.path.basename(fields[5]).lower():
                paths.add(os.path.realpath(fields[5]))
    info = {"blas": ", ".join(sorted(paths)) or "unknown"}
    if paths and not any(k in p.lower() for p in paths for k in ("openblas", "blis", "mkl", "atlas")):
        info["blas_warning"] = ("PyTorch runs on the reference BLAS (slow); run bench/peers/install.sh "
                                "and leave --blas at its default")
    return info


def protocol_channel():
    """For --serve: the original stdout, kept for the protocol; from here on
    anything else this process or its libraries print goes to stderr."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return protocol


def serve(protocol, one_round):
    """The --serve protocol: "ready" once every peer is warmed up, then one
    timed pass per peer for each line read on stdin, answered "done"."""
    protocol.write("ready\n")
    protocol.flush()
    for _ in sys.stdin:
        one_round()
        protocol.write("done\n")
        protocol.flush()
    protocol.close()


def main(argv):
    args = parse_args(argv)
    use_blas(args, argv)
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

    makers = {"pytorch": TorchPeer, "pytorch-nested": lambda *a: TorchPeer(*a, nested=True),
              "onnxruntime": onnxruntime_peer, "onnxruntime-fused": onnxruntime_fused_peer,
              "onnxruntime-int8": lambda *a: onnxruntime_fused_peer(*a, quantized=True)}
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
        peer = attempt(name, lambda: makers[name](args, model, x, mask, reference))
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
