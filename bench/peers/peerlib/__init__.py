"""The peers' pieces, shared by peers.py (the encoder) and decode_peer.py (decoding).

    safetensors_file  read_safetensors: the file format, without the safetensors package
    model             Model (config.json + model.safetensors, checked for what the peers
                      can run), read_input, read_reference
    graphs            the graphs the peers run: PyTorch modules (torch_encoder,
                      make_bert_graph for the ONNX export) and the fused ONNX graphs
                      written with onnx.helper (make_fused_graph, float or int8)
    runners           one class per engine, built and warmed up, timing one pass per
                      call: TorchPeer, OrtPeer (ort_run.mjs in a child process); the
                      .onnx cache; MAKERS, the peers by name
    process           the BLAS re-exec for Debian's torch, the child environment, and
                      the --serve protocol
"""

OUTPUT_NAME = "last_hidden_state"  # reuseformer-encode's output tensor


class PeerError(Exception):
    """A failure to report in the peer's {"error": ...} entry."""
