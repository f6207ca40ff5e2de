#!/usr/bin/python3
"""Load an exported adapter folder into the plain-torch tiny model and print its logits, as an independent
check that webtune's exported (IA)^3 / DoRA / LoRA / BitFit / prompt tuning / P-tuning / prefix tuning /
bottleneck / UniPELT files reproduce the adapted model in torch.

Usage:
  cd scripts && /usr/bin/python3 check_method_adapter.py ADAPTER_DIR MODEL [OUT.json]
  cd scripts && /usr/bin/python3 check_method_adapter.py --roundtrip GOLDEN.json [GOLDEN.json ...]

ADAPTER_DIR  adapter_config.json + adapter_model.safetensors in PEFT's layout (peft_methods.py documents the keys):
               peft_type "IA3": base_model.model.<module>.ia3_l ([out, 1], or [1, in] on feedforward_modules)
               peft_type "LORA" (use_dora true or false, layers_to_transform honoured through the saved keys):
                 base_model.model.<module>.lora_A.weight [r, in], .lora_B.weight [out, r]
                 and with use_dora .lora_magnitude_vector [out]
               "method": "bitfit": base_model.model.<module>.bias (and <norm>.weight / .bias)
               "webtune_method": "bitfit" (webtune's export): base_model.model.<module>.bitfit_bias, offsets added
                 to the base bias (a new bias where the base has none)
               peft_type "PROMPT_TUNING" / "P_TUNING": prompt_embeddings [num_virtual_tokens, d] (for P-tuning the
                 prompt encoder's output, as PEFT saves it), prepended to the input embeddings
               peft_type "PREFIX_TUNING" (prefix_projection true or false): prompt_embeddings
                 [num_virtual_tokens, num_layers*2*token_dim] (the projection's output when projecting), each layer's
                 past keys/values; token_dim / num_attention_heads per PEFT's GQA rule (kv width / kv heads)
               "webtune_method": "bottleneck": <layer path>.attention_adapter.* (mh_adapter) and .output_adapter.*
                 (adapter_down.0.weight [r, d], adapter_down.0.bias, adapter_up.weight [d, r], adapter_up.bias)
               "webtune_method": "unipelt" (r, lora_alpha, target_modules, num_virtual_tokens, bottleneck_size,
                 non_linearity): prefix.embedding.weight [P, L*2*kvw]; per target <module>.lora_A.weight [r, in],
                 .lora_B.weight [out, r], .lora_gate.weight [1, in], .lora_gate.bias [1]; per layer
                 <layer path>.prefix_gate.weight [2, d] / .bias [2] and <layer path>.output_adapter.* (the bottleneck
                 keys with bottleneck_size rows, plus gate.weight [1, d], gate.bias [1]); per-token gates (see
                 peft_methods.py, make_unipelt_fixtures.py)
             F32/F16/BF16 tensors are upcast to f32.
MODEL        tiny-llama | tiny-qwen2 | tiny-gpt2: packages/model/test/fixtures/models/MODEL (stored weights upcast
             to f32); inputIds/labels from goldens/methods-MODEL.json (the same as goldens/MODEL.json).

Prints one line of JSON: {"method", "logits": first 32 values of logits[0, 0] (vocab entries 0..31 at the first
position of the first row), "loss": HF causal-LM loss for the golden's labels}. With a third argument OUT.json it
also writes {"generatedBy", "method", "loss", "logits": every logit of the batch, base64 f32} there (the
cross-check packages/model/test/methods.gpu.test.ts reads for adapters webtune exported). For the prompt learning
methods and UniPELT the logits are the real positions' only ([2, 16, V], the P virtual positions dropped) and the
loss is hf_causal_lm_loss over them (webtune's loss; PEFT's differs when labels[:, 0] != -100, see
make_prompt_method_fixtures.py).

--roundtrip GOLDEN.json: for every variant of a methods / prompt-methods / unipelt golden, writes its config and
savedTensors (or, without savedTensors, its tensors) as an adapter folder in a temporary directory, loads it back as
above (run_with_logits) and compares the logits (all of them) and the loss with the golden's; prints one line per
variant, exits 1 on a mismatch.
"""
import base64
import json
import os
import sys
import tempfile

import numpy as np
import torch

from fixture_io import ROOT, b64
from peft_methods import apply_adapter, method_of, read_adapter_dir
from tiny_models import hf_causal_lm_loss, load_hf_model_dir, write_safetensors

FIX = os.path.join(ROOT, "packages/model/test/fixtures")


def golden_inputs(model_name):
    for fn in (f"methods-{model_name}.json", f"{model_name}.json"):
        path = os.path.join(FIX, "goldens", fn)
        if os.path.exists(path):
            with open(path) as f:
                g = json.load(f)
            return torch.tensor(g["inputIds"], dtype=torch.int64), torch.tensor(g["labels"], dtype=torch.int64)
    raise FileNotFoundError(f"no golden for {model_name}")


def run(adapter_dir, model_name):
    """The one-line summary dict (make_method_fixtures.adapter_folder_check reads it)."""
    return run_with_logits(adapter_dir, model_name)[0]


def run_with_logits(adapter_dir, model_name):
    """(summary, logits [B, T, V] of the real positions)."""
    config, params = load_hf_model_dir(os.path.join(FIX, "models", model_name))
    cfg, tensors = read_adapter_dir(adapter_dir)
    model = apply_adapter(config, params, cfg, tensors)
    ids, labels = golden_inputs(model_name)
    with torch.no_grad():
        logits = model.forward(ids)
        loss = hf_causal_lm_loss(logits, labels)
    return {"method": method_of(cfg), "logits": [float(v) for v in logits[0, 0, :32]], "loss": float(loss)}, logits


def decode(enc):
    """Inverse of fixture_io.b64 for float tensors."""
    dt = {"f32": "<f4", "f64": "<f8"}[enc["dtype"]]
    arr = np.frombuffer(base64.b64decode(enc["b64"]), dtype=dt).reshape(enc["shape"])
    return torch.from_numpy(arr.astype(np.float32))


def write_adapter_dir(adapter_dir, cfg, tensors):
    """adapter_config.json + adapter_model.safetensors (f32, in the dict's order)."""
    os.makedirs(adapter_dir, exist_ok=True)
    with open(os.path.join(adapter_dir, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"),
                      [(k, v.detach().float().contiguous()) for k, v in tensors.items()], {"format": "pt"})


def roundtrip(cfg, tensors, model_name):
    """Writes (cfg, tensors) as an adapter folder in a temporary directory and loads it back with run():
    returns (summary, logits)."""
    with tempfile.TemporaryDirectory() as d:
        write_adapter_dir(d, cfg, tensors)
        return run_with_logits(d, model_name)


def check_golden(path, tol=1e-5):
    with open(path) as f:
        g = json.load(f)
    ok = True
    for v in g["variants"]:
        saved = {k: decode(t) for k, t in (v.get("savedTensors") or v["tensors"]).items()}
        summary, logits = roundtrip(v["config"], saved, g["model"])
        diff = (logits - decode(v["logits"])).abs().max().item()
        good = summary["method"] == v["method"] and diff < tol and abs(summary["loss"] - v["loss"]) < tol
        ok = ok and good
        print(f"{'ok  ' if good else 'FAIL'} {g['model']} {v['name']}: method {summary['method']}, "
              f"max |logits - golden| {diff:.2e}, loss {summary['loss']:.6f} (golden {v['loss']:.6f})")
    return ok


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--roundtrip":
        torch.set_num_threads(1)
        ok = all([check_golden(p) for p in sys.argv[2:]])
        sys.exit(0 if ok else 1)
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(1)
    summary, logits = run_with_logits(sys.argv[1], sys.argv[2])
    print(json.dumps(summary))
    if len(sys.argv) == 4:
        with open(sys.argv[3], "w") as f:
            json.dump({"generatedBy": "scripts/check_method_adapter.py (plain-torch PEFT forwards, scripts/peft_methods.py)",
                       "method": summary["method"], "loss": summary["loss"], "logits": b64(logits, "f32")}, f)
            f.write("\n")


if __name__ == "__main__":
    main()
