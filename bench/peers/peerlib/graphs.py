"""The graphs the peers run, built from a Model's weights.

PyTorch modules: torch_encoder (nn.TransformerEncoder, the pytorch peers) and
make_bert_graph (a Hugging Face-style BERT layer in basic ops, what the
onnxruntime peer exports). ONNX graphs written directly with onnx.helper:
make_fused_graph, the graph ONNX Runtime's transformer optimizer makes of BERT
(onnxruntime-fused) or its int8 form (onnxruntime-int8).
"""

import math
import sys

from . import OUTPUT_NAME, PeerError


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
# The fused graphs: ONNX Runtime's contrib operators, written with onnx.helper
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

