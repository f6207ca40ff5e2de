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

Prompt learning (decoder-only, num_transformer_submodules 1), same PEFT commit:
  src/peft/tuners/prompt_tuning/model.py  PromptEmbedding: embedding = nn.Embedding(P, token_dim) (N(0,1) for RANDOM);
                                  TEXT init: ids = tokenizer(text)["input_ids"], cut to P or repeated ceil(P/n) times
                                  and cut, rows of the word embeddings at those ids, copied, float32.
  src/peft/tuners/p_tuning/model.py   PromptEncoder (MLP): mlp_head = Linear(td,h) ReLU Linear(h,h) ReLU Linear(h,td)
                                  applied to embedding.weight; in inference_mode only `embedding` exists.
  src/peft/tuners/prefix_tuning/model.py PrefixEncoder: embedding [P, L*2*td], or with prefix_projection (training)
                                  embedding [P, td] then transform = Linear(td,h) Tanh Linear(h, L*2*td); in
                                  inference_mode always embedding [P, L*2*td] (what a loaded folder holds).
  src/peft/utils/other.py         _prepare_prompt_learning_config: num_layers / token_dim / num_attention_heads from
                                  the model config; PREFIX_TUNING with num_key_value_heads: token_dim = head_dim *
                                  num_key_value_heads, num_attention_heads = num_key_value_heads; encoder_hidden_size
                                  defaults to token_dim (after that GQA rule).
  src/peft/peft_model.py          get_prompt: prefix KV .view(B, P, 2L, heads, td/heads).permute(2,0,3,1,4).split(2)
                                  -> per layer (key, value) [B, heads, P, hd] as past_key_values (DynamicCache);
                                  other methods: prompts = encoder output (inference_mode: embedding.weight),
                                  PeftModelForCausalLM.forward: inputs_embeds = cat(prompts, embed(ids)), labels
                                  prefixed with P x -100, position_ids ignored (the model counts 0..P+T-1);
                                  get_prompt_embedding_to_save: the encoder's output.
  src/peft/tuners/tuners_utils.py BasePromptEncoder._get_adapter_state_dict / _load_adapter_state_dict: the file holds
                                  one tensor, `prompt_embeddings`, loaded into embedding.weight.
  Loading here follows PeftModel.from_pretrained (inference_mode): the saved prompt_embeddings are used as they are
  (prompts [P, d] for PROMPT_TUNING / P_TUNING of any encoder type; prefix KV [P, L*2*td] for PREFIX_TUNING with or
  without prefix_projection). tiny_models.CausalLM.forward(prompts=, prefix=) runs them; SequenceLM.forward returns
  the real positions' logits only (webtune's loss: hf_causal_lm_loss over the real tokens).
Bottleneck adapters (webtune's own files, names after AdapterHub `adapters`, src/adapters/methods/modeling.py
Adapter: adapter_down = Sequential(Linear(d, r), act), adapter_up = Linear(r, d)): on the output y of o_proj /
attn.c_proj (attention_adapter, only when mh_adapter) and of down_proj / mlp.c_proj (output_adapter),
y' = y + adapter_up(act(adapter_down(y))); act relu | swish (SiLU) | gelu_new. adapter_config.json
{"webtune_method": "bottleneck", "variant", "bottleneck_size", "non_linearity", "mh_adapter", "output_adapter",
"layers_to_transform", "base_model_name_or_path"}; keys <layer path>.<attention_adapter|output_adapter>.
adapter_down.0.weight [r, d] / adapter_down.0.bias [r] / adapter_up.weight [d, r] / adapter_up.bias [d], layer path
model.layers.<l> (llama, qwen2) or transformer.h.<l> (gpt2), no base_model.model. prefix.

UniPELT (webtune's own files; issue-18 spec): Mao et al. 2022, "UniPELT: A Unified Framework for Parameter-Efficient
Language Model Tuning", arXiv 2110.07577, section 3: LoRA, prefix tuning and a bottleneck adapter in every layer, each
behind a learned sigmoid gate. Transcribed after AdapterHub `adapters` (read at commit
88f18ebd6c127f0e0ddf7c76cb84b37a39b82c12):
  src/adapters/configuration/adapter_config.py  UniPELTConfig = ConfigUnion(PrefixTuningConfig(prefix_length=10),
                                  SeqBnConfig(reduction_factor=16), LoRAConfig(r=8, alpha=2)), each .replace(use_gating=
                                  True).
  src/adapters/methods/lora.py    LoRA.__init__: gate = nn.Linear(in, gating_heads=1); forward: (x A^T) B^T times
                                  gate = mean_over_seq(sigmoid(gate(layer_input))), and `* self.scaling` only WITHOUT
                                  gating.
  src/adapters/methods/prefix_tuning.py  PrefixTuningLayer.add_adapter: gate = nn.Linear(hidden, 1 if shared_gating
                                  else 2); compose_single: gate_output = mean(sigmoid(gate(residual_input)), dim=1)
                                  (residual_input = the attention's input hidden states), prefix_keys *= gate[:, 0],
                                  prefix_values *= gate[:, -1], then cat(prefix, keys) before the softmax.
  src/adapters/methods/modeling.py Adapter.__init__ (use_gating): gate = nn.Linear(input_size, 1); forward: output =
                                  up(down(x)) * scaling times mean_over_seq(sigmoid(gate(x))), x the adapter's input;
                                  src/adapters/methods/bottleneck.py places SeqBn (Pfeiffer) after the MLP output.
Where webtune departs (the spec is binding): every gate is PER TOKEN (no mean over the sequence: that would let a
token's gate see later tokens, impossible for a causal LM and for generation); the LoRA branch keeps s = alpha / r under
its gate (y = base(x) + g_L * s * (x A^T) B^T) with LoRA's defaults r 8, alpha 16 and targets; the prefix has two
gates (key, value: shared_gating false) read from the normed attention input n1 and no projection (a plain table
`prefix.embedding.weight` [P, L*2*kvw] in prefix tuning's column layout); the adapter's gate reads the adapter's input y
(the MLP output incl. bias): y' = y + g_A * up(act(down(y))). Gated attention: tiny_models.CausalLM.
gated_prefix_attention (direct form); keys (no base_model.model. prefix): <module>.lora_A.weight [r, in],
<module>.lora_B.weight [out, r], <module>.lora_gate.weight [1, in], <module>.lora_gate.bias [1];
<layer>.prefix_gate.weight [2, d] / .bias [2]; <layer>.output_adapter.{adapter_down.0.weight [rb, d],
adapter_down.0.bias [rb], adapter_up.weight [d, rb], adapter_up.bias [d], gate.weight [1, d], gate.bias [1]}.
adapter_config.json {"webtune_method": "unipelt", "r", "lora_alpha", "target_modules", "num_virtual_tokens",
"bottleneck_size", "non_linearity", "base_model_name_or_path"}. Gated LoRA and gated adapters cannot be merged
(input-dependent gates).
"""
import json
import os
import re

import torch
import torch.nn.functional as F

from tiny_models import CausalLM, gelu_new, lora_scale, read_safetensors

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
        if isinstance(ad, Bottleneck):  # y' = y + up(act(down(y))) on the module's output (bias included)
            return ad(base(x))
        if isinstance(ad, GatedLoRA):  # UniPELT: base(x) + g_L(x) * s * lora_B(lora_A(x)), g_L per token
            return base(x) + ad.gate(x) * ad.scale * F.linear(F.linear(x, ad.a), ad.b)
        if isinstance(ad, GatedBottleneck):  # UniPELT: y + g_A(y) * up(act(down(y))), g_A per token
            return ad(base(x))
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


# ----------------------------------------------------------------------------- prompt learning, bottleneck adapters

PROMPT_LEARNING = {"PROMPT_TUNING": "prompt-tuning", "P_TUNING": "p-tuning", "PREFIX_TUNING": "prefix-tuning"}
ACTIVATIONS = {"relu": F.relu, "swish": F.silu, "gelu_new": gelu_new}
BOTTLENECK_PARTS = ("adapter_down.0.weight", "adapter_down.0.bias", "adapter_up.weight", "adapter_up.bias")


def model_dims(config):
    """(d, layers, heads, kv heads, head_dim) of a llama / qwen2 / gpt2 config.json."""
    if config["model_type"] == "gpt2":
        d, nh = config["n_embd"], config["n_head"]
        return d, config["n_layer"], nh, nh, d // nh
    d, nh = config["hidden_size"], config["num_attention_heads"]
    return d, config["num_hidden_layers"], nh, config["num_key_value_heads"], config.get("head_dim") or d // nh


def prefix_token_dim(config):
    """PEFT _prepare_prompt_learning_config for PREFIX_TUNING: (token_dim, num_attention_heads): kv width and kv heads
    when config.json has num_key_value_heads (GQA rule), else (d, heads)."""
    d, _, nh, _, hd = model_dims(config)
    if "num_key_value_heads" in config:
        return hd * config["num_key_value_heads"], config["num_key_value_heads"]
    return d, nh


def p_tuning_prompts(tv):
    """p_tuning/model.py PromptEncoder.forward, MLP: mlp_head(embedding.weight) -> [P, d]."""
    x = tv["prompt_encoder.embedding.weight"]
    for i in (0, 2, 4):
        x = F.linear(x, tv[f"prompt_encoder.mlp_head.{i}.weight"], tv[f"prompt_encoder.mlp_head.{i}.bias"])
        if i != 4:
            x = F.relu(x)
    return x


def prefix_projection_kv(tv):
    """prefix_tuning/model.py PrefixEncoder.forward with prefix_projection: transform(embedding.weight), [P, L*2*td]."""
    x = F.linear(tv["prompt_encoder.embedding.weight"], tv["prompt_encoder.transform.0.weight"],
                 tv["prompt_encoder.transform.0.bias"])
    return F.linear(torch.tanh(x), tv["prompt_encoder.transform.2.weight"], tv["prompt_encoder.transform.2.bias"])


def prefix_layers(kv, num_layers, heads, head_dim):
    """The spec's column layout of the prefix KV [P, L*2*td]: layer l's keys are columns 2l*td .. (2l+1)*td, its
    values (2l+1)*td .. (2l+2)*td, kv head j at j*hd .. (j+1)*hd within each. Returns [(key, value)] per layer, each
    [1, heads, P, hd] (tiny_models.CausalLM.forward's `prefix`)."""
    p, td = kv.shape[0], heads * head_dim
    assert kv.shape[1] == num_layers * 2 * td, (tuple(kv.shape), num_layers, td)

    def block(i):
        return kv[:, i * td:(i + 1) * td].reshape(p, heads, head_dim).transpose(0, 1)[None]

    return [(block(2 * l), block(2 * l + 1)) for l in range(num_layers)]


class Bottleneck:
    def __init__(self, down_w, down_b, up_w, up_b, non_linearity):
        self.down_w, self.down_b, self.up_w, self.up_b = down_w, down_b, up_w, up_b
        self.act = ACTIVATIONS[non_linearity]

    def __call__(self, y):
        return y + F.linear(self.act(F.linear(y, self.down_w, self.down_b)), self.up_w, self.up_b)


def bottleneck_layer_path(model_type, layer):
    return f"transformer.h.{layer}" if model_type == "gpt2" else f"model.layers.{layer}"


def bottleneck_site(model_type, layer, kind):
    """The module whose output an adapter rewrites: attention_adapter -> o_proj / attn.c_proj, output_adapter ->
    down_proj / mlp.c_proj."""
    lp = bottleneck_layer_path(model_type, layer)
    if kind == "attention_adapter":
        return f"{lp}.attn.c_proj" if model_type == "gpt2" else f"{lp}.self_attn.o_proj"
    if kind == "output_adapter":
        return f"{lp}.mlp.c_proj" if model_type == "gpt2" else f"{lp}.mlp.down_proj"
    raise ValueError(kind)


def bottleneck_keys(model_type, layers, kinds):
    return [f"{bottleneck_layer_path(model_type, l)}.{kind}.{part}" for l in layers for kind in kinds
            for part in BOTTLENECK_PARTS]


def bottleneck_adapters(model_type, tensors, layers, kinds, non_linearity):
    """{module path: Bottleneck} from tensors under the spec's keys."""
    out = {}
    for l in layers:
        for kind in kinds:
            k = f"{bottleneck_layer_path(model_type, l)}.{kind}."
            out[bottleneck_site(model_type, l, kind)] = Bottleneck(*(tensors[k + part] for part in BOTTLENECK_PARTS),
                                                                   non_linearity)
    return out


class SequenceLM(MethodLM):
    """A model with PEFT prompt-learning inputs: `prompts` [P, d] (prompt tuning, P-tuning) or `prefix` (per-layer
    (key, value), prefix tuning). forward returns the logits of the real positions only, [B, T, V]."""

    def __init__(self, config, params, prompts=None, prefix=None, adapters=None):
        super().__init__(config, params, adapters)
        self.prompts, self.prefix = prompts, prefix

    def forward_all(self, input_ids, lora=None):
        """Logits at every position the base model runs (P virtual + T real for prompts; T for a prefix)."""
        return CausalLM.forward(self, input_ids, lora, prompts=self.prompts, prefix=self.prefix)

    def forward(self, input_ids, lora=None):
        logits = self.forward_all(input_ids, lora)
        return logits if self.prompts is None else logits[:, self.prompts.shape[-2]:]


# ----------------------------------------------------------------------------- UniPELT (see the module doc)

UNIPELT_ADAPTER_PARTS = BOTTLENECK_PARTS + ("gate.weight", "gate.bias")
LORA_DEFAULT_TARGETS = {"llama": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"], "gpt2": ["c_attn"]}


def sigmoid_gate(x, w, b):
    """sigma(x w^T + c): [..., gates], one set per token (AdapterHub then averages over the sequence; webtune not)."""
    return torch.sigmoid(F.linear(x, w, b))


class GatedLoRA:
    def __init__(self, a, b, gate_w, gate_b, scale):
        self.a, self.b, self.gate_w, self.gate_b, self.scale = a, b, gate_w, gate_b, scale

    def gate(self, x):
        return sigmoid_gate(x, self.gate_w, self.gate_b)  # [B, S, 1]


class GatedBottleneck(Bottleneck):
    def __init__(self, down_w, down_b, up_w, up_b, gate_w, gate_b, non_linearity):
        super().__init__(down_w, down_b, up_w, up_b, non_linearity)
        self.gate_w, self.gate_b = gate_w, gate_b

    def __call__(self, y):
        g = sigmoid_gate(y, self.gate_w, self.gate_b)  # [B, S, 1]
        return y + g * F.linear(self.act(F.linear(y, self.down_w, self.down_b)), self.up_w, self.up_b)


def unipelt_kv_width(config):
    """kvw = kv heads * head_dim (d on GPT-2) and the kv head count."""
    _, _, nh, nkv, hd = model_dims(config)
    return nkv * hd, nkv


def unipelt_lora_paths(model, targets):
    return target_modules(model, targets)


def unipelt_shapes(model, cfg):
    """{key: shape} of a UniPELT file for this model and config, in webtune's order: the prefix table, then per layer
    each LoRA target (module order), the prefix gate and the output adapter."""
    d, num_layers, _, _, _ = model_dims(model.config)
    kvw, _ = unipelt_kv_width(model.config)
    r, rb, p = cfg["r"], cfg["bottleneck_size"], cfg["num_virtual_tokens"]
    shapes = {"prefix.embedding.weight": (p, num_layers * 2 * kvw)}
    module_shapes = model.module_shapes()
    paths = unipelt_lora_paths(model, cfg["target_modules"])
    for l in range(num_layers):
        lp = bottleneck_layer_path(model.type, l)
        for path in paths:
            if layer_index(path) != l:
                continue
            fin, fout, _ = module_shapes[path]
            shapes.update({f"{path}.lora_A.weight": (r, fin), f"{path}.lora_B.weight": (fout, r),
                           f"{path}.lora_gate.weight": (1, fin), f"{path}.lora_gate.bias": (1,)})
        shapes[f"{lp}.prefix_gate.weight"] = (2, d)
        shapes[f"{lp}.prefix_gate.bias"] = (2,)
        ad = f"{lp}.output_adapter."
        shapes.update({ad + "adapter_down.0.weight": (rb, d), ad + "adapter_down.0.bias": (rb,),
                       ad + "adapter_up.weight": (d, rb), ad + "adapter_up.bias": (d,), ad + "gate.weight": (1, d),
                       ad + "gate.bias": (1,)})
    return shapes


class UniPELTLM(SequenceLM):
    """LoRA + prefix + Pfeiffer adapter, each behind per-token gates (issue-18 spec). forward gives [B, T, V]."""

    def __init__(self, config, params, cfg, tensors):
        probe = CausalLM(config, params)
        _, num_layers, _, _, hd = model_dims(config)
        _, nkv = unipelt_kv_width(config)
        s = lora_scale(cfg["r"], cfg["lora_alpha"], False)
        adapters = {}
        for path in unipelt_lora_paths(probe, cfg["target_modules"]):
            adapters[path] = GatedLoRA(tensors[f"{path}.lora_A.weight"], tensors[f"{path}.lora_B.weight"],
                                       tensors[f"{path}.lora_gate.weight"], tensors[f"{path}.lora_gate.bias"], s)
        for l in range(num_layers):
            ad = f"{bottleneck_layer_path(probe.type, l)}.output_adapter."
            adapters[bottleneck_site(probe.type, l, "output_adapter")] = GatedBottleneck(
                *(tensors[ad + part] for part in UNIPELT_ADAPTER_PARTS), cfg["non_linearity"])
        prefix = prefix_layers(tensors["prefix.embedding.weight"], num_layers, nkv, hd)
        super().__init__(config, params, prefix=prefix, adapters=adapters)
        self.gates = [(tensors[f"{bottleneck_layer_path(probe.type, l)}.prefix_gate.weight"],
                       tensors[f"{bottleneck_layer_path(probe.type, l)}.prefix_gate.bias"]) for l in range(num_layers)]

    def prefix_gate(self, layer, x):
        """(gk, gv) [B, S] each = sigma(n1 W_P^T + c_P), n1 the attention's (normed) input."""
        g = sigmoid_gate(x, *self.gates[layer])
        return g[..., 0], g[..., 1]

    def forward_all(self, input_ids, lora=None):
        return CausalLM.forward(self, input_ids, lora, prefix=self.prefix, prefix_gate=self.prefix_gate)


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
    if cfg.get("webtune_method") == "bottleneck":
        return "bottleneck"
    if cfg.get("webtune_method") == "unipelt":
        return "unipelt"
    pt = cfg.get("peft_type")
    if pt in PROMPT_LEARNING:
        return PROMPT_LEARNING[pt]
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
    if method in PROMPT_LEARNING.values():
        return _apply_prompt_learning(config, params, cfg, tensors, method)
    if method == "bottleneck":
        return _apply_bottleneck(config, params, cfg, tensors)
    if method == "unipelt":
        return _apply_unipelt(config, params, cfg, tensors)
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


def _check_field(cfg, name, expected):
    if cfg.get(name) is not None and cfg[name] != expected:
        raise ValueError(f"adapter_config.json {name}={cfg[name]!r} does not fit this model (expected {expected!r})")


def _apply_prompt_learning(config, params, cfg, tensors, method):
    """PeftModel.from_pretrained semantics (inference_mode): the file's prompt_embeddings are used as they are."""
    if set(tensors) != {"prompt_embeddings"}:
        raise ValueError(f"{cfg['peft_type']} files hold exactly `prompt_embeddings`, got {sorted(tensors)}")
    emb = tensors["prompt_embeddings"]
    if (cfg.get("num_transformer_submodules") or 1) != 1:
        raise ValueError("num_transformer_submodules must be 1 (decoder-only models)")
    p = cfg["num_virtual_tokens"]
    d, num_layers, _, _, hd = model_dims(config)
    _check_field(cfg, "num_layers", num_layers)
    if method == "prefix-tuning":
        td, heads = prefix_token_dim(config)
        _check_field(cfg, "token_dim", td)
        _check_field(cfg, "num_attention_heads", heads)
        if tuple(emb.shape) != (p, num_layers * 2 * td):
            raise ValueError(f"prompt_embeddings {tuple(emb.shape)}, expected [{p}, {num_layers * 2 * td}]")
        return SequenceLM(config, params, prefix=prefix_layers(emb, num_layers, heads, hd))
    _check_field(cfg, "token_dim", d)
    if tuple(emb.shape) != (p, d):
        raise ValueError(f"prompt_embeddings {tuple(emb.shape)}, expected [{p}, {d}]")
    return SequenceLM(config, params, prompts=emb)


def _apply_bottleneck(config, params, cfg, tensors):
    model_type = config["model_type"]
    d, num_layers, _, _, _ = model_dims(config)
    act = cfg.get("non_linearity")
    if act not in ACTIVATIONS:
        raise ValueError(f"non_linearity {act!r} is not one of {sorted(ACTIVATIONS)}")
    variant, mh = cfg.get("variant"), bool(cfg.get("mh_adapter"))
    if variant not in ("houlsby", "pfeiffer") or mh != (variant == "houlsby"):
        raise ValueError(f"variant {variant!r} with mh_adapter {cfg.get('mh_adapter')!r}: houlsby has mh_adapter true,"
                         " pfeiffer false")
    if cfg.get("output_adapter") is False:
        raise ValueError("output_adapter false is not a webtune bottleneck variant")
    layers = cfg.get("layers_to_transform") or list(range(num_layers))
    if any(not 0 <= l < num_layers for l in layers):
        raise ValueError(f"layers_to_transform {layers} outside 0..{num_layers - 1}")
    kinds = (["attention_adapter"] if mh else []) + ["output_adapter"]
    expected = bottleneck_keys(model_type, layers, kinds)
    if set(tensors) != set(expected):
        raise ValueError(f"bottleneck keys: missing {sorted(set(expected) - set(tensors))}, "
                         f"unexpected {sorted(set(tensors) - set(expected))}")
    r = cfg["bottleneck_size"]
    shapes = {"adapter_down.0.weight": (r, d), "adapter_down.0.bias": (r,), "adapter_up.weight": (d, r),
              "adapter_up.bias": (d,)}
    for l in layers:
        for kind in kinds:
            for part, want in shapes.items():
                k = f"{bottleneck_layer_path(model_type, l)}.{kind}.{part}"
                if tuple(tensors[k].shape) != want:
                    raise ValueError(f"{k}: shape {tuple(tensors[k].shape)}, expected {list(want)}")
    return MethodLM(config, params, bottleneck_adapters(model_type, tensors, layers, kinds, act))


def _apply_unipelt(config, params, cfg, tensors):
    """webtune's UniPELT folder: every key and shape checked against unipelt_shapes."""
    for field in ("r", "lora_alpha", "target_modules", "num_virtual_tokens", "bottleneck_size", "non_linearity"):
        if cfg.get(field) is None:
            raise ValueError(f"unipelt adapter_config.json lacks {field}")
    if cfg["non_linearity"] not in ACTIVATIONS:
        raise ValueError(f"non_linearity {cfg['non_linearity']!r} is not one of {sorted(ACTIVATIONS)}")
    probe = CausalLM(config, params)
    if not unipelt_lora_paths(probe, cfg["target_modules"]):
        raise ValueError(f"target_modules {cfg['target_modules']} match no module of this model")
    expected = unipelt_shapes(probe, cfg)
    if set(tensors) != set(expected):
        raise ValueError(f"unipelt keys: missing {sorted(set(expected) - set(tensors))}, "
                         f"unexpected {sorted(set(tensors) - set(expected))}")
    for k, want in expected.items():
        if tuple(tensors[k].shape) != want:
            raise ValueError(f"{k}: shape {tuple(tensors[k].shape)}, expected {list(want)}")
    return UniPELTLM(config, params, cfg, tensors)
