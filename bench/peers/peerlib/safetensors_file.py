"""safetensors, without the safetensors package (Debian has none for python3)."""

import json
import math
import os
import struct

from . import PeerError


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

