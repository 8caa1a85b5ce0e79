"""A safetensors file (Hugging Face's format: an 8-byte header length, a JSON header, then
the tensors' bytes) as numpy arrays, read here without the library that wrote it."""
import json
import struct
from pathlib import Path

import numpy as np


def read_safetensors(path):
    """-> ({name: numpy array}, metadata dict)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    dtypes = {"F64": np.float64, "F32": np.float32, "I64": np.int64}
    tensors = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        tensors[name] = np.frombuffer(data[b:e], dtype=dtypes[info["dtype"]]).reshape(info["shape"]).copy()
    return tensors, meta
