#!/usr/bin/env python3
"""Writes the committed seed corpora, fuzz/corpus/<target>/ (Python 3, standard
library only). Every seed is an input the library accepts, so that fuzzing
starts from deep inside each parser; tests/test_fuzz_regressions.cpp checks
that they still are. Run from anywhere: python3 fuzz/make_seeds.py
"""
import json
import random
import shutil
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
FIXTURES = FUZZ.parent / "tests" / "fixtures"
CORPUS = FUZZ / "corpus"

FORMATS = {"F64": "d", "F32": "f", "F16": "e", "I64": "q", "I32": "i", "I16": "h", "I8": "b",
           "U64": "Q", "U32": "I", "U16": "H", "U8": "B", "BOOL": "?"}
SIZES = {"F8_E5M2": 1, "F8_E4M3": 1, "BF16": 2}


def encode(dtype, values):
    if dtype == "BF16":  # the upper half of the float's bits
        return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:] for v in values)
    if dtype in ("F8_E5M2", "F8_E4M3"):
        return bytes(int(v) & 0xFF for v in values)
    return struct.pack("<%d%s" % (len(values), FORMATS[dtype]), *values)


def safetensors(tensors, metadata=None, pad=True, gap=0, trailing=b""):
    """tensors: (name, dtype, shape, values) in data order; `gap` unused bytes
    after each tensor; the header padded with spaces to 8 bytes when `pad`."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, values in tensors:
        raw = encode(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw + b"\0" * gap
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data + trailing


def count(shape):
    n = 1
    for e in shape:
        n *= e
    return n


rng = random.Random(20240601)


def normal(shape, scale=0.5):
    return [round(rng.gauss(0.0, scale), 4) for _ in range(count(shape))]


def write(target, name, content):
    path = CORPUS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def safetensors_seeds():
    t = "fuzz_safetensors"
    shutil.copyfile(FIXTURES / "io_roundtrip.safetensors", CORPUS / t / "io_roundtrip.safetensors")
    write(t, "empty.safetensors", safetensors([]))
    write(t, "metadata_only.safetensors", safetensors([], {"format": "pt", "note": "no tensors"}))
    every = [("t_" + d.lower(), d, [3], [1, 0, 1] if d == "BOOL" else [1, 2, 3]) for d in FORMATS]
    every += [("t_bf16", "BF16", [2], [1.5, -2.0]), ("t_f8_e5m2", "F8_E5M2", [2], [60, 188]),
              ("t_f8_e4m3", "F8_E4M3", [2], [56, 184]), ("empty", "F32", [0, 5], []),
              ("scalar", "F64", [], [3.25]), ("matrix", "F32", [2, 3], [0.5, -1, 2, 1e30, -0.0, 7]),
              ("cube", "I16", [2, 1, 2], [-1, 2, -3, 4])]
    write(t, "every_dtype.safetensors", safetensors(every, {"format": "pt"}))
    # Unpadded header (unaligned data), gaps between tensors, bytes after the last.
    write(t, "unaligned_gaps.safetensors",
          safetensors([("a", "F32", [2], [1.0, 2.0]), ("b", "F16", [3], [0.5, 65504.0, -1.0]),
                       ("c", "I64", [1, 1], [-5])], pad=False, gap=3, trailing=b"tail"))


def config_seeds():
    t = "fuzz_config_json"
    for name in ("bert_f16_embeddings", "pairwise_embeddings", "reuse_full", "encoder_pre_ln_relu_causal",
                 "reuse_explicit_causal"):
        shutil.copyfile(FIXTURES / f"{name}.config.json", CORPUS / t / f"{name}.json")
    write(t, "empty.json", b"{}")
    write(t, "every_key.json", json.dumps({
        "hidden_size": 12, "num_attention_heads": 3, "intermediate_size": 20, "num_hidden_layers": 4,
        "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "plpi_affinity_function": "pairwise_diagonal",
        "reuse_attention": 1, "max_reuse_layer_idx": 2, "reuse_schedule": [0, 1, 1, 0], "norm_first": True,
        "causal": False, "use_relative_pe": True, "pe_max_seq_length": 16, "vocab_size": 100,
        "max_position_embeddings": 32, "type_vocab_size": 1, "pad_token_id": 0, "classifier_dropout": None,
        "vocab": None}, indent=1).encode())


def model_input_seeds():
    """The file, then one byte: odd = the model has embeddings."""
    t, d = "fuzz_model_input", 8
    write(t, "hidden_f32_mask_i64.bin",
          safetensors([("hidden_states", "F32", [2, 3, d], normal([2, 3, d])),
                       ("attention_mask", "I64", [2, 3], [1, 1, 1, 1, 0, 0])]) + b"\0")
    write(t, "hidden_f16.bin", safetensors([("hidden_states", "F16", [1, 4, d], normal([1, 4, d]))]) + b"\1")
    write(t, "hidden_bf16_mask_f32.bin",
          safetensors([("attention_mask", "F32", [1, 5], [1, 1, 1, 1, 0]),
                       ("hidden_states", "BF16", [1, 5, d], normal([1, 5, d]))], pad=False) + b"\0")
    write(t, "ids_types_mask_i32.bin",
          safetensors([("input_ids", "I64", [2, 4], [1, 15, 3, 0, 2, 4, 6, 8]),
                       ("token_type_ids", "I64", [2, 4], [0, 0, 1, 1, 0, 1, 0, 1]),
                       ("attention_mask", "I32", [2, 4], [1, 1, 1, 0, 1, 1, 1, 1])]) + b"\1")
    write(t, "ids_u8_mask_f32.bin",
          safetensors([("input_ids", "U8", [1, 8], [0, 1, 2, 3, 4, 5, 6, 7]),
                       ("attention_mask", "F32", [1, 8], [1, 1, 1, 1, 1, 1, 0, 0])]) + b"\1")
    write(t, "ids_i16_types_u16.bin",
          safetensors([("input_ids", "I16", [3, 2], [9, 10, 11, 12, 13, 14]),
                       ("token_type_ids", "U16", [3, 2], [1, 0, 1, 0, 0, 1])], {"format": "pt"}) + b"\1")


def layer_tensors(prefix, l, d, heads, d_ff, fresh, score, relative_p):
    dh = d // heads
    p = f"{prefix}encoder.layer.{l}."
    s = p + "attention.self."
    out = []

    def linear(name, rows, cols):
        out.append((name + ".weight", "F32", [rows, cols], normal([rows, cols])))
        out.append((name + ".bias", "F32", [rows], normal([rows], 0.1)))

    if fresh:
        linear(s + "query", fresh * dh, d)
        if score == "standard":
            linear(s + "key", fresh * dh, d)
        if score == "pairwise_symmetric":
            factors = []
            for _ in range(fresh):
                m = [[0.0] * dh for _ in range(dh)]
                for i in range(dh):
                    for j in range(i + 1):
                        m[i][j] = m[j][i] = round(rng.gauss(0.0, 0.5), 4)
                factors += [v for row in m for v in row]
            out.append((s + "pairwise_factors", "F32", [fresh, dh, dh], factors))
        if relative_p:
            out.append((s + "relative_position_embeddings", "F32", [fresh, 2 * relative_p - 1],
                        normal([fresh, 2 * relative_p - 1])))
    linear(s + "value", d, d)
    linear(p + "attention.output.dense", d, d)
    out.append((p + "attention.output.LayerNorm.weight", "F32", [d], [1.0] * d))
    out.append((p + "attention.output.LayerNorm.bias", "F32", [d], [0.0] * d))
    linear(p + "intermediate.dense", d_ff, d)
    linear(p + "output.dense", d, d_ff)
    out.append((p + "output.LayerNorm.weight", "F32", [d], normal([d], 0.1)))
    out.append((p + "output.LayerNorm.bias", "F32", [d], normal([d], 0.1)))
    return out


def embedding_tensors(prefix, d):
    p = prefix + "embeddings."
    return [(p + "word_embeddings.weight", "F32", [16, d], normal([16, d])),
            (p + "position_embeddings.weight", "F32", [8, d], normal([8, d])),
            (p + "token_type_embeddings.weight", "F32", [2, d], normal([2, d])),
            (p + "LayerNorm.weight", "F32", [d], [1.0] * d),
            (p + "LayerNorm.bias", "F32", [d], [0.0] * d)]


def as_dtype(tensors, dtype):
    return [(n, dtype, s, v) for n, _, s, v in tensors]


def bert_model_seeds():
    """The checkpoint, then one byte: even = standard scores, reuse [0, 1];
    odd = pairwise_symmetric scores, relative positions (P = 4), reuse [0, 2]
    (fuzz/harness.hpp, bert_config)."""
    t, d, heads, d_ff = "fuzz_bert_model", 8, 2, 16

    def standard(prefix):
        return (layer_tensors(prefix, 0, d, heads, d_ff, 2, "standard", 0) +
                layer_tensors(prefix, 1, d, heads, d_ff, 1, "standard", 0))

    def pairwise(prefix):
        return (layer_tensors(prefix, 0, d, heads, d_ff, 2, "pairwise_symmetric", 4) +
                layer_tensors(prefix, 1, d, heads, d_ff, 0, "pairwise_symmetric", 4))

    write(t, "standard_embeddings.bin", safetensors(embedding_tensors("", d) + standard(""), {"format": "pt"}) + b"\0")
    write(t, "standard_bert_prefix_f16.bin",
          safetensors(as_dtype(standard("bert."), "F16") + [("bert.pooler.dense.bias", "F32", [d], [0.0] * d)],
                      pad=False) + b"\2")
    write(t, "pairwise_symmetric_relative.bin", safetensors(pairwise(""), {"format": "pt"}) + b"\1")
    write(t, "pairwise_symmetric_bf16_embeddings.bin",
          safetensors(as_dtype(embedding_tensors("bert.", d) + pairwise("bert."), "BF16")) + b"\3")


if __name__ == "__main__":
    shutil.rmtree(CORPUS, ignore_errors=True)
    for target in ("fuzz_safetensors", "fuzz_config_json", "fuzz_model_input", "fuzz_bert_model"):
        (CORPUS / target).mkdir(parents=True)
    safetensors_seeds()
    config_seeds()
    model_input_seeds()
    bert_model_seeds()
    total = sum(f.stat().st_size for f in CORPUS.rglob("*") if f.is_file())
    print(f"{CORPUS}: {sum(1 for f in CORPUS.rglob('*') if f.is_file())} files, {total} bytes")
