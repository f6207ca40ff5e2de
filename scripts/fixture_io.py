"""Shared helpers for fixture generators: tensors travel as base64 little-endian bytes in JSON."""
import base64
import json
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def b64(t, dtype):
    """Encode a tensor or array as base64 of its little-endian bytes in `dtype` ('f32', 'u8', ...)."""
    np_dtype = {"f32": "<f4", "u8": "u1", "f64": "<f8"}[dtype]
    arr = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return {"dtype": dtype, "shape": list(arr.shape), "b64": base64.b64encode(arr.astype(np_dtype).tobytes()).decode()}


def write_fixture(rel_path, generator, payload):
    path = os.path.join(ROOT, rel_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = {
        "generatedBy": f"{generator} with torch {torch.__version__} (Debian python3-torch); do not edit by hand",
        **payload,
    }
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {rel_path} ({os.path.getsize(path)} bytes)", file=sys.stderr)
