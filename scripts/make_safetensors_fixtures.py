#!/usr/bin/python3
"""safetensors fixtures for packages/model: files written by hand from the format in REFERENCE.md
(Debian has no safetensors package), with tensors from PyTorch, and the values PyTorch reads back
as float32 (its own f16 and bf16 conversions) for the reader's tests to compare against.

Writes packages/model/test/fixtures/safetensors/: mixed.safetensors (every float dtype, ints, a
scalar, an empty tensor, metadata), sharded/ (two shards and their index) and expected.json.
Run: /usr/bin/python3 scripts/make_safetensors_fixtures.py
"""
import json
import os

import torch

from fixture_io import ROOT, b64, write_fixture
from tiny_models import ST_NAMES, raw_bytes
from tiny_models import write_safetensors as write_safetensors_file

OUT = "packages/model/test/fixtures/safetensors"
DTYPES = ST_NAMES


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, tensor) written in the given order (not sorted, unlike webtune's writer)."""
    write_safetensors_file(os.path.join(ROOT, path), tensors, metadata)


def expected(tensors):
    out = {}
    for name, t in tensors:
        entry = {"dtype": DTYPES[t.dtype], "shape": list(t.shape)}
        if t.is_floating_point():
            entry["values"] = b64(t.float(), "f32")  # PyTorch's own f16/bf16 -> f32
        else:
            entry["ints"] = [int(v) for v in t.flatten().tolist()]
        out[name] = entry
    return out


def main():
    g = torch.Generator().manual_seed(20261121)
    # bf16/f16 values include a subnormal, +-inf, negative zero and a large magnitude.
    special = torch.tensor([1e-7, float("inf"), -float("inf"), -0.0, 65504.0, 3.14159])
    mixed = [
        ("model.embed_tokens.weight", torch.randn(5, 3, generator=g)),
        ("half", torch.cat([torch.randn(6, generator=g), special]).to(torch.float16)),
        ("brain", torch.cat([torch.randn(6, generator=g) * 100, special]).to(torch.bfloat16).reshape(3, 4)),
        ("double", torch.randn(2, 2, generator=g, dtype=torch.float64)),
        ("position_ids", torch.arange(7, dtype=torch.int64)),
        ("mask", torch.tensor([1, 0, 255, 7], dtype=torch.uint8)),
        ("scalar", torch.tensor(2.5)),
        ("empty", torch.zeros(0, 4)),
    ]
    metadata = {"format": "pt", "note": "webtune fixture"}
    write_safetensors(f"{OUT}/mixed.safetensors", mixed, metadata)

    shard1 = [("model.layers.0.self_attn.q_proj.weight", torch.randn(4, 4, generator=g)),
              ("model.norm.weight", torch.ones(4))]
    shard2 = [("lm_head.weight", torch.randn(6, 4, generator=g).to(torch.bfloat16))]
    write_safetensors(f"{OUT}/sharded/model-00001-of-00002.safetensors", shard1, {"format": "pt"})
    write_safetensors(f"{OUT}/sharded/model-00002-of-00002.safetensors", shard2, {"format": "pt"})
    index = {
        "metadata": {"total_size": sum(len(raw_bytes(t)) for _, t in shard1 + shard2)},
        "weight_map": {**{n: "model-00001-of-00002.safetensors" for n, _ in shard1},
                       **{n: "model-00002-of-00002.safetensors" for n, _ in shard2}},
    }
    with open(os.path.join(ROOT, f"{OUT}/sharded/model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")

    write_fixture(f"{OUT}/expected.json", "scripts/make_safetensors_fixtures.py", {
        "mixed": {"metadata": metadata, "tensors": expected(mixed)},
        "sharded": expected(shard1 + shard2),
    })


if __name__ == "__main__":
    main()
