#!/usr/bin/python3
"""The PyTorch peer of reuseformer_decode (bench/decode.cpp): incremental
causal decoding of a vanilla BERT-style stack, a straightforward key/value-cache
loop around torch.nn.functional.scaled_dot_product_attention (PyTorch >= 2.0;
on older versions, the same attention written as matmul, softmax, matmul),
run by reuseformer_decode in turns with its own steps.

    /usr/bin/python3 bench/peers/decode_peer.py --serve --model DIR --input IN.safetensors
        [--threads 2] [--blas DIR|system] --out FILE.json --outputs FILE.f32

DIR is what reuseformer_decode exports (config.json with causal = true,
model.safetensors: the weights of its vanilla variant); IN holds "prompt"
[B, P, d] and "tokens" [S, B, d], the very inputs reuseformer_decode feeds its
variants. Per layer the cache holds K and V [B, H, L, dh], preallocated for
L = P + S tokens. The prompt is prefilled (untimed) with a causal mask, then
one untimed step decodes tokens[0] as a warm-up and the cache is rewound;
then each step projects one token per sequence, writes its key and value into
the cache, attends to the cached prefix, and runs the output projection,
LayerNorms and feed-forward block (post-LN, or pre-LN with norm_first), under
torch.inference_mode() with T intra-op threads and 1 inter-op thread.
Debian's torch runs its products through libblas.so.3: like peers.py, the
script re-executes itself with --blas (default build/peers/openblas-openmp
from install.sh) first on LD_LIBRARY_PATH.

Protocol (peers.py's --serve): "ready" on stdout once the prompt is prefilled,
then one timed step for each line read on stdin, answered "done" (at most S);
at the end of stdin the step outputs go to --outputs (little-endian float32
[steps run, B, d]) and the JSON to --out: {"batch", "prompt", "steps",
"threads", "torch", "attention" ("scaled_dot_product_attention" or
"matmul-softmax-matmul"), "blas", "ms_per_step": [...], "median_ms_per_step",
"min_ms_per_step", "max_ms_per_step", "outputs": FILE, "outputs_shape"}.
"""

import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peerlib import PeerError  # noqa: E402
from peerlib.graphs import torch_activation  # noqa: E402
from peerlib.model import Model  # noqa: E402
from peerlib.process import loaded_blas, protocol_channel, serve, use_blas  # noqa: E402
from peerlib.runners import import_torch  # noqa: E402
from peerlib.safetensors_file import read_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", action="store_true", required=True,
                   help="take the steps from stdin, one per line (the only mode)")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True, help="safetensors with prompt [B, P, d] and tokens [S, B, d]")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--blas", default=os.path.join(ROOT, "build", "peers", "openblas-openmp"))
    p.add_argument("--out", required=True)
    p.add_argument("--outputs", required=True)
    args = p.parse_args(argv)
    use_blas(args.blas, __file__, argv)
    protocol = protocol_channel()

    torch = import_torch(args.threads)
    import numpy as np
    import torch.nn.functional as F

    model = Model(args.model)
    if not model.causal:
        raise PeerError(f"{args.model}: expected a causal model (config.json causal = true)")
    tensors, _ = read_safetensors(args.input)
    prompt, tokens = (torch.from_numpy(np.require(tensors[k], np.float32, ["C"])) for k in ("prompt", "tokens"))
    if prompt.dim() != 3 or tokens.dim() != 3 or prompt.shape[2] != model.d or tokens.shape[1:] != prompt.shape[::2]:
        raise PeerError(f"{args.input}: expected prompt [B, P, {model.d}] and tokens [S, B, {model.d}], "
                              f"found {list(prompt.shape)} and {list(tokens.shape)}")
    B, H, d = prompt.shape[0], model.heads, model.d
    P, S = prompt.shape[1], tokens.shape[0]
    dh, L = d // H, P + S
    act = torch_activation(model)
    act = F.gelu if act == "gelu" else F.relu if act == "relu" else act
    sdpa = getattr(F, "scaled_dot_product_attention", None)

    layers = []
    for w in model.weights:
        t = lambda name: torch.from_numpy(w[name])  # noqa: E731
        layers.append({
            "qkv_w": torch.cat([t("attention.self.query.weight"), t("attention.self.key.weight"),
                                t("attention.self.value.weight")]),
            "qkv_b": torch.cat([t("attention.self.query.bias"), t("attention.self.key.bias"),
                                t("attention.self.value.bias")]),
            "o_w": t("attention.output.dense.weight"), "o_b": t("attention.output.dense.bias"),
            "ln1": (t("attention.output.LayerNorm.weight"), t("attention.output.LayerNorm.bias")),
            "i_w": t("intermediate.dense.weight"), "i_b": t("intermediate.dense.bias"),
            "f_w": t("output.dense.weight"), "f_b": t("output.dense.bias"),
            "ln2": (t("output.LayerNorm.weight"), t("output.LayerNorm.bias")),
            "k": torch.zeros(B, H, L, dh), "v": torch.zeros(B, H, L, dh),
        })

    def attend(q, k, v, causal):
        if sdpa is not None:
            return sdpa(q, k, v, is_causal=causal)
        s = q @ k.transpose(-1, -2) / math.sqrt(dh)
        if causal:
            n = s.shape[-1]
            s = s.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1), float("-inf"))
        return torch.softmax(s, dim=-1) @ v

    def forward(x, start):
        """x [B, n, d], the tokens at positions start .. start + n - 1."""
        n = x.shape[1]
        for c in layers:
            h = F.layer_norm(x, (d,), *c["ln1"], model.eps) if model.norm_first else x
            q, k, v = F.linear(h, c["qkv_w"], c["qkv_b"]).view(B, n, 3, H, dh).permute(2, 0, 3, 1, 4)
            c["k"][:, :, start:start + n] = k
            c["v"][:, :, start:start + n] = v
            ctx = attend(q, c["k"][:, :, :start + n], c["v"][:, :, :start + n], causal=n > 1)
            a = F.linear(ctx.transpose(1, 2).reshape(B, n, d), c["o_w"], c["o_b"])
            if model.norm_first:
                x = x + a
                f = F.linear(act(F.linear(F.layer_norm(x, (d,), *c["ln2"], model.eps), c["i_w"], c["i_b"])),
                             c["f_w"], c["f_b"])
                x = x + f
            else:
                x = F.layer_norm(x + a, (d,), *c["ln1"], model.eps)
                f = F.linear(act(F.linear(x, c["i_w"], c["i_b"])), c["f_w"], c["f_b"])
                x = F.layer_norm(x + f, (d,), *c["ln2"], model.eps)
        return x

    ms, outputs = [], []

    def step():
        if len(outputs) == S:
            raise PeerError(f"asked for step {S + 1}; {args.input} holds {S} tokens")
        k = len(outputs)
        with torch.inference_mode():
            start = time.perf_counter()
            y = forward(tokens[k].view(B, 1, d), P + k)
            ms.append((time.perf_counter() - start) * 1e3)
        outputs.append(y.reshape(B, d).numpy().copy())

    with torch.inference_mode():
        forward(prompt, 0)
        forward(tokens[0].view(B, 1, d), P)  # warm-up; the first timed step overwrites its cache entries
    serve(protocol, step)

    np.asarray(outputs, dtype="<f4").reshape(len(outputs), B, d).tofile(args.outputs)
    report = {"batch": B, "prompt": P, "steps": len(ms), "threads": args.threads,
              "torch": torch.__version__,
              "attention": "scaled_dot_product_attention" if sdpa else "matmul-softmax-matmul",
              **loaded_blas(), "ms_per_step": ms,
              "median_ms_per_step": statistics.median(ms) if ms else None,
              "min_ms_per_step": min(ms) if ms else None, "max_ms_per_step": max(ms) if ms else None,
              "outputs": os.path.abspath(args.outputs), "outputs_shape": [len(outputs), B, d]}
    import json
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
