#!/usr/bin/python3
"""Merge a PEFT LoRA adapter into a tiny HF-layout model exactly as PEFT's `merge_and_unload` does and
write the merged model's logits, as an independent check of adapters exported by webtune.

Usage:
  cd scripts && /usr/bin/python3 merge_peft_adapter.py MODEL_DIR ADAPTER_DIR OUT_JSON [--goldens GOLDEN_JSON]
  cd scripts && /usr/bin/python3 merge_peft_adapter.py --self-test

MODEL_DIR    an HF folder (config.json + model.safetensors or sharded index), e.g.
             ../packages/model/test/fixtures/models/tiny-llama; F32/F16/BF16 weights are upcast to f32.
ADAPTER_DIR  a PEFT folder: adapter_config.json (r, lora_alpha, use_rslora, target_modules,
             fan_in_fan_out) and adapter_model.safetensors with keys
             base_model.model.<module path>.lora_A.weight [r, in] / .lora_B.weight [out, r]
             (an adapter name segment, e.g. lora_A.default.weight, is accepted too).
OUT_JSON     written in fixture_io format: {"model", "adapter", "scale", "modules", "inputIds", "labels",
             "logits" (merged model, f32 [2,16,512] b64), "loss", "unmergedLogits", "maxAbsDiffMergedVsUnmerged",
             "baseLogits"}. inputIds/labels come from the golden file, by default
             packages/model/test/fixtures/goldens/<MODEL_DIR name without -sharded>.json.

Merge (PEFT tuners/lora/layer.py): W += s * B @ A with s = lora_alpha / r (use_rslora: / sqrt(r)); for
GPT-2's Conv1D (weight [in, out]) the delta is transposed (PEFT forces fan_in_fan_out=True there and
False for nn.Linear, warning in both cases; so does this script). rank_pattern/alpha_pattern and DoRA
are rejected. The merged model runs through tiny_models.py (HF eager semantics).

--self-test writes, for every LoRA variant in the goldens, a PEFT adapter folder (to a temp dir) from the
golden's tensors, merges it, and checks the merged logits against the golden's unmerged LoRA logits.
"""
import argparse
import base64
import json
import os
import re
import sys
import tempfile

import numpy as np
import torch

from fixture_io import ROOT, b64, write_fixture
from tiny_models import (CausalLM, hf_causal_lm_loss, load_hf_model_dir, lora_scale, merge_lora, read_safetensors,
                         write_safetensors)

GOLDENS = os.path.join(ROOT, "packages/model/test/fixtures/goldens")
KEY = re.compile(r"^base_model\.model\.(.+)\.lora_(A|B)(?:\.[^.]+)?\.weight$")


def from_b64(d):
    assert d["dtype"] == "f32"
    return torch.from_numpy(np.frombuffer(base64.b64decode(d["b64"]), dtype="<f4").copy()).reshape(d["shape"])


def read_adapter(adapter_dir):
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"not a LoRA adapter: peft_type={cfg.get('peft_type')}")
    if cfg.get("use_dora"):
        raise ValueError("DoRA is not supported")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise ValueError("rank_pattern/alpha_pattern are not supported")
    tensors, _ = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    pairs = {}
    for k, t in tensors.items():
        m = KEY.match(k)
        if not m:
            raise ValueError(f"unexpected adapter key {k}")
        pairs.setdefault(m.group(1), {})[m.group(2)] = t.float()
    adapters = {}
    for path, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise ValueError(f"{path}: needs both lora_A and lora_B")
        adapters[path] = (ab["A"], ab["B"])
    return cfg, adapters


def check_targets(model, cfg, adapters):
    tm = cfg.get("target_modules")
    if tm is not None:
        if isinstance(tm, str):
            expected = [m for m in model.module_shapes() if re.fullmatch(tm, m)]
        else:
            expected = model.lora_targets(tm)
        if sorted(expected) != sorted(adapters):
            print(f"warning: target_modules {tm} match {sorted(expected)} but the adapter has {sorted(adapters)}",
                  file=sys.stderr)
    shapes = model.module_shapes()
    r = cfg["r"]
    for path, (a, b) in adapters.items():
        if path not in shapes:
            raise ValueError(f"adapter module {path} is not a Linear/Conv1D of the model")
        fin, fout, conv = shapes[path]
        if tuple(a.shape) != (r, fin) or tuple(b.shape) != (fout, r):
            raise ValueError(f"{path}: A {tuple(a.shape)} B {tuple(b.shape)}, expected A ({r}, {fin}) B ({fout}, {r})")
        if conv != bool(cfg.get("fan_in_fan_out", False)):
            print(f"warning: {path} is {'Conv1D' if conv else 'Linear'} but fan_in_fan_out="
                  f"{cfg.get('fan_in_fan_out')}; using {conv} as PEFT does", file=sys.stderr)


def default_golden(model_dir):
    name = os.path.basename(os.path.normpath(model_dir))
    return os.path.join(GOLDENS, re.sub(r"-sharded$", "", name) + ".json")


def run(model_dir, adapter_dir, golden_path=None):
    config, params = load_hf_model_dir(model_dir)
    model = CausalLM(config, params)
    cfg, adapters = read_adapter(adapter_dir)
    check_targets(model, cfg, adapters)
    s = lora_scale(cfg["r"], cfg["lora_alpha"], cfg.get("use_rslora", False))
    with open(golden_path or default_golden(model_dir)) as f:
        g = json.load(f)
    ids, labels = torch.tensor(g["inputIds"]), torch.tensor(g["labels"])
    merged = merge_lora(model, adapters, s)
    with torch.no_grad():
        base = model.forward(ids)
        unmerged = model.forward(ids, {p: (a, b, s) for p, (a, b) in adapters.items()})
        logits = merged.forward(ids)
        loss = hf_causal_lm_loss(logits, labels)
    diff = float((logits - unmerged).abs().max())
    return {
        "model": os.path.basename(os.path.normpath(model_dir)),
        "adapter": os.path.abspath(adapter_dir),
        "scale": s,
        "modules": sorted(adapters),
        "inputIds": g["inputIds"],
        "labels": g["labels"],
        "logits": b64(logits, "f32"),
        "loss": float(loss),
        "unmergedLogits": b64(unmerged, "f32"),
        "maxAbsDiffMergedVsUnmerged": diff,
        "baseLogits": b64(base, "f32"),
    }, logits


def write_adapter_from_golden(out_dir, variant):
    c = variant["config"]
    os.makedirs(out_dir, exist_ok=True)
    cfg = {"alpha_pattern": {}, "base_model_name_or_path": None, "bias": "none", "fan_in_fan_out": c["fanInFanOut"],
           "inference_mode": True, "init_lora_weights": True, "lora_alpha": c["alpha"], "lora_dropout": c["dropout"],
           "modules_to_save": None, "peft_type": "LORA", "r": c["r"], "rank_pattern": {}, "target_modules": c["targets"],
           "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": c["useRslora"]}
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(out_dir, "adapter_model.safetensors"),
                      sorted((k, from_b64(v)) for k, v in variant["adapters"].items()), {"format": "pt"})


def self_test():
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tiny-llama", "tiny-llama-sharded", "tiny-qwen2", "tiny-gpt2"):
            model_dir = os.path.join(ROOT, "packages/model/test/fixtures/models", name)
            with open(default_golden(model_dir)) as f:
                g = json.load(f)
            for v in g["lora"]:
                ad = os.path.join(tmp, f"{name}-{v['name']}")
                write_adapter_from_golden(ad, v)
                out, logits = run(model_dir, ad)
                d_golden = float((logits - from_b64(v["logits"])).abs().max())
                d_loss = abs(out["loss"] - v["loss"])
                worst = max(worst, d_golden)
                print(f"{name} {v['name']}: merged vs golden LoRA logits max|diff| {d_golden:.2e}, "
                      f"vs unmerged {out['maxAbsDiffMergedVsUnmerged']:.2e}, loss diff {d_loss:.2e}")
                assert d_golden < 1e-4 and d_loss < 1e-5
    print(f"self-test OK (worst {worst:.2e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", nargs="?")
    ap.add_argument("adapter_dir", nargs="?")
    ap.add_argument("out_json", nargs="?")
    ap.add_argument("--goldens", help="golden JSON whose inputIds/labels to use")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.self_test:
        return self_test()
    if not (a.model_dir and a.adapter_dir and a.out_json):
        ap.error("MODEL_DIR ADAPTER_DIR OUT_JSON are required (or --self-test)")
    out, _ = run(a.model_dir, a.adapter_dir, a.goldens)
    print(f"merged {len(out['modules'])} modules, scale {out['scale']}, loss {out['loss']:.6f}, "
          f"max|merged - unmerged| {out['maxAbsDiffMergedVsUnmerged']:.2e}", file=sys.stderr)
    write_fixture(os.path.relpath(os.path.abspath(a.out_json), ROOT), "scripts/merge_peft_adapter.py", out)


if __name__ == "__main__":
    main()
