#!/usr/bin/python3
"""Goldens for the sequence methods (PEFT prompt tuning, P-tuning, prefix tuning) and webtune's bottleneck adapters
on the tiny models, following the issue-18 spec. The formulas are transcribed from huggingface/peft in
peft_methods.py (files cited there: tuners/prompt_tuning/model.py, tuners/p_tuning/model.py,
tuners/prefix_tuning/model.py, peft_model.py get_prompt / PeftModelForCausalLM.forward, utils/other.py
_prepare_prompt_learning_config); the base models run through tiny_models.py (HF eager semantics) with its
`prompts=` / `prefix=` hooks. Fixed seeds: reruns give identical bytes.

Writes packages/model/test/fixtures/goldens/prompt-methods-{tiny-llama,tiny-gpt2}.json:
  {generatedBy, model, notes, inputIds, labels (from goldens/<model>.json), variants: [
     {name, method: prompt-tuning | p-tuning | prefix-tuning | bottleneck, config (adapter_config.json as PEFT /
      webtune writes it), tensors {trainable key: f32}, grads {key: d loss / d tensor}, savedTensors {file key: f32},
      logits [2, 16, V] (real positions only), loss, (prompt-tuning / p-tuning) peftLoss,
      (prompt-text) initTokenIds}]}
Variants: prompt-random, prompt-text, p-tuning, prefix, prefix-projection, bottleneck-houlsby, bottleneck-pfeiffer,
bottleneck-top-layer. Loss: hf_causal_lm_loss(real logits, labels), f32, on the stored weights upcast to f32.

Checks on every generation (assert, then discarded):
  * central finite differences in float64 of the largest-|grad| entry of every tensor and one random entry of the
    middle tensor of every variant;
  * prompt tuning / P-tuning: the adapted logits equal the untouched base forward on an extended vocabulary whose
    rows V..V+P-1 are the prompts, run on ids cat(V..V+P-1, ids) with its own positions 0..P+T-1 (so the real token
    t sits at position P+t and the virtual tokens are ordinary causal tokens), sliced to the real positions and the
    first V logits; prompt-text also equals the base model on cat(the repeated init ids, ids);
  * prefix tuning: the adapted logits (spec column layout + tiny_models' prefix hook) equal a second, explicit
    formulation: PEFT get_prompt's view/permute/split into past_key_values, transformers' cache_position
    arange(P, P+T) for RoPE / wpe and a full boolean [T, P+T] mask (key j visible iff j <= cache_position[i]);
  * bottleneck: zero adapter_up weight and bias give the base model's logits exactly;
  * a round trip through an adapter folder (config + savedTensors) read back by check_method_adapter.py: same
    logits (all of them) and loss.

Run: cd scripts && /usr/bin/python3 make_prompt_method_fixtures.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F

import check_method_adapter
from fixture_io import ROOT, b64, write_fixture
from peft_methods import (BOTTLENECK_PARTS, MethodLM, SequenceLM, bottleneck_adapters, bottleneck_layer_path,
                          model_dims, p_tuning_prompts, prefix_layers, prefix_projection_kv, prefix_token_dim)
from tiny_models import (CausalLM, hf_causal_lm_loss, load_hf_model_dir, load_tokenizer, repeat_kv, rms_norm,
                         rope_inv_freq, rotate_half)

FIX = "packages/model/test/fixtures"
GEN = "scripts/make_prompt_method_fixtures.py"
MODELS = [("tiny-llama", 8001), ("tiny-gpt2", 8003)]
INIT_TEXT = " the whale"          # the tiny tokenizer (no BOS) encodes it as exactly these three ids
INIT_TOKEN_IDS = [261, 466, 281]  # ' the', ' wha', 'le'
BN_DOWN_STD, BN_UP_STD, BN_BIAS_STD = 0.3, 0.05, 0.02
NOTES = {
    "positions": "Real token t has position P+t for every sequence method (RoPE angle, GPT-2 wpe row). Prompt tuning "
                 "/ P-tuning: inputs_embeds = cat(prompts, embed(ids)) with positions 0..P+T-1 (GPT-2 adds wpe[0..P) "
                 "to the prompts), ordinary causal tokens. Prefix tuning: per layer P key and P value rows before "
                 "the real ones (no RoPE on them), every real query sees all P of them plus real keys 0..t.",
    "loss": "loss = hf_causal_lm_loss(real logits [B,T,V], labels): mean CE over the real tokens only. peftLoss "
            "(prompt tuning / P-tuning only) is what PEFT's PeftModelForCausalLM.forward computes with labels "
            "cat([-100]*P, labels) on all P+T logits; it differs from loss here because labels[1][0] != -100 "
            "(PEFT then also trains the last virtual position to predict the first real token). Prefix tuning has "
            "no label shift in PEFT: its loss is PEFT's.",
    "logits": "Real positions only, [2, 16, V]; f32 on the stored weights upcast to f32.",
    "prompt-tuning": "tensors/savedTensors: prompt_embeddings [P, d]. prompt-random: N(0,1) (nn.Embedding default). "
                     "prompt-text: rows of the input embedding matrix at initTokenIds repeated ceil(P/3) times and "
                     "cut to P ([a,b,c,a,b,c,a]), copied as f32 (PEFT TEXT init); not perturbed.",
    "p-tuning": "MLP encoder, encoder_hidden_size h = d: prompts = L4(relu(L2(relu(L0(E))))). embedding N(0,1), "
                "linears nn.Linear default init U(+-1/sqrt(fan_in)) for weight and bias. savedTensors "
                "prompt_embeddings = the encoder output [P, d] (PEFT get_prompt_embedding_to_save).",
    "prefix-tuning": "KV [P, L*2*td]: columns 2l*td..(2l+1)*td layer l's keys, (2l+1)*td..(2l+2)*td its values, kv "
                     "head j at j*hd..(j+1)*hd within (PEFT view [P, 2L, heads, hd]). td = kv width and "
                     "num_attention_heads = kv heads when config.json has num_key_value_heads (PEFT GQA rule; "
                     "tiny-llama: td 32, 2 heads), else d and the heads (tiny-gpt2: 64, 4). prefix: "
                     "prompt_encoder.embedding.weight = KV, N(0,1). prefix-projection: embedding [P, td] N(0,1), "
                     "transform.0 Linear(td, 32), transform.2 Linear(32, L*2*td), nn.Linear default init, KV = "
                     "transform.2(tanh(transform.0(E))). savedTensors prompt_embeddings = KV (the projection's "
                     "output when projecting; PEFT inference_mode loads it as embedding.weight).",
    "bottleneck": "y' = y + adapter_up(act(adapter_down.0(y))) on the output y of o_proj / attn.c_proj "
                  "(attention_adapter, houlsby only) and of down_proj / mlp.c_proj (output_adapter), biases included; "
                  "then the block's residual adds. Values are NOT the spec's init (weights N(0,0.02^2), biases 0): "
                  "adapter_down.0.weight ~ N(0, 0.3^2) so the activation's input is O(1) (relu / swish / gelu_new "
                  "distinguishable), adapter_up.weight ~ N(0, 0.05^2), both biases ~ N(0, 0.02^2), so every "
                  "gradient is informative. tensors = savedTensors (webtune's file keys).",
    "values": "Prompt and prefix embeddings are N(0,1) as PEFT initialises them (not scaled: the tiny models' "
              "attention stays non-degenerate with them).",
}


def gen(seed):
    return torch.Generator().manual_seed(seed)


def load(name):
    config, params = load_hf_model_dir(os.path.join(ROOT, FIX, "models", name))
    with open(os.path.join(ROOT, FIX, "goldens", f"{name}.json")) as f:
        g = json.load(f)
    return config, params, torch.tensor(g["inputIds"]), torch.tensor(g["labels"])


def linear_init(fan_out, fan_in, g):
    """torch.nn.Linear.reset_parameters: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)) weight, same bound bias."""
    bound = 1 / math.sqrt(fan_in)
    w = (torch.rand(fan_out, fan_in, generator=g) * 2 - 1) * bound
    b = (torch.rand(fan_out, generator=g) * 2 - 1) * bound
    return w, b


def embed_key(model):
    return "transformer.wte.weight" if model.type == "gpt2" else "model.embed_tokens.weight"


# ----------------------------------------------------------------------------- configs

def peft_config(peft_type, name, config, p, token_dim, heads, own):
    """PEFT's adapter_config.json (PeftConfig + PromptLearningConfig fields after _prepare_prompt_learning_config,
    inference_mode true as save_pretrained writes it; peft_version left out) plus the method's own fields."""
    _, num_layers, _, _, _ = model_dims(config)
    cfg = {"task_type": "CAUSAL_LM", "peft_type": peft_type, "auto_mapping": None, "base_model_name_or_path": name,
           "revision": None, "inference_mode": True, "num_virtual_tokens": p, "token_dim": token_dim,
           "num_transformer_submodules": 1, "num_attention_heads": heads, "num_layers": num_layers,
           "modules_to_save": None}
    cfg.update(own)
    return cfg


def bottleneck_config(name, variant, r, act, layers):
    return {"webtune_method": "bottleneck", "variant": variant, "bottleneck_size": r, "non_linearity": act,
            "mh_adapter": variant == "houlsby", "output_adapter": True, "layers_to_transform": layers,
            "base_model_name_or_path": name}


# ----------------------------------------------------------------------------- variants
# Each spec: dict(name, method, config, init {key: tensor}, build(params, tv) -> model whose forward gives the real
# logits, saved(tv) -> {file key: tensor}, prompts(tv) (prompt methods) or kv(tv) (prefix), extra fields).

def prompt_tuning_spec(model, name, variant, p, g):
    d, _, nh, _, _ = model_dims(model.config)
    if variant == "prompt-random":
        init = {"prompt_embeddings": torch.randn(p, d, generator=g)}
        own = {"prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": None, "tokenizer_name_or_path": None,
               "tokenizer_kwargs": None}
        extra = {}
    else:
        ids = (INIT_TOKEN_IDS * math.ceil(p / len(INIT_TOKEN_IDS)))[:p]  # prompt_tuning/model.py TEXT init
        init = {"prompt_embeddings": model.p[embed_key(model)][torch.tensor(ids)].detach().clone().float()}
        own = {"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": INIT_TEXT, "tokenizer_name_or_path": name,
               "tokenizer_kwargs": None}
        extra = {"initTokenIds": INIT_TOKEN_IDS}
    prompts = lambda tv: tv["prompt_embeddings"]  # noqa: E731
    return dict(name=variant, method="prompt-tuning", init=init, extra=extra, prompts=prompts,
                config=peft_config("PROMPT_TUNING", name, model.config, p, d, nh, own),
                saved=lambda tv: {"prompt_embeddings": prompts(tv)},
                build=lambda params, tv: SequenceLM(model.config, params, prompts=prompts(tv)))


def p_tuning_spec(model, name, p, g):
    d, _, nh, _, _ = model_dims(model.config)
    h = d  # encoder_hidden_size default (_prepare_prompt_learning_config)
    init = {"prompt_encoder.embedding.weight": torch.randn(p, d, generator=g)}
    for i, (fo, fi) in zip((0, 2, 4), ((h, d), (h, h), (d, h))):
        w, b = linear_init(fo, fi, g)
        init[f"prompt_encoder.mlp_head.{i}.weight"] = w
        init[f"prompt_encoder.mlp_head.{i}.bias"] = b
    own = {"encoder_reparameterization_type": "MLP", "encoder_hidden_size": h, "encoder_num_layers": 2,
           "encoder_dropout": 0.0}
    return dict(name="p-tuning", method="p-tuning", init=init, extra={}, prompts=p_tuning_prompts,
                config=peft_config("P_TUNING", name, model.config, p, d, nh, own),
                saved=lambda tv: {"prompt_embeddings": p_tuning_prompts(tv)},
                build=lambda params, tv: SequenceLM(model.config, params, prompts=p_tuning_prompts(tv)))


def prefix_spec(model, name, variant, p, projection, g, hidden=32):
    _, num_layers, _, _, hd = model_dims(model.config)
    td, heads = prefix_token_dim(model.config)
    if projection:
        init = {"prompt_encoder.embedding.weight": torch.randn(p, td, generator=g)}
        for i, (fo, fi) in zip((0, 2), ((hidden, td), (num_layers * 2 * td, hidden))):
            w, b = linear_init(fo, fi, g)
            init[f"prompt_encoder.transform.{i}.weight"] = w
            init[f"prompt_encoder.transform.{i}.bias"] = b
        kv = prefix_projection_kv
    else:
        hidden = td  # encoder_hidden_size default: token_dim after the GQA rule
        init = {"prompt_encoder.embedding.weight": torch.randn(p, num_layers * 2 * td, generator=g)}
        kv = lambda tv: tv["prompt_encoder.embedding.weight"]  # noqa: E731
    own = {"init_weights": None, "encoder_hidden_size": hidden, "prefix_projection": projection}
    return dict(name=variant, method="prefix-tuning", init=init, extra={}, kv=kv,
                config=peft_config("PREFIX_TUNING", name, model.config, p, td, heads, own),
                saved=lambda tv: {"prompt_embeddings": kv(tv)},
                build=lambda params, tv: SequenceLM(model.config, params,
                                                    prefix=prefix_layers(kv(tv), num_layers, heads, hd)))


def bottleneck_spec(model, name, variant_name, variant, r, act, layers, g):
    d, num_layers, _, _, _ = model_dims(model.config)
    use = layers if layers else list(range(num_layers))
    kinds = (["attention_adapter"] if variant == "houlsby" else []) + ["output_adapter"]
    draws = {"adapter_down.0.weight": ((r, d), BN_DOWN_STD), "adapter_down.0.bias": ((r,), BN_BIAS_STD),
             "adapter_up.weight": ((d, r), BN_UP_STD), "adapter_up.bias": ((d,), BN_BIAS_STD)}
    init = {}
    for l in use:
        for kind in kinds:
            for part in BOTTLENECK_PARTS:
                shape, std = draws[part]
                init[f"{bottleneck_layer_path(model.type, l)}.{kind}.{part}"] = torch.randn(*shape, generator=g) * std
    return dict(name=variant_name, method="bottleneck", init=init, extra={},
                config=bottleneck_config(name, variant, r, act, layers),
                saved=lambda tv: dict(tv),
                build=lambda params, tv: MethodLM(model.config, params,
                                                  bottleneck_adapters(model.type, tv, use, kinds, act)))


def specs(model, name, seed):
    return [
        prompt_tuning_spec(model, name, "prompt-random", 5, gen(seed + 1)),
        prompt_tuning_spec(model, name, "prompt-text", 7, gen(seed + 2)),
        p_tuning_spec(model, name, 5, gen(seed + 3)),
        prefix_spec(model, name, "prefix", 7, False, gen(seed + 4)),
        prefix_spec(model, name, "prefix-projection", 7, True, gen(seed + 5)),
        bottleneck_spec(model, name, "bottleneck-houlsby", "houlsby", 8, "swish", None, gen(seed + 6)),
        bottleneck_spec(model, name, "bottleneck-pfeiffer", "pfeiffer", 8, "relu", None, gen(seed + 7)),
        bottleneck_spec(model, name, "bottleneck-top-layer", "houlsby", 4, "gelu_new", [1], gen(seed + 8)),
    ]


# ----------------------------------------------------------------------------- independent formulations

def extended_vocab_logits(model, ids, prompts):
    """Prompt tuning as plain tokens: P extra rows V..V+P-1 of the input embedding hold the prompts and the untouched
    base forward runs on cat(V..V+P-1, ids) (its own positions 0..P+T-1). Real positions, first V logits."""
    v, p = model.lm_head_weight().shape[0], prompts.shape[0]
    params = dict(model.p)
    params[embed_key(model)] = torch.cat([params[embed_key(model)], prompts.detach()], dim=0)
    ext = torch.cat([torch.arange(v, v + p)[None].expand(ids.shape[0], p), ids], dim=1)
    with torch.no_grad():
        return CausalLM(model.config, params).forward(ext)[:, p:, :v]


def peft_past_key_values(kv, cfg, batch):
    """peft_model.py get_prompt, PREFIX_TUNING in inference_mode: embedding.weight.repeat(B, 1, 1).view(B, P, 2L,
    heads, td // heads).permute([2, 0, 3, 1, 4]).split(num_transformer_submodules * 2) -> per layer [2, B, heads, P,
    hd] = (key, value) (DynamicCache.from_legacy_cache)."""
    x = kv.repeat(batch, 1, 1).view(batch, cfg["num_virtual_tokens"], cfg["num_layers"] * 2,
                                   cfg["num_attention_heads"], cfg["token_dim"] // cfg["num_attention_heads"])
    return [(t[0], t[1]) for t in x.permute([2, 0, 3, 1, 4]).split(2)]


def explicit_prefix_logits(model, ids, past):
    """transformers' eager decoder loop with a DynamicCache pre-filled with `past`: cache_position = arange(P, P+T)
    drives RoPE (llama) or wpe (gpt2); key states = cat(past, new) along the sequence; the [T, P+T] mask is the
    boolean causal_mask_function(kv_idx <= cache_position[q_idx]) applied with masked_fill(-inf)."""
    c, p = model.config, model.p
    bsz, t = ids.shape
    d, num_layers, nh, nkv, hd = model_dims(c)
    npre = past[0][0].shape[2]
    cache_position = torch.arange(npre, npre + t)
    visible = torch.arange(npre + t)[None, :] <= cache_position[:, None]
    gpt2 = model.type == "gpt2"
    if gpt2:
        eps = c["layer_norm_epsilon"]
        h = p["transformer.wte.weight"][ids] + p["transformer.wpe.weight"][cache_position][None]
    else:
        eps = c["rms_norm_eps"]
        h = p["model.embed_tokens.weight"][ids]
        ang = cache_position.float()[:, None] * rope_inv_freq(c, hd)[None, :]
        cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    for l in range(num_layers):
        if gpt2:
            pre = f"transformer.h.{l}"
            x = F.layer_norm(h, (d,), p[f"{pre}.ln_1.weight"], p[f"{pre}.ln_1.bias"], eps)
            q, k, v = model.conv1d(x, f"{pre}.attn.c_attn", None).split(d, dim=2)
        else:
            pre = f"model.layers.{l}"
            x = rms_norm(h, p[f"{pre}.input_layernorm.weight"], eps)
            q, k, v = (model.linear(x, f"{pre}.self_attn.{n}_proj", None) for n in "qkv")
        q = q.reshape(bsz, t, nh, hd).transpose(1, 2)
        k = k.reshape(bsz, t, -1, hd).transpose(1, 2)
        v = v.reshape(bsz, t, -1, hd).transpose(1, 2)
        if not gpt2:
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = repeat_kv(torch.cat([past[l][0].to(k.dtype), k], dim=2), nh // nkv)
        v = repeat_kv(torch.cat([past[l][1].to(v.dtype), v], dim=2), nh // nkv)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
        o = (att @ v).transpose(1, 2).reshape(bsz, t, nh * hd)
        if gpt2:
            h = h + model.conv1d(o, f"{pre}.attn.c_proj", None)
            x = F.layer_norm(h, (d,), p[f"{pre}.ln_2.weight"], p[f"{pre}.ln_2.bias"], eps)
            x = model.conv1d(x, f"{pre}.mlp.c_fc", None)
            x = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
            h = h + model.conv1d(x, f"{pre}.mlp.c_proj", None)
        else:
            h = h + model.linear(o, f"{pre}.self_attn.o_proj", None)
            x = rms_norm(h, p[f"{pre}.post_attention_layernorm.weight"], eps)
            x = F.silu(model.linear(x, f"{pre}.mlp.gate_proj", None)) * model.linear(x, f"{pre}.mlp.up_proj", None)
            h = h + model.linear(x, f"{pre}.mlp.down_proj", None)
    if gpt2:
        h = F.layer_norm(h, (d,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], eps)
    else:
        h = rms_norm(h, p["model.norm.weight"], eps)
    return h @ model.lm_head_weight().T


# ----------------------------------------------------------------------------- checks

def ce64(logits, labels):
    """hf_causal_lm_loss without its float32 cast (finite differences in float64)."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=-100, reduction="mean")


def finite_difference_check(spec, model, ids, labels, tv, grads, g):
    """Central differences in float64 (as make_method_fixtures.py: tiny_models keeps RMSNorm and the llama softmax in
    float32, hence the 1e-2 step and the loose tolerance). A step that straddles a ReLU kink (P-tuning's MLP, the
    relu bottleneck) makes the difference quotient meaningless, so a mismatch at 1e-2 is retried at 1e-3 and 1e-4
    and the entry passes when any step agrees."""
    params64 = {k: v.double() for k, v in model.p.items()}
    tv64 = {k: v.detach().double() for k, v in tv.items()}
    keys = list(tv)
    picks = [(k, int(grads[k].abs().argmax())) for k in keys]
    mid = keys[len(keys) // 2]
    picks.append((mid, int(torch.randint(grads[mid].numel(), (1,), generator=g))))
    worst = 0.0

    def quotient(key, idx, h):
        vals = []
        for sign in (1, -1):
            t = dict(tv64)
            t[key] = tv64[key].clone()
            t[key].view(-1)[idx] += sign * h
            with torch.no_grad():
                vals.append(float(ce64(spec["build"](params64, t).forward(ids), labels)))
        return (vals[0] - vals[1]) / (2 * h)

    for key, idx in picks:
        an = float(grads[key].reshape(-1)[idx])
        tried = []
        for h in (1e-2, 1e-3, 1e-4):
            fd = quotient(key, idx, h)
            tried.append((h, fd))
            if abs(fd - an) < 2e-4 + 5e-3 * abs(an):
                break
        else:
            raise AssertionError((spec["name"], key, idx, an, tried))
        worst = max(worst, abs(fd - an))
        if len(tried) > 1:
            print(f"    {spec['name']} {key}[{idx}]: fd {tried} vs {an:.6g} (kink within the larger steps)")
    return worst


def formulation_check(spec, model, ids, tv, logits):
    """Second formulations (see the module doc); returns the largest |logit difference|."""
    if spec["method"] in ("prompt-tuning", "p-tuning"):
        prompts = spec["prompts"](tv)
        diff = (extended_vocab_logits(model, ids, prompts) - logits).abs().max().item()
        if "initTokenIds" in spec["extra"]:
            p = prompts.shape[0]
            text = torch.tensor((INIT_TOKEN_IDS * p)[:p])[None].expand(ids.shape[0], p)
            with torch.no_grad():
                base = model.forward(torch.cat([text, ids], dim=1))[:, p:]
            diff = max(diff, (base - logits).abs().max().item())
        return diff
    if spec["method"] == "prefix-tuning":
        with torch.no_grad():
            past = peft_past_key_values(spec["kv"](tv), spec["config"], ids.shape[0])
            return (explicit_prefix_logits(model, ids, past) - logits).abs().max().item()
    zero = {k: (torch.zeros_like(v) if ".adapter_up." in k else v) for k, v in tv.items()}
    with torch.no_grad():
        a, b = spec["build"](model.p, zero).forward(ids), model.forward(ids)
    assert torch.equal(a, b), spec["name"]
    return 0.0


def adapter_folder_check(spec, name, saved, logits, loss):
    """config + savedTensors as an adapter folder, read back by check_method_adapter (PEFT inference semantics)."""
    out, back = check_method_adapter.roundtrip(spec["config"], saved, name)
    assert out["method"] == spec["method"], out["method"]
    diff = (back - logits).abs().max().item()
    assert diff < 1e-5 and abs(out["loss"] - loss) < 1e-5, (spec["name"], diff, out["loss"], loss)
    return diff


# ----------------------------------------------------------------------------- main

def variant(spec, model, name, ids, labels, g):
    tv = {k: v.clone().requires_grad_() for k, v in spec["init"].items()}
    m = spec["build"](model.p, tv)
    logits = m.forward(ids)
    loss = hf_causal_lm_loss(logits, labels)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in tv.items()}
    assert all(torch.isfinite(v).all() and v.abs().max() > 0 for v in grads.values()), spec["name"]
    logits, loss = logits.detach(), float(loss)
    tvd = {k: v.detach() for k, v in tv.items()}
    with torch.no_grad():
        saved = {k: v.detach().clone() for k, v in spec["saved"](tvd).items()}
    assert logits.shape == (ids.shape[0], ids.shape[1], model.lm_head_weight().shape[0]), logits.shape

    out = {"name": spec["name"], "method": spec["method"], "config": spec["config"],
           "tensors": {k: b64(v, "f32") for k, v in tvd.items()},
           "grads": {k: b64(v, "f32") for k, v in grads.items()},
           "savedTensors": {k: b64(v, "f32") for k, v in saved.items()},
           "logits": b64(logits, "f32"), "loss": loss}
    if spec["method"] in ("prompt-tuning", "p-tuning"):  # PEFT's own label shift (see notes.loss)
        p = spec["config"]["num_virtual_tokens"]
        with torch.no_grad():
            full = spec["build"](model.p, tvd).forward_all(ids)
        out["peftLoss"] = float(hf_causal_lm_loss(full, torch.cat([torch.full((ids.shape[0], p), -100), labels], 1)))
    out.update(spec["extra"])

    fdiff = formulation_check(spec, model, ids, tvd, logits)
    assert fdiff < 1e-5, (spec["name"], fdiff)
    fd_err = finite_difference_check(spec, model, ids, labels, tvd, grads, g)
    rt = adapter_folder_check(spec, name, saved, logits, loss)
    print(f"  {spec['name']:21s} loss {loss:.6f}  tensors {len(tvd):2d}  |2nd formulation| {fdiff:.2e}  "
          f"fd err {fd_err:.2e}  |round trip| {rt:.2e}")
    return out


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for name, seed in MODELS:
        config, params, ids, labels = load(name)
        tok = load_tokenizer(os.path.join(ROOT, FIX, "models", name, "tokenizer.json"))
        assert tok.encode(INIT_TEXT) == INIT_TOKEN_IDS, tok.encode(INIT_TEXT)
        model = CausalLM(config, params)
        print(name)
        g = gen(seed)
        variants = [variant(spec, model, name, ids, labels, g) for spec in specs(model, name, seed * 10)]
        write_fixture(f"{FIX}/goldens/prompt-methods-{name}.json", GEN, {
            "model": name, "notes": NOTES, "inputIds": ids.tolist(), "labels": labels.tolist(),
            "variants": variants})


if __name__ == "__main__":
    main()
