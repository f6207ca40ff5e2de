#!/usr/bin/python3
"""Goldens for PEFT methods beyond plain LoRA on the tiny models: (IA)^3, DoRA, BitFit and LoRA/DoRA restricted
with layers_to_transform. The forwards, merges and key names live in peft_methods.py (transcribed from
huggingface/peft, files cited there); the base models run through tiny_models.py (HF eager semantics). Fixed
seeds: reruns give identical bytes.

Writes packages/model/test/fixtures/goldens/methods-{tiny-llama,tiny-qwen2,tiny-gpt2}.json:
  {generatedBy, model, notes, inputIds, labels (from goldens/<model>.json), variants: [
     {name, method: ia3|dora|bitfit|lora, config (adapter_config.json fields), tensors {saved key: f32},
      grads {saved key: d loss / d tensor}, logits [2,16,512], loss, merged {HF base tensor name: f32, in the
      HF file layout (Conv1D stays [in, out])}, mergedLogits, (lora-top-layer only) frozenBelowGrads: true}]}
Variants: ia3-default (PEFT's default IA3 targets for the model_type), ia3-custom, dora-r4, bitfit-linears,
bitfit-norms, lora-top-layer (layers_to_transform [1]), dora-top-layer. Loss = hf_causal_lm_loss; all f32 on
the stored weights upcast to f32 (qwen2 is stored BF16, gpt2 F16).

Checks run on every generation (assert, then discarded): central finite differences in float64 of a few grad
entries per variant (for DoRA with the weight norm held fixed at its current value, which is what PEFT's
detach computes), merged logits vs adapted logits (max abs diff < 1e-4), and a round trip through an adapter
folder written in PEFT's layout and read back by check_method_adapter.py.

Run: cd scripts && /usr/bin/python3 make_method_fixtures.py
"""
import json
import math
import os
import tempfile

import torch
import torch.nn.functional as F

import check_method_adapter
from fixture_io import ROOT, b64, write_fixture
from peft_methods import (IA3, IA3_DEFAULTS, LINEAR_SUFFIXES, PREFIX, DoRA, LoRA, MethodLM, dora_weight_norm,
                          is_feedforward, merge, norm_paths, target_modules)
from tiny_models import CausalLM, hf_causal_lm_loss, load_hf_model_dir, lora_scale, write_safetensors

FIX = "packages/model/test/fixtures"
GEN = "scripts/make_method_fixtures.py"
MODELS = [("tiny-llama", 7001), ("tiny-qwen2", 7002), ("tiny-gpt2", 7003)]
CUSTOM_IA3 = {"llama": (["q_proj", "o_proj", "up_proj"], ["up_proj"]),
              "qwen2": (["q_proj", "o_proj", "up_proj"], ["up_proj"]),
              "gpt2": (["c_attn", "c_fc"], ["c_fc"])}
DORA_TARGETS = {"llama": ["q_proj", "v_proj", "down_proj"], "qwen2": ["q_proj", "v_proj", "down_proj"],
                "gpt2": ["c_attn", "mlp.c_proj"]}
LORA_DEFAULT = {"llama": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"], "gpt2": ["c_attn"]}
NOTES = {
    "ia3": "ia3/layer.py: feedforward targets scale the input (ia3_l [1,in]): y = base(x * l); other targets scale "
           "the base output INCLUDING its bias (ia3_l [out,1]): y = base(x) * l. Merge: W *= transpose(l, "
           "fan_in_fan_out) (rows or, for feedforward, input columns; Conv1D [in,out] the other way round) and "
           "bias *= l only for non-feedforward targets that have a bias; feedforward merges leave the bias alone.",
    "dora": "lora/dora.py: n = ||W + s*B@A||_2 per output row (over the input dim), detached (also the B@A inside "
            "it); y = base(x) + (m/n - 1)*(base(x) - bias) + (m/n)*s*B(A(x)) = (m/n)*(x V^T) + bias. Merge: "
            "W' = (m/n) * (W + s*B@A) per output row (Conv1D: per output column of [in,out]); bias untouched.",
    "bitfit": "New biases (bias-free modules) are random 0.02*randn; existing biases and norm parameters are the "
              "stored values. merged = the trained tensors under their HF names.",
    "keys": "PEFT saved keys with the adapter name stripped: <module>.ia3_l (from ia3_l.default), "
            "<module>.lora_A.weight / lora_B.weight, <module>.lora_magnitude_vector (from "
            "lora_magnitude_vector.default.weight), all prefixed base_model.model.",
}


def gen(seed):
    return torch.Generator().manual_seed(seed)


def load(name):
    config, params = load_hf_model_dir(os.path.join(ROOT, FIX, "models", name))
    with open(os.path.join(ROOT, FIX, "goldens", f"{name}.json")) as f:
        g = json.load(f)
    return config, params, torch.tensor(g["inputIds"]), torch.tensor(g["labels"])


def lora_init(shapes, paths, r, g):
    """make_tiny_models.make_adapters' init: A ~ U(+-1/sqrt(in)) (PEFT kaiming_uniform a=sqrt(5)); B ~ N(0, 0.05^2)
    instead of zeros so every gradient is informative."""
    out = {}
    for path in paths:
        fin, fout, _ = shapes[path]
        bound = 1 / math.sqrt(fin)
        a = (torch.rand(r, fin, generator=g) * 2 - 1) * bound
        b = torch.randn(fout, r, generator=g) * 0.05
        out[path] = (a, b)
    return out


# ----------------------------------------------------------------------------- variants
# Each spec: dict(name, method, config, init {saved key: tensor}, build(params, tv, norm_fix) -> MethodLM,
# adapters(tv) -> {path: adapter} for merge (None for BitFit), extra fields).

def ia3_spec(model, name, targets, feedforward, g):
    shapes = model.module_shapes()
    paths = target_modules(model, targets)
    init, ff = {}, {}
    for path in paths:
        fin, fout, _ = shapes[path]
        ff[path] = is_feedforward(path, feedforward)
        shape = (1, fin) if ff[path] else (fout, 1)
        init[f"{PREFIX}{path}.ia3_l"] = 1 + 0.3 * torch.randn(*shape, generator=g)

    def adapters(tv):
        return {p: IA3(tv[f"{PREFIX}{p}.ia3_l"], ff[p]) for p in paths}

    config = {"peft_type": "IA3", "target_modules": targets, "feedforward_modules": feedforward,
              "fan_in_fan_out": model.type == "gpt2", "init_ia3_weights": True, "layers_to_transform": None}
    return dict(name=name, method="ia3", config=config, init=init, adapters=adapters,
                build=lambda params, tv, norm_fix=None: MethodLM(model.config, params, adapters(tv)))


def lora_config(model, targets, r, alpha, use_dora, layers):
    return {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": targets, "use_dora": use_dora,
            "fan_in_fan_out": model.type == "gpt2", "lora_dropout": 0.0, "use_rslora": False,
            "layers_to_transform": layers}


def dora_spec(model, name, targets, layers, g, r=4, alpha=8):
    shapes = model.module_shapes()
    paths = target_modules(model, targets, layers)
    s = lora_scale(r, alpha, False)
    init = {}
    for path, (a, b) in lora_init(shapes, paths, r, g).items():
        w = model.p[path + ".weight"]
        n = dora_weight_norm(w.T if shapes[path][2] else w, a, b, s)
        m = n * (1 + 0.1 * torch.randn(n.shape, generator=g))
        init[f"{PREFIX}{path}.lora_A.weight"] = a
        init[f"{PREFIX}{path}.lora_B.weight"] = b
        init[f"{PREFIX}{path}.lora_magnitude_vector"] = m

    def adapters(tv, norm_fix=None):
        return {p: DoRA(tv[f"{PREFIX}{p}.lora_A.weight"], tv[f"{PREFIX}{p}.lora_B.weight"],
                        tv[f"{PREFIX}{p}.lora_magnitude_vector"], s, None if norm_fix is None else norm_fix[p])
                for p in paths}

    def norms(params, tv):  # the detached norm at the current point, for the finite-difference check
        out = {}
        for p in paths:
            w = params[p + ".weight"]
            out[p] = dora_weight_norm(w.T if shapes[p][2] else w, tv[f"{PREFIX}{p}.lora_A.weight"],
                                      tv[f"{PREFIX}{p}.lora_B.weight"], s).detach()
        return out

    return dict(name=name, method="dora", config=lora_config(model, targets, r, alpha, True, layers), init=init,
                adapters=adapters, norms=norms,
                build=lambda params, tv, norm_fix=None: MethodLM(model.config, params, adapters(tv, norm_fix)))


def lora_spec(model, name, targets, layers, g, r=4, alpha=8):
    paths = target_modules(model, targets, layers)
    s = lora_scale(r, alpha, False)
    init = {}
    for path, (a, b) in lora_init(model.module_shapes(), paths, r, g).items():
        init[f"{PREFIX}{path}.lora_A.weight"] = a
        init[f"{PREFIX}{path}.lora_B.weight"] = b

    def adapters(tv):
        return {p: LoRA(tv[f"{PREFIX}{p}.lora_A.weight"], tv[f"{PREFIX}{p}.lora_B.weight"], s) for p in paths}

    return dict(name=name, method="lora", config=lora_config(model, targets, r, alpha, False, layers), init=init,
                adapters=adapters, extra={"frozenBelowGrads": True},
                build=lambda params, tv, norm_fix=None: MethodLM(model.config, params, adapters(tv)))


def bitfit_spec(model, name, norms, g):
    targets = LINEAR_SUFFIXES[model.type]
    init = {}
    for path, (fin, fout, _) in model.module_shapes().items():
        assert any(path.endswith("." + t) for t in targets), path
        existing = model.p.get(path + ".bias")
        init[f"{PREFIX}{path}.bias"] = existing.clone() if existing is not None else 0.02 * torch.randn(fout, generator=g)
    if norms:
        for path, names in norm_paths(model):
            for n in names:
                init[f"{PREFIX}{path}.{n}"] = model.p[f"{path}.{n}"].clone()

    def build(params, tv, norm_fix=None):
        params = dict(params)
        params.update({k[len(PREFIX):]: v for k, v in tv.items()})
        return MethodLM(model.config, params)

    return dict(name=name, method="bitfit", config={"method": "bitfit", "target_modules": targets, "norms": norms},
                init=init, adapters=None, build=build)


def specs(model, seed):
    t = model.type
    return [
        ia3_spec(model, "ia3-default", *IA3_DEFAULTS[t], gen(seed + 1)),
        ia3_spec(model, "ia3-custom", *CUSTOM_IA3[t], gen(seed + 2)),
        dora_spec(model, "dora-r4", DORA_TARGETS[t], None, gen(seed + 3)),
        bitfit_spec(model, "bitfit-linears", False, gen(seed + 4)),
        bitfit_spec(model, "bitfit-norms", True, gen(seed + 5)),
        lora_spec(model, "lora-top-layer", LORA_DEFAULT[t], [1], gen(seed + 6)),
        dora_spec(model, "dora-top-layer", DORA_TARGETS[t], [1], gen(seed + 7)),
    ]


# ----------------------------------------------------------------------------- checks

def ce64(logits, labels):
    """hf_causal_lm_loss without its float32 cast (finite differences in float64)."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=-100, reduction="mean")


def finite_difference_check(spec, model, ids, labels, tv, grads, g):
    """Central differences in float64 of the largest-|grad| entry of every key and one random entry of the middle
    key. tiny_models' RMSNorm and attention softmax compute in float32 even for f64 inputs, so the
    step is 1e-2 and the tolerance loose enough for that noise; second-order error is ~1e-6 here."""
    params64 = {k: v.double() for k, v in model.p.items()}
    tv64 = {k: v.detach().double() for k, v in tv.items()}
    norm_fix = spec["norms"](params64, tv64) if "norms" in spec else None
    keys = list(tv)
    picks = [(k, int(grads[k].abs().argmax())) for k in keys]
    mid = keys[len(keys) // 2]
    picks.append((mid, int(torch.randint(grads[mid].numel(), (1,), generator=g))))
    h, worst = 1e-2, 0.0
    for key, idx in picks:
        vals = []
        for sign in (1, -1):
            t = dict(tv64)
            t[key] = tv64[key].clone()
            t[key].view(-1)[idx] += sign * h
            with torch.no_grad():
                vals.append(float(ce64(spec["build"](params64, t, norm_fix).forward(ids), labels)))
        fd = (vals[0] - vals[1]) / (2 * h)
        an = float(grads[key].reshape(-1)[idx])
        err = abs(fd - an)
        assert err < 2e-4 + 5e-3 * abs(an), (spec["name"], key, idx, fd, an)
        worst = max(worst, err)
    return worst


def adapter_folder_check(spec, name, tv, logits, loss):
    """Write the variant as an adapter folder (PEFT layout) and read it back through check_method_adapter."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump(spec["config"], f)
        write_safetensors(os.path.join(d, "adapter_model.safetensors"),
                          [(k, v.detach().contiguous()) for k, v in tv.items()], {"format": "pt"})
        out = check_method_adapter.run(d, name)
    assert out["method"] == spec["method"], out["method"]
    diff = (torch.tensor(out["logits"]) - logits[0, 0, :32]).abs().max().item()
    assert diff < 1e-5 and abs(out["loss"] - loss) < 1e-5, (spec["name"], diff, out["loss"], loss)


# ----------------------------------------------------------------------------- main

def variant(spec, model, name, ids, labels, g):
    tv = {k: v.clone().requires_grad_() for k, v in spec["init"].items()}
    logits = spec["build"](model.p, tv).forward(ids)
    loss = hf_causal_lm_loss(logits, labels)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in tv.items()}
    assert all(torch.isfinite(v).all() and v.abs().max() > 0 for v in grads.values()), spec["name"]
    logits, loss = logits.detach(), float(loss)
    tvd = {k: v.detach() for k, v in tv.items()}

    if spec["adapters"] is not None:
        merged, merged_model = merge(model, spec["adapters"](tvd))
    else:  # BitFit: the trained biases / norms are the merged tensors
        merged = {k[len(PREFIX):]: v for k, v in tvd.items()}
        params = dict(model.p)
        params.update(merged)
        merged_model = CausalLM(model.config, params)
    with torch.no_grad():
        merged_logits = merged_model.forward(ids)
    mdiff = (merged_logits - logits).abs().max().item()
    assert mdiff < 1e-4, (spec["name"], mdiff)

    fd_err = finite_difference_check(spec, model, ids, labels, tvd, grads, g)
    adapter_folder_check(spec, name, tvd, logits, loss)
    print(f"  {spec['name']:15s} loss {loss:.6f}  tensors {len(tvd):2d}  merged {len(merged):2d}  "
          f"|merged-logits| {mdiff:.2e}  fd err {fd_err:.2e}")
    out = {"name": spec["name"], "method": spec["method"], "config": spec["config"],
           "tensors": {k: b64(v, "f32") for k, v in tvd.items()},
           "grads": {k: b64(v, "f32") for k, v in grads.items()},
           "logits": b64(logits, "f32"), "loss": loss,
           "merged": {k: b64(v, "f32") for k, v in merged.items()},
           "mergedLogits": b64(merged_logits, "f32")}
    out.update(spec.get("extra", {}))
    return out


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for name, seed in MODELS:
        config, params, ids, labels = load(name)
        model = CausalLM(config, params)
        print(name)
        g = gen(seed)
        variants = [variant(spec, model, name, ids, labels, g) for spec in specs(model, seed * 10)]
        write_fixture(f"{FIX}/goldens/methods-{name}.json", GEN, {
            "model": name, "notes": NOTES, "inputIds": ids.tolist(), "labels": labels.tolist(),
            "variants": variants})


if __name__ == "__main__":
    main()
