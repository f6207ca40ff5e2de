#!/usr/bin/python3
"""Load an exported adapter folder into the plain-torch tiny model and print its logits, as an independent
check that webtune's exported (IA)^3 / DoRA / LoRA / BitFit files reproduce the adapted model in torch.

Usage:
  cd scripts && /usr/bin/python3 check_method_adapter.py ADAPTER_DIR MODEL

ADAPTER_DIR  adapter_config.json + adapter_model.safetensors in PEFT's layout (peft_methods.py documents the keys):
               peft_type "IA3": base_model.model.<module>.ia3_l ([out, 1], or [1, in] on feedforward_modules)
               peft_type "LORA" (use_dora true or false, layers_to_transform honoured through the saved keys):
                 base_model.model.<module>.lora_A.weight [r, in], .lora_B.weight [out, r]
                 and with use_dora .lora_magnitude_vector [out]
               "method": "bitfit": base_model.model.<module>.bias (and <norm>.weight / .bias)
               "webtune_method": "bitfit" (webtune's export): base_model.model.<module>.bitfit_bias, offsets added
                 to the base bias (a new bias where the base has none)
             F32/F16/BF16 tensors are upcast to f32.
MODEL        tiny-llama | tiny-qwen2 | tiny-gpt2: packages/model/test/fixtures/models/MODEL (stored weights upcast
             to f32); inputIds/labels from goldens/methods-MODEL.json (the same as goldens/MODEL.json).

Prints one line of JSON: {"method", "logits": first 32 values of logits[0, 0] (vocab entries 0..31 at the first
position of the first row), "loss": HF causal-LM loss for the golden's labels}. With a third argument OUT.json it
also writes {"generatedBy", "method", "loss", "logits": every logit of the batch, base64 f32} there (the
cross-check packages/model/test/methods.gpu.test.ts reads for adapters webtune exported).
"""
import json
import os
import sys

import torch

from fixture_io import ROOT, b64
from peft_methods import apply_adapter, method_of, read_adapter_dir
from tiny_models import hf_causal_lm_loss, load_hf_model_dir

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
    config, params = load_hf_model_dir(os.path.join(FIX, "models", model_name))
    cfg, tensors = read_adapter_dir(adapter_dir)
    model = apply_adapter(config, params, cfg, tensors)
    ids, labels = golden_inputs(model_name)
    with torch.no_grad():
        logits = model.forward(ids)
        loss = hf_causal_lm_loss(logits, labels)
    return {"method": method_of(cfg), "logits": [float(v) for v in logits[0, 0, :32]], "loss": float(loss)}, logits


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(1)
    summary, logits = run(sys.argv[1], sys.argv[2])
    print(json.dumps(summary))
    if len(sys.argv) == 4:
        with open(sys.argv[3], "w") as f:
            json.dump({"generatedBy": "scripts/check_method_adapter.py (plain-torch PEFT forwards, scripts/peft_methods.py)",
                       "method": summary["method"], "loss": summary["loss"], "logits": b64(logits, "f32")}, f)
            f.write("\n")


if __name__ == "__main__":
    main()
