#!/usr/bin/python3
"""Pretrains a small BERT-style masked language model on English text shipped by
Debian, and exports it as a Hugging Face BERT checkpoint for reuseformer.

    LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread OPENBLAS_NUM_THREADS=1 \
        nice -n 10 /usr/bin/python3 tools/train/train_mlm.py --minutes 25 --out tests/fixtures/trained_mlm

Needs Debian's python3-torch, python3-numpy, python3-matplotlib and the
`fortunes` package (the corpus: every English fortune file under
/usr/share/games/fortunes, ASCII art excluded). Debian's torch does its
products through the system BLAS; with the reference BLAS (libblas3, the
default) a training step takes minutes, so point it at OpenBLAS
(libopenblas0-pthread) as above. Runs on one thread (torch.set_num_threads(1)) for at most --minutes
of training, then writes, into --out:

  config.json         Hugging Face BERT keys (post-LN, gelu, byte-level vocab)
  model.safetensors   F16 weights under HF BERT names, with "bert." root:
                      bert.embeddings.*, bert.encoder.layer.{l}.*, and the MLM head
                      cls.predictions.transform.{dense,LayerNorm}.*,
                      cls.predictions.bias (the decoder is tied to the word embeddings)
  calibration.safetensors  input_ids I64 [64, 128], attention_mask I64 [64, 128]
                      (training text: what a planner calibrates on)
  heldout.safetensors input_ids I64 [64, 128] (15% of real tokens replaced as in
                      BERT), attention_mask I64, labels I64 (-100 where not masked):
                      fortunes never seen in training
  training_log.txt    step, elapsed seconds, training loss, held-out loss/accuracy
  loss.png            the loss curve

Vocabulary: bytes 0..255, then [PAD] 256, [MASK] 257, [CLS] 258, [SEP] 259.

The encoder below (ReuseBert) is written out over torch.nn.Linear and
torch.nn.LayerNorm, with the library's score-reuse semantics (docs/semantics.md
§Score reuse): layer l's probability stack is its H - K_l fresh heads followed
by the first K_l entries of layer l-1's stack; its query/key have (H - K_l)*dh
rows. It loads any checkpoint this script or reuseformer-plan writes, so the
same modules evaluate (--evaluate DIR), fine-tune (--finetune DIR --steps S
--out DIR2) and give reference outputs for (--reference DIR --out FILE) a
planned checkpoint with reuse in place.
"""

import argparse
import glob
import json
import math
import os
import random
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, MASK, CLS, SEP = 256, 257, 258, 259
VOCAB = 260
SEQ = 128

# ---------------------------------------------------------------------------
# safetensors, without the `safetensors` package

_DT = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
_NAMES = {np.dtype(v): k for k, v in _DT.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b], dtype=_DT[info["dtype"]]).reshape(info["shape"]).copy()
    return out


def write_safetensors(path, tensors, metadata=None):
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    order = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    header, offset = {}, 0
    for k in order:
        header[k] = {"dtype": _NAMES[arrays[k].dtype], "shape": list(arrays[k].shape),
                     "data_offsets": [offset, offset + arrays[k].nbytes]}
        offset += arrays[k].nbytes
    if metadata:
        header["__metadata__"] = {str(a): str(b) for a, b in metadata.items()}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for k in order:
            f.write(arrays[k].tobytes())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# The model: HF BERT (post-LN, gelu) with the library's reuse schedule


class ReuseAttention(nn.Module):
    def __init__(self, d, heads, reused):
        super().__init__()
        self.h, self.dh, self.k = heads, d // heads, reused
        fresh = (heads - reused) * self.dh
        self.query = nn.Linear(d, fresh) if fresh else None
        self.key = nn.Linear(d, fresh) if fresh else None
        self.value = nn.Linear(d, d)
        self.dense = nn.Linear(d, d)

    def forward(self, x, additive_mask, below):
        """x [B, N, d]; additive_mask [B, 1, 1, N]; below: layer l-1's stack [B, H, N, N] or None.
        Returns (attention output [B, N, d], this layer's stack [B, H, N, N])."""
        b, n, _ = x.shape
        split = lambda t: t.view(b, n, -1, self.dh).transpose(1, 2)
        parts = []
        if self.h - self.k:
            q, k = split(self.query(x)), split(self.key(x))
            logits = q @ k.transpose(-1, -2) / math.sqrt(self.dh) + additive_mask
            parts.append(torch.softmax(logits, dim=-1))
        if self.k:
            parts.append(below[:, :self.k])
        stack = torch.cat(parts, dim=1)
        context = (stack @ split(self.value(x))).transpose(1, 2).reshape(b, n, -1)
        return self.dense(context), stack


class Layer(nn.Module):
    def __init__(self, d, heads, d_ff, reused):
        super().__init__()
        self.attention = ReuseAttention(d, heads, reused)
        self.norm1 = nn.LayerNorm(d, eps=1e-12)
        self.intermediate = nn.Linear(d, d_ff)
        self.output = nn.Linear(d_ff, d)
        self.norm2 = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x, mask, below):
        a, stack = self.attention(x, mask, below)
        x = self.norm1(x + a)
        x = self.norm2(x + self.output(F.gelu(self.intermediate(x))))
        return x, stack


class ReuseBert(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, h = cfg["hidden_size"], cfg["num_attention_heads"]
        self.cfg = cfg
        schedule = cfg.get("reuse_schedule") or [0] * cfg["num_hidden_layers"]
        self.word = nn.Embedding(cfg["vocab_size"], d)
        self.position = nn.Embedding(cfg["max_position_embeddings"], d)
        self.token_type = nn.Embedding(cfg["type_vocab_size"], d)
        self.emb_norm = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList(Layer(d, h, cfg["intermediate_size"], k) for k in schedule)
        self.head_dense = nn.Linear(d, d)
        self.head_norm = nn.LayerNorm(d, eps=1e-12)
        self.head_bias = nn.Parameter(torch.zeros(cfg["vocab_size"]))

    def encode(self, ids, mask):
        n = ids.shape[1]
        x = self.word(ids) + self.position(torch.arange(n))[None] + self.token_type(torch.zeros_like(ids))
        x = self.emb_norm(x)
        additive = torch.zeros(mask.shape, dtype=x.dtype).masked_fill(mask == 0, float("-inf"))[:, None, None, :]
        stack = None
        for layer in self.layers:
            x, stack = layer(x, additive, stack)
        return x

    def head(self, hidden):
        t = self.head_norm(F.gelu(self.head_dense(hidden)))
        return t @ self.word.weight.T + self.head_bias

    # HF names <-> parameters
    def named_for_hf(self):
        out = {
            "bert.embeddings.word_embeddings.weight": self.word.weight,
            "bert.embeddings.position_embeddings.weight": self.position.weight,
            "bert.embeddings.token_type_embeddings.weight": self.token_type.weight,
            "bert.embeddings.LayerNorm.weight": self.emb_norm.weight,
            "bert.embeddings.LayerNorm.bias": self.emb_norm.bias,
            "cls.predictions.transform.dense.weight": self.head_dense.weight,
            "cls.predictions.transform.dense.bias": self.head_dense.bias,
            "cls.predictions.transform.LayerNorm.weight": self.head_norm.weight,
            "cls.predictions.transform.LayerNorm.bias": self.head_norm.bias,
            "cls.predictions.bias": self.head_bias,
        }
        for l, layer in enumerate(self.layers):
            p = f"bert.encoder.layer.{l}."
            a = layer.attention
            parts = {"attention.self.value": a.value, "attention.output.dense": a.dense,
                     "attention.output.LayerNorm": layer.norm1, "intermediate.dense": layer.intermediate,
                     "output.dense": layer.output, "output.LayerNorm": layer.norm2}
            if a.query is not None:
                parts["attention.self.query"] = a.query
                parts["attention.self.key"] = a.key
            for name, module in parts.items():
                out[p + name + ".weight"] = module.weight
                out[p + name + ".bias"] = module.bias
        return out

    def export(self, path, dtype=np.float16):
        tensors = {k: v.detach().numpy().astype(dtype) for k, v in self.named_for_hf().items()}
        write_safetensors(path, tensors, {"format": "pt", "producer": "tools/train/train_mlm.py"})

    def load(self, path):
        tensors = read_safetensors(path)
        params = self.named_for_hf()
        missing = sorted(set(params) - set(tensors))
        if missing:
            raise SystemExit(f"{path}: missing tensors {missing[:4]}")
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(torch.from_numpy(tensors[k].astype(np.float32)))


def config(layers, d, heads, d_ff):
    return {"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": d,
            "num_attention_heads": heads, "num_hidden_layers": layers, "intermediate_size": d_ff,
            "hidden_act": "gelu", "layer_norm_eps": 1e-12, "vocab_size": VOCAB,
            "max_position_embeddings": SEQ, "type_vocab_size": 2, "pad_token_id": PAD}


def load_model(directory):
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    model = ReuseBert(cfg)
    model.load(os.path.join(directory, "model.safetensors"))
    return model.eval()


# ---------------------------------------------------------------------------
# Data: Debian's fortunes, byte-level


def fortunes():
    texts = []
    for path in sorted(glob.glob("/usr/share/games/fortunes/*")):
        name = os.path.basename(path)
        if "." in name or "art" in name or os.path.isdir(path):
            continue
        with open(path, "rb") as f:
            texts += [t.strip() for t in f.read().split(b"\n%\n") if len(t.strip()) > 20]
    if not texts:
        raise SystemExit("no fortunes under /usr/share/games/fortunes: install Debian's `fortunes` package")
    return texts


def pack(texts, rng):
    """Sequences of up to SEQ tokens: [CLS] fortune [SEP] ..., padded with [PAD]; a mask of real tokens."""
    ids, mask, cur = [], [], [CLS]
    order = list(range(len(texts)))
    rng.shuffle(order)
    for i in order:
        t = list(texts[i][:SEQ - 2]) + [SEP]
        if len(cur) + len(t) > SEQ:
            ids.append(cur + [PAD] * (SEQ - len(cur)))
            mask.append([1] * len(cur) + [0] * (SEQ - len(cur)))
            cur = [CLS]
        cur += t
    return torch.tensor(ids), torch.tensor(mask)


def mask_tokens(ids, mask, gen):
    """BERT's masking: 15% of real, non-special tokens; of those 80% [MASK], 10% random byte, 10% kept."""
    labels = ids.clone()
    special = (ids >= 256) | (mask == 0)
    chosen = (torch.rand(ids.shape, generator=gen) < 0.15) & ~special
    labels[~chosen] = -100
    inputs = ids.clone()
    r = torch.rand(ids.shape, generator=gen)
    inputs[chosen & (r < 0.8)] = MASK
    rand = chosen & (r >= 0.8) & (r < 0.9)
    inputs[rand] = torch.randint(0, 256, ids.shape, generator=gen)[rand]
    return inputs, labels


def mlm_metrics(logits, labels):
    flat, target = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    loss = F.cross_entropy(flat, target, ignore_index=-100, reduction="sum")
    sel = target != -100
    correct = (flat[sel].argmax(-1) == target[sel]).sum()
    return loss.item(), correct.item(), sel.sum().item()


def evaluate(model, heldout):
    with torch.no_grad():
        ids, mask, labels = (torch.from_numpy(heldout[k]) for k in ("input_ids", "attention_mask", "labels"))
        loss, correct, count = mlm_metrics(model.head(model.encode(ids, mask)), labels)
    return loss / count, correct / count


# ---------------------------------------------------------------------------


def train(args):
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    texts = fortunes()
    rng.shuffle(texts)
    cut = len(texts) // 20
    held_ids, held_mask = pack(texts[:cut], rng)
    train_ids, train_mask = pack(texts[cut:], rng)
    gen = torch.Generator().manual_seed(args.seed)
    h_inputs, h_labels = mask_tokens(held_ids[:64], held_mask[:64], gen)
    os.makedirs(args.out, exist_ok=True)
    heldout = {"input_ids": h_inputs.numpy(), "attention_mask": held_mask[:64].numpy(), "labels": h_labels.numpy()}
    write_safetensors(os.path.join(args.out, "heldout.safetensors"), heldout,
                      {"what": "held-out fortunes, BERT-masked", "vocab": "bytes 0-255, PAD 256, MASK 257, CLS 258, SEP 259"})
    write_safetensors(os.path.join(args.out, "calibration.safetensors"),
                      {"input_ids": train_ids[:64].numpy(), "attention_mask": train_mask[:64].numpy()},
                      {"what": "training fortunes, unmasked"})

    cfg = config(args.layers, args.hidden, args.heads, 4 * args.hidden)
    model = ReuseBert(cfg)
    with torch.no_grad():  # BERT's initialisation
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.02)
    if args.init_out:
        export(model, cfg, args.init_out)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    log = open(os.path.join(args.out, "training_log.txt"), "w")
    print(f"# corpus: {len(texts)} fortunes from Debian's fortunes package; {len(train_ids)} training and "
          f"{len(held_ids)} held-out sequences of {SEQ} bytes", file=log)
    print(f"# model: {cfg['num_hidden_layers']} layers, d {cfg['hidden_size']}, {cfg['num_attention_heads']} heads, "
          f"d_ff {cfg['intermediate_size']}; batch {args.batch}; AdamW lr {args.lr} (warm-up 100 steps); "
          f"1 thread; {args.minutes} minutes", file=log)
    print("step seconds train_loss heldout_loss heldout_accuracy", file=log, flush=True)
    start, step, curve = time.time(), 0, []
    while time.time() - start < args.minutes * 60:
        pick = torch.randint(0, len(train_ids), (args.batch,), generator=gen)
        inputs, labels = mask_tokens(train_ids[pick], train_mask[pick], gen)
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 100)
        model.train()
        logits = model.head(model.encode(inputs, train_mask[pick]))
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            model.eval()
            hl, ha = evaluate(model, heldout)
            curve.append((step, loss.item(), hl))
            print(f"{step} {time.time() - start:.0f} {loss.item():.4f} {hl:.4f} {ha:.4f}", file=log, flush=True)
    export(model, cfg, args.out)
    plot(curve, os.path.join(args.out, "loss.png"))
    log.close()


def export(model, cfg, directory):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    model.export(os.path.join(directory, "model.safetensors"))


def plot(curve, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = [c[0] for c in curve]
    plt.figure(figsize=(6, 4))
    plt.plot(steps, [c[1] for c in curve], label="training batch")
    plt.plot(steps, [c[2] for c in curve], label="held-out")
    plt.xlabel("step")
    plt.ylabel("MLM loss (nats / masked byte)")
    plt.legend()
    plt.tight_layout()
    plt.savefig(path, dpi=80)


def evaluate_dir(args):
    """Held-out MLM loss and accuracy of the checkpoint in args.evaluate: with the
    script's modules, and (--library-output) with the MLM head applied to the
    library's final hidden states (reuseformer-encode's last_hidden_state on the
    held-out input_ids)."""
    torch.set_num_threads(1)
    model = load_model(args.evaluate)
    heldout = read_safetensors(args.heldout)
    loss, acc = evaluate(model, heldout)
    result = {"model": args.evaluate, "torch_loss": loss, "torch_accuracy": acc}
    if args.library_output:
        hidden = torch.from_numpy(read_safetensors(args.library_output)["last_hidden_state"].astype(np.float32))
        with torch.no_grad():
            l, c, n = mlm_metrics(model.head(hidden), torch.from_numpy(heldout["labels"]))
        result.update({"library_loss": l / n, "library_accuracy": c / n})
    print(json.dumps(result))


def finetune(args):
    """A short fine-tune of the checkpoint in args.finetune with its reuse in
    place (the script's modules), on the training text; writes it to args.out."""
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    texts = fortunes()
    rng.shuffle(texts)
    cut = len(texts) // 20
    pack(texts[:cut], rng)  # the same draws as training, so the split is the same
    train_ids, train_mask = pack(texts[cut:], rng)
    model = load_model(args.finetune)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr / 10, weight_decay=0.01)
    gen = torch.Generator().manual_seed(args.seed + 1)
    start = time.time()
    for step in range(args.steps):
        pick = torch.randint(0, len(train_ids), (args.batch,), generator=gen)
        inputs, labels = mask_tokens(train_ids[pick], train_mask[pick], gen)
        model.train()
        logits = model.head(model.encode(inputs, train_mask[pick]))
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    export(model, model.cfg, args.out)
    print(json.dumps({"finetuned": args.out, "steps": args.steps, "seconds": time.time() - start}))


def reference(args):
    """The script's modules on the first 8 held-out sequences of the checkpoint
    in args.reference (planned or not), in float64: the expected final hidden
    states a C++ test compares the library with."""
    torch.set_num_threads(1)
    model = load_model(args.reference).double()
    heldout = read_safetensors(args.heldout)
    ids, mask = torch.from_numpy(heldout["input_ids"][:8]), torch.from_numpy(heldout["attention_mask"][:8])
    with torch.no_grad():
        expected = model.encode(ids, mask).numpy()
    metadata = {"model": args.reference, "reuse_schedule": json.dumps(model.cfg.get("reuse_schedule") or [])}
    plan = os.path.join(args.reference, "plan.json")
    if os.path.exists(plan):  # reuseformer-plan's head orders, which the C++ test re-plans and compares
        with open(plan) as f:
            metadata["orders"] = json.dumps(json.load(f)["orders"], separators=(",", ":"))
    write_safetensors(args.out, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "expected": expected},
                      metadata)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evaluate", help="evaluate this checkpoint directory on --heldout (prints JSON)")
    ap.add_argument("--library-output", help="with --evaluate: reuseformer-encode's output on the held-out input_ids")
    ap.add_argument("--finetune", help="fine-tune this checkpoint directory (reuse in place) for --steps, into --out")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--reference", help="write the script's float64 outputs for this checkpoint to --out")
    ap.add_argument("--heldout", default="tests/fixtures/trained_mlm/heldout.safetensors")
    ap.add_argument("--out", default="tests/fixtures/trained_mlm")
    ap.add_argument("--init-out", help="also export the untrained (initialised) model here")
    ap.add_argument("--minutes", type=float, default=25)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.evaluate:
        evaluate_dir(args)
    elif args.finetune:
        finetune(args)
    elif args.reference:
        reference(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
