"""PEFT methods beyond plain LoRA on the plain-torch tiny models of tiny_models.py: (IA)^3, DoRA, LoRA with
layers_to_transform, and BitFit (trainable biases / norms). One place for the forwards, merges and the
adapter-folder layout, shared by make_method_fixtures.py (goldens) and check_method_adapter.py (checks
webtune's exported adapter folders). Debian has no `peft` package, so the formulas are transcribed from
huggingface/peft (read at commit 5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40):

  src/peft/utils/constants.py     TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING /
                                  TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING (IA3_DEFAULTS below)
  src/peft/tuners/ia3/layer.py    IA3Layer.update_layer: ia3_l is [1, in] on feedforward targets, [out, 1] otherwise
                                  (Conv1D: in, out = weight.shape); Linear.forward: feedforward
                                  `base_layer(x * l.flatten())`, otherwise `base_layer(x) * l.flatten()` (the
                                  base output INCLUDING its bias is scaled); Linear.merge: `W *= transpose(l,
                                  fan_in_fan_out)` and, only when not feedforward and the layer has a bias,
                                  `bias *= l.reshape(bias.shape)` (feedforward merges leave the bias alone).
  src/peft/tuners/ia3/model.py    _check_target_module_feedforward: `key.endswith(ff)` (no '.' boundary);
                                  _create_new_module forces fan_in_fan_out True for Conv1D, False for nn.Linear;
                                  _prepare_adapter_config fills the defaults from constants.py.
  src/peft/tuners/lora/dora.py    DoraLinearLayer.get_weight_norm: ||transpose(W, fifo) + s * lora_weight||_2 over
                                  dim 1 (the input dim); forward: lora_weight = lora_B(lora_A(eye)).T, the norm is
                                  computed from lora_weight.detach() and then .detach()ed itself (DoRA paper 4.3),
                                  mag_norm_scale = (m / n).view(1, -1), base_result = result - bias, and
                                  result_dora = (mag_norm_scale - 1) * base_result + mag_norm_scale * lora_B(lora_A(x))
                                  * s, added to the base layer's result (so the bias is added once, unscaled).
  src/peft/tuners/lora/variants.py DoraLinearVariant.merge_*: W' = (m / n) * (W + delta) row-wise (transposed for
                                  fan_in_fan_out); the bias is untouched. forward: result + dora(x) with
                                  base_result = result when dropout is Identity.
  src/peft/tuners/lora/layer.py   Linear.get_delta_weight = transpose(B @ A, fan_in_fan_out) * scaling; LoRA forward
                                  result + lora_B(lora_A(dropout(x))) * scaling.
  src/peft/tuners/tuners_utils.py check_target_module_exists: a module matches when its name equals a target or
                                  ends with '.' + target; with layers_to_transform and no layers_pattern the
                                  layer index is the first numbered segment, r".*?\\.[^.]*\\.(\\d+)\\.".
  Saved keys (tuners_utils._remove_adapter_name_from_state_dict_key, lora/model.py _get_adapter_state_dict):
     base_model.model.<module>.ia3_l                   (from ia3_l.default)
     base_model.model.<module>.lora_A.weight / lora_B.weight   (from lora_A.default.weight)
     base_model.model.<module>.lora_magnitude_vector   (from lora_magnitude_vector.default.weight: ".weight" is
                                                       stripped for DoRA, then the adapter name)
BitFit has no PEFT type; its folder uses adapter_config.json {"method": "bitfit", "target_modules", "norms"} and
keys base_model.model.<module>.bias (and base_model.model.<norm>.weight / .bias when norms).
"""
import json
import os
import re

import torch
import torch.nn.functional as F

from tiny_models import CausalLM, lora_scale, read_safetensors

PREFIX = "base_model.model."

# src/peft/utils/constants.py (the entries for this repo's model types)
IA3_DEFAULTS = {
    "llama": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "qwen2": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gpt2": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"]),
}
LINEAR_SUFFIXES = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}


# ----------------------------------------------------------------------------- module selection

def layer_index(path):
    m = re.match(r".*?\.[^.]*\.(\d+)\.", path)
    return None if m is None else int(m.group(1))


def target_modules(model, targets, layers_to_transform=None):
    """PEFT check_target_module_exists (list targets, default layers_pattern), in module order."""
    out = []
    for m in model.module_shapes():
        if not any(m == t or m.endswith("." + t) for t in targets):
            continue
        if layers_to_transform is not None and len(layers_to_transform) != 0:
            if layer_index(m) not in layers_to_transform:
                continue
        out.append(m)
    return out


def is_feedforward(path, feedforward_modules):
    """ia3/model.py _check_target_module_feedforward (list form: plain endswith, regex string: fullmatch)."""
    if isinstance(feedforward_modules, str):
        return bool(re.fullmatch(feedforward_modules, path))
    return any(path.endswith(k) for k in feedforward_modules)


def norm_paths(model):
    """Norm modules with their parameter names: llama/qwen2 RMSNorm weight; gpt2 LayerNorm weight and bias."""
    if model.type == "gpt2":
        paths = [f"transformer.h.{i}.{n}" for i in range(model.config["n_layer"]) for n in ("ln_1", "ln_2")]
        return [(p, ("weight", "bias")) for p in paths + ["transformer.ln_f"]]
    paths = [f"model.layers.{i}.{n}" for i in range(model.config["num_hidden_layers"])
             for n in ("input_layernorm", "post_attention_layernorm")]
    return [(p, ("weight",)) for p in paths + ["model.norm"]]


# ----------------------------------------------------------------------------- adapted model

class IA3:
    def __init__(self, l, feedforward):
        self.l, self.feedforward = l, feedforward


class LoRA:
    def __init__(self, a, b, scale):
        self.a, self.b, self.scale = a, b, scale


class DoRA:
    """norm_override: a fixed weight norm (finite-difference checks of the detached gradient)."""

    def __init__(self, a, b, m, scale, norm_override=None):
        self.a, self.b, self.m, self.scale, self.norm_override = a, b, m, scale, norm_override


def dora_weight_norm(w_out_in, a, b, scale):
    """dora.py get_lora_weight + get_weight_norm: lora_weight = lora_B(lora_A(eye)).T; ||W + s*lora_weight|| per row."""
    eye = torch.eye(a.shape[1], dtype=a.dtype)
    lora_weight = F.linear(F.linear(eye, a), b).T
    return torch.linalg.norm(w_out_in + scale * lora_weight, dim=1).to(w_out_in.dtype)


class MethodLM(CausalLM):
    """CausalLM whose projections carry per-module IA3/LoRA/DoRA adapters. BitFit needs no adapter objects:
    its trainable biases and norm weights are simply entries of `params` (bias-free modules get a `.bias`)."""

    def __init__(self, config, params, adapters=None):
        super().__init__(config, params)
        self.adapters = adapters or {}

    def linear(self, x, path, lora):
        return self._adapted(x, path, lambda inp: CausalLM.linear(self, inp, path, None), False)

    def conv1d(self, x, path, lora):
        return self._adapted(x, path, lambda inp: CausalLM.conv1d(self, inp, path, None), True)

    def _weight_out_in(self, path, conv):
        w = self.p[path + ".weight"]
        return w.T if conv else w  # peft.utils.transpose(weight, fan_in_fan_out)

    def _adapted(self, x, path, base, conv):
        ad = self.adapters.get(path)
        if ad is None:
            return base(x)
        if isinstance(ad, IA3):  # ia3/layer.py Linear.forward
            if ad.feedforward:
                return base(x * ad.l.flatten())
            return base(x) * ad.l.flatten()
        if isinstance(ad, LoRA):  # lora/layer.py Linear.forward
            return base(x) + F.linear(F.linear(x, ad.a), ad.b) * ad.scale
        if isinstance(ad, DoRA):  # lora/variants.py DoraLinearVariant.forward + lora/dora.py DoraLinearLayer.forward
            result = base(x)
            w = self._weight_out_in(path, conv)
            if ad.norm_override is not None:
                n = ad.norm_override
            else:
                eye = torch.eye(ad.a.shape[1], dtype=ad.a.dtype)
                lora_weight = F.linear(F.linear(eye, ad.a), ad.b).T
                n = torch.linalg.norm(w + ad.scale * lora_weight.detach(), dim=1).to(w.dtype)
            n = n.detach()
            mag_norm_scale = (ad.m / n).view(1, -1)
            lora_result = F.linear(F.linear(x, ad.a), ad.b)
            bias = self.p.get(path + ".bias")
            base_result = result - bias if bias is not None else result
            return result + ((mag_norm_scale - 1) * base_result + mag_norm_scale * lora_result * ad.scale)
        raise TypeError(type(ad))


def merge(model, adapters):
    """PEFT merge_and_unload: returns ({HF name: merged tensor} of the base tensors that change, merged CausalLM)."""
    shapes = model.module_shapes()
    changed = {}
    for path, ad in adapters.items():
        conv = shapes[path][2]
        w = model.p[path + ".weight"]
        bias = model.p.get(path + ".bias")
        if isinstance(ad, IA3):  # ia3/layer.py Linear.merge
            l = ad.l.T if conv else ad.l  # transpose(ia3_l, fan_in_fan_out)
            changed[path + ".weight"] = w * l
            if not ad.feedforward and bias is not None:
                changed[path + ".bias"] = bias * ad.l.reshape(bias.shape)
        elif isinstance(ad, LoRA):  # lora/layer.py get_delta_weight
            delta = (ad.b @ ad.a) * ad.scale
            changed[path + ".weight"] = w + (delta.T if conv else delta)
        elif isinstance(ad, DoRA):  # lora/variants.py DoraLinearVariant.merge_unsafe
            delta = (ad.b @ ad.a) * ad.scale
            delta = delta.T if conv else delta  # transpose(B @ A, fan_in_fan_out) * scaling
            n = dora_weight_norm(w.T if conv else w, ad.a, ad.b, ad.scale).detach()
            factor = (ad.m / n).view(-1, 1)
            factor = factor.T if conv else factor
            changed[path + ".weight"] = factor * (w + delta)
        else:
            raise TypeError(type(ad))
    params = dict(model.p)
    params.update(changed)
    return changed, CausalLM(model.config, params)


# ----------------------------------------------------------------------------- adapter folders

def read_adapter_dir(adapter_dir):
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    tensors, _ = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    return cfg, {k: v.float() for k, v in tensors.items()}


def method_of(cfg):
    if cfg.get("method") == "bitfit" or cfg.get("webtune_method") == "bitfit":
        return "bitfit"
    pt = cfg.get("peft_type")
    if pt == "IA3":
        return "ia3"
    if pt == "LORA":
        return "dora" if cfg.get("use_dora") else "lora"
    raise ValueError(f"unsupported adapter config: peft_type={pt!r} method={cfg.get('method')!r}")


def _strip_name(key, suffix):
    """base_model.model.<path>.<suffix>, tolerating an adapter-name segment (e.g. lora_A.default.weight)."""
    if not key.startswith(PREFIX):
        return None
    rest = key[len(PREFIX):]
    head, _, tail = suffix.partition(".")
    m = re.match(rf"^(.+)\.{re.escape(head)}(?:\.[^.]+)?{re.escape('.' + tail) if tail else ''}$", rest)
    return m.group(1) if m else None


def apply_adapter(config, params, cfg, tensors):
    """Builds the adapted model from an adapter folder's config and tensors (PEFT layout; see module doc)."""
    method = method_of(cfg)
    probe = CausalLM(config, params)
    shapes = probe.module_shapes()
    if method == "bitfit":
        new = dict(params)
        for k, v in tensors.items():
            if not k.startswith(PREFIX):
                raise ValueError(f"unexpected key {k}")
            if k.endswith(".bitfit_bias"):
                # webtune's BitFit files hold offsets from the base bias (zero where the base has none).
                path = k[len(PREFIX):-len(".bitfit_bias")]
                if path not in shapes:
                    raise ValueError(f"bitfit key {k} names no linear of this model")
                assert tuple(v.shape) == (shapes[path][1],), (k, tuple(v.shape))
                base = params.get(path + ".bias")
                new[path + ".bias"] = v if base is None else base + v
                continue
            name = k[len(PREFIX):]
            path = name.rsplit(".", 1)[0]
            if name.endswith(".bias") and path in shapes:
                fin, fout, _ = shapes[path]
                assert tuple(v.shape) == (fout,), (k, tuple(v.shape))
            elif name in params:
                assert v.shape == params[name].shape, (k, tuple(v.shape))
            else:
                raise ValueError(f"bitfit key {k} names no bias or norm of this model")
            new[name] = v
        return MethodLM(config, new)
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise ValueError("rank_pattern/alpha_pattern are not supported")
    adapters = {}
    if method == "ia3":
        ff = cfg.get("feedforward_modules") or []
        for k, v in tensors.items():
            path = _strip_name(k, "ia3_l")
            if path is None or path not in shapes:
                raise ValueError(f"unexpected key {k}")
            fin, fout, _ = shapes[path]
            feed = is_feedforward(path, ff)
            assert tuple(v.shape) == ((1, fin) if feed else (fout, 1)), (k, tuple(v.shape), feed)
            adapters[path] = IA3(v, feed)
        return MethodLM(config, params, adapters)
    parts = {}
    for k, v in tensors.items():
        for which, suffix in (("A", "lora_A.weight"), ("B", "lora_B.weight"), ("m", "lora_magnitude_vector")):
            path = _strip_name(k, suffix)
            if path is not None:
                parts.setdefault(path, {})[which] = v
                break
        else:
            raise ValueError(f"unexpected key {k}")
    for path, d in parts.items():
        if path not in shapes:
            raise ValueError(f"{path} is not a Linear/Conv1D of this model")
        fin, fout, _ = shapes[path]
        a, b = d["A"], d["B"]
        r = a.shape[0]
        assert r == cfg["r"] and tuple(a.shape) == (r, fin) and tuple(b.shape) == (fout, r), (path, a.shape, b.shape)
        s = lora_scale(cfg["r"], cfg["lora_alpha"], cfg.get("use_rslora", False))
        if method == "dora":
            assert tuple(d["m"].shape) == (fout,), (path, d["m"].shape)
            adapters[path] = DoRA(a, b, d["m"], s)
        else:
            assert "m" not in d, f"{path}: lora_magnitude_vector without use_dora"
            adapters[path] = LoRA(a, b, s)
    return MethodLM(config, params, adapters)
