"""The checkpoint the peers run (config.json + model.safetensors) and its inputs."""

import hashlib
import json
import os

from . import OUTPUT_NAME, PeerError
from .safetensors_file import read_safetensors

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

