#!/usr/bin/python3
"""Goldens for UniPELT (webtune `method: 'unipelt'`, the issue-18 spec) on the tiny models: Mao et al. 2022,
"UniPELT: A Unified Framework for Parameter-Efficient Language Model Tuning", arXiv 2110.07577, section 3 (LoRA,
prefix tuning and a bottleneck adapter in every layer, each behind a learned sigmoid gate), transcribed in plain
torch after AdapterHub `adapters` (configuration/adapter_config.py UniPELTConfig, methods/lora.py LoRA,
methods/prefix_tuning.py PrefixTuningLayer, methods/modeling.py Adapter, methods/bottleneck.py; the citations and
where webtune departs are in peft_methods.py's module doc). webtune's departures, binding in the spec: every gate is
per token (AdapterHub averages each gate over the sequence, `torch.mean(gate, dim=1)`, which a causal LM cannot do);
two prefix gates (key, value) read from the normed attention input; LoRA keeps s = alpha / r under its gate; the
prefix is a plain table (no projection). The forward is peft_methods.UniPELTLM on tiny_models.py (HF eager
semantics) with its `prefix=` / `prefix_gate=` hooks (CausalLM.gated_prefix_attention: the direct formula). Fixed
seeds: reruns give identical bytes.

Writes packages/model/test/fixtures/goldens/unipelt-{tiny-llama,tiny-gpt2}.json:
  {generatedBy, model, notes, inputIds, labels (from goldens/<model>.json), variants: [
     {name, method: 'unipelt', config (webtune's adapter_config.json), tensors {key: f32}, grads {key: d loss / d
      tensor, every tensor}, savedTensors {key: f32} (= tensors: the file holds exactly the trainable tensors),
      logits [2, 16, V] (real positions), loss}]}
Variants: unipelt (r 4, alpha 8, P 5, rb 8, relu), unipelt-swish (r 4, alpha 8, P 3, rb 4, swish); LoRA targets are
LoRA's defaults (q_proj, v_proj on tiny-llama, GQA 4/2; the fused c_attn on tiny-gpt2). Loss: hf_causal_lm_loss(real
logits, labels), f32, on the stored weights upcast to f32.

Checks on every generation (assert, then discarded):
  * central finite differences in float64 of the largest-|grad| entry of every tensor and random entries of three
    more (the prefix table, a LoRA gate weight, the last adapter gate bias);
  * the direct gated attention equals the two-pass form webtune computes (O_p, lse_p over the prefix with gk-scaled
    queries; causal O_r, lse_r; w = sigmoid(lse_p - lse_r); out = w*gv*O_p + (1-w)*O_r): on random float64 tensors
    (value and autograd gradients of q, k, v, the prefix and both gates, to 1e-12), and in the whole model (logits
    and every tensor's gradient);
  * all gate biases +40 (every gate ~1): the logits equal LoRA + prefix tuning + a Pfeiffer bottleneck adapter,
    ungated, composed from the existing per-method code paths (peft_methods.LoRA, prefix_layers and SequenceLM's
    prefix hook, Bottleneck);
  * all gate biases -40 (every gate ~0): LoRA and the adapter vanish, but the prefix does not: with gk = 0 every
    prefix score is 0, not -inf, so the P prefix rows keep softmax weight e^0 each while gv = 0 zeroes their values
    (two-pass: w = sigmoid(log P - lse_r)). The logits equal the base model with P all-zero prefix key/value rows
    per layer (prefix tuning with a zero table); they are NOT the base model's (asserted different);
  * a round trip through an adapter folder (config + savedTensors) read back by check_method_adapter.py: same
    logits (all of them) and loss.

Run: cd scripts && /usr/bin/python3 make_unipelt_fixtures.py
"""
import math

import torch
import torch.nn.functional as F

import check_method_adapter
import peft_methods
from fixture_io import b64, write_fixture
from make_prompt_method_fixtures import FIX, MODELS, ce64, gen, linear_init, load
from peft_methods import (LORA_DEFAULT_TARGETS, UNIPELT_ADAPTER_PARTS, Bottleneck, LoRA, SequenceLM, UniPELTLM,
                          bottleneck_layer_path, bottleneck_site, model_dims, prefix_layers, sigmoid_gate,
                          unipelt_kv_width, unipelt_lora_paths, unipelt_shapes)
from tiny_models import CausalLM, hf_causal_lm_loss, lora_scale

GEN = "scripts/make_unipelt_fixtures.py"
LORA_B_STD, GATE_W_STD, GATE_B_STD = 0.05, 0.15, 1.0
BN_DOWN_STD, BN_UP_STD, BN_BIAS_STD = 0.3, 0.05, 0.02
VARIANTS = [("unipelt", dict(r=4, alpha=8, p=5, rb=8, act="relu")),
            ("unipelt-swish", dict(r=4, alpha=8, p=3, rb=4, act="swish"))]
NOTES = {
    "method": "UniPELT (Mao et al. 2022, arXiv 2110.07577 section 3; AdapterHub UniPELTConfig) with PER-TOKEN gates "
              "(AdapterHub averages each gate over the sequence; a causal LM cannot). sigma = logistic sigmoid. "
              "Every layer: gated LoRA on the target linears, a gated prefix in attention, a gated adapter after "
              "the MLP output projection.",
    "lora": "y = x W^T + b + g_L * s * (x A^T) B^T, g_L = sigma(x lora_gate.weight^T + lora_gate.bias) [B,T,1], x the "
            "linear's input, s = lora_alpha / r. Targets: q_proj, v_proj (tiny-llama) / the fused c_attn (tiny-gpt2, "
            "in 64, out 192).",
    "prefix": "prefix.embedding.weight [P, L*2*kvw] (kvw = kv heads * head_dim: 32 on tiny-llama, 64 on tiny-gpt2): "
              "layer l's keys at columns 2l*kvw.., values at (2l+1)*kvw.., kv head j at j*hd.. within (prefix "
              "tuning's layout; no RoPE on them). (gk, gv) = sigma(n1 prefix_gate.weight^T + prefix_gate.bias) per "
              "token, n1 the normed attention input (input_layernorm / ln_1 output). Real query i, any head: "
              "s_ij = scale*gk_i*(q_i.Pk_j) on prefix rows, scale*(q_i.k_j) on real keys j<=i; out_i = (sum_P e^s "
              "gv_i Pv_j + sum_{j<=i} e^s v_j) / sum e^s. Two-pass form (checked equal in value and gradients): O_p, "
              "lse_p over the prefix with gk-scaled queries, causal O_r, lse_r, w = sigma(lse_p - lse_r), out = "
              "w*gv*O_p + (1-w)*O_r. Real token t at position P+t (RoPE angle, GPT-2 wpe row).",
    "adapter": "y' = y + g_A * adapter_up(act(adapter_down.0(y))), g_A = sigma(y gate.weight^T + gate.bias) per "
               "token, y the MLP output incl. its bias (down_proj / mlp.c_proj); then the residual add.",
    "gatesAtExtremes": "Checked on generation: all gate biases +40 reproduce LoRA + prefix tuning + Pfeiffer adapter "
                       "ungated. All gate biases -40 do NOT reproduce the base model: gk = 0 makes the prefix scores "
                       "0 (not -inf), so the P prefix rows keep softmax weight 1 each with zeroed values; that equals "
                       "the base model with P all-zero prefix key/value rows per layer (checked).",
    "values": "Not the spec's init (which has B = 0 and so no gradient for A or the LoRA gate): prefix N(0,1); "
              "lora_A U(+-1/sqrt(in)) (PEFT kaiming-uniform); lora_B N(0, 0.05^2); adapter_down.0.weight N(0, 0.3^2), "
              "adapter_up.weight N(0, 0.05^2), both adapter biases N(0, 0.02^2) (as the bottleneck goldens); every "
              "gate weight N(0, 0.15^2) and gate bias N(0, 1), so the gates spread over (0, 1) instead of sitting "
              "at 0.5 (N(0, 0.5^2) weights saturate about half the tokens' gates on these inputs, whose rms is ~1). "
              "tensors = savedTensors, in webtune's order (prefix table; per layer: LoRA modules, prefix gate, "
              "adapter).",
    "loss": "loss = hf_causal_lm_loss(real logits [B,T,V], labels): mean CE over the real tokens (as prefix tuning).",
    "logits": "Real positions only, [2, 16, V]; f32 on the stored weights upcast to f32.",
}


def unipelt_config(name, model_type, h):
    return {"webtune_method": "unipelt", "r": h["r"], "lora_alpha": h["alpha"], "target_modules":
            list(LORA_DEFAULT_TARGETS[model_type]), "num_virtual_tokens": h["p"], "bottleneck_size": h["rb"],
            "non_linearity": h["act"], "base_model_name_or_path": name}


def init_tensors(model, cfg, g):
    """Values for every key of unipelt_shapes (see NOTES.values), drawn in the file's key order."""
    out = {}
    for key, shape in unipelt_shapes(model, cfg).items():
        if key == "prefix.embedding.weight":
            out[key] = torch.randn(*shape, generator=g)
        elif key.endswith(".lora_A.weight"):
            out[key] = linear_init(shape[0], shape[1], g)[0]
        elif key.endswith(".lora_B.weight"):
            out[key] = torch.randn(*shape, generator=g) * LORA_B_STD
        elif key.endswith("gate.weight"):
            out[key] = torch.randn(*shape, generator=g) * GATE_W_STD
        elif key.endswith("gate.bias"):
            out[key] = torch.randn(*shape, generator=g) * GATE_B_STD
        elif key.endswith("adapter_down.0.weight"):
            out[key] = torch.randn(*shape, generator=g) * BN_DOWN_STD
        elif key.endswith("adapter_up.weight"):
            out[key] = torch.randn(*shape, generator=g) * BN_UP_STD
        elif key.endswith(("adapter_down.0.bias", "adapter_up.bias")):
            out[key] = torch.randn(*shape, generator=g) * BN_BIAS_STD
        else:
            raise KeyError(key)
    return out


# ----------------------------------------------------------------------------- the two-pass form

def two_pass_attention(q, k, v, npre, gk, gv, scale):
    """What webtune computes: attention over the prefix alone with gk-scaled queries (all rows visible) and causal
    attention over the real keys alone, each with its log-sum-exp, merged by w = sigmoid(lse_p - lse_r)."""
    s = q.shape[2]
    sm = torch.promote_types(q.dtype, torch.float32)
    pk, pv, rk, rv = k[..., :npre, :], v[..., :npre, :], k[..., npre:, :], v[..., npre:, :]
    sp = (torch.matmul(q * gk[:, None, :, None].to(q.dtype), pk.transpose(-1, -2)) * scale).to(sm)
    lse_p = torch.logsumexp(sp, -1, keepdim=True)
    o_p = torch.matmul(torch.softmax(sp, -1).to(q.dtype), pv)
    sr = (torch.matmul(q, rk.transpose(-1, -2)) * scale).to(sm)
    sr = sr.masked_fill(~torch.tril(torch.ones(s, s, dtype=torch.bool)), float("-inf"))
    lse_r = torch.logsumexp(sr, -1, keepdim=True)
    o_r = torch.matmul(torch.softmax(sr, -1).to(q.dtype), rv)
    w = torch.sigmoid(lse_p - lse_r).to(q.dtype)
    return w * gv[:, None, :, None].to(q.dtype) * o_p + (1 - w) * o_r


class TwoPassUniPELTLM(UniPELTLM):
    def gated_prefix_attention(self, q, k, v, npre, gk, gv, scale):
        return two_pass_attention(q, k, v, npre, gk, gv, scale)


def two_pass_op_check(g):
    """Direct (CausalLM.gated_prefix_attention) vs two-pass on random float64 tensors: values and the autograd
    gradients of q, k (prefix and real rows), v and both gates for a random cotangent."""
    b, h, s, p, hd = 2, 3, 7, 4, 5
    q, k, v = (torch.randn(b, h, n, hd, generator=g, dtype=torch.float64) for n in (s, p + s, p + s))
    gk, gv = (torch.rand(b, s, generator=g, dtype=torch.float64) for _ in range(2))
    cot = torch.randn(b, h, s, hd, generator=g, dtype=torch.float64)
    outs = []
    for f in (lambda *a: CausalLM.gated_prefix_attention(None, *a), two_pass_attention):
        xs = [t.clone().requires_grad_() for t in (q, k, v, gk, gv)]
        o = f(xs[0], xs[1], xs[2], p, xs[3], xs[4], hd ** -0.5)
        (o * cot).sum().backward()
        outs.append([o.detach()] + [x.grad for x in xs])
    worst = max((a - c).abs().max().item() for a, c in zip(*outs))
    assert worst < 1e-12, worst
    # and the formula itself, spelled out per query with explicit sums
    o = outs[0][0]
    for bi, hi, i in ((0, 0, 0), (1, 2, s - 1), (0, 1, 3)):
        sc = [hd ** -0.5 * gk[bi, i] * (q[bi, hi, i] @ k[bi, hi, j]) for j in range(p)]
        sc += [hd ** -0.5 * (q[bi, hi, i] @ k[bi, hi, p + j]) for j in range(i + 1)]
        e = torch.stack(sc).exp()
        ref = (sum(e[j] * gv[bi, i] * v[bi, hi, j] for j in range(p))
               + sum(e[p + j] * v[bi, hi, p + j] for j in range(i + 1))) / e.sum()
        worst = max(worst, (ref - o[bi, hi, i]).abs().max().item())
    assert worst < 1e-12, worst
    return worst


# ----------------------------------------------------------------------------- checks

def run(model_cls, model, cfg, tv, ids, labels, params=None):
    """(logits, loss, {key: grad}) with fresh leaves."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in tv.items()}
    logits = model_cls(model.config, params if params is not None else model.p, cfg, leaves).forward(ids)
    loss = hf_causal_lm_loss(logits, labels)
    loss.backward()
    return logits.detach(), loss.detach(), {k: v.grad.detach().clone() for k, v in leaves.items()}


def two_pass_model_check(model, cfg, tv, ids, labels, logits, grads):
    logits2, _, grads2 = run(TwoPassUniPELTLM, model, cfg, tv, ids, labels)
    dl = (logits2 - logits).abs().max().item()
    dg = max(((grads2[k] - grads[k]).abs().max() / grads[k].abs().max().clamp_min(1e-12)).item() for k in grads)
    assert dl < 1e-5 and dg < 1e-4, (dl, dg)
    return dl, dg


def with_gate_biases(tv, value):
    return {k: (torch.full_like(v, value) if k.endswith("gate.bias") else v) for k, v in tv.items()}


def composed_ungated(model, cfg, tv):
    """LoRA + prefix tuning + Pfeiffer adapter, ungated, from the existing per-method code paths."""
    _, num_layers, _, _, hd = model_dims(model.config)
    _, nkv = unipelt_kv_width(model.config)
    s = lora_scale(cfg["r"], cfg["lora_alpha"], False)
    adapters = {p: LoRA(tv[f"{p}.lora_A.weight"], tv[f"{p}.lora_B.weight"], s)
                for p in unipelt_lora_paths(model, cfg["target_modules"])}
    for l in range(num_layers):
        ad = f"{bottleneck_layer_path(model.type, l)}.output_adapter."
        adapters[bottleneck_site(model.type, l, "output_adapter")] = Bottleneck(
            *(tv[ad + part] for part in UNIPELT_ADAPTER_PARTS[:4]), cfg["non_linearity"])
    prefix = prefix_layers(tv["prefix.embedding.weight"], num_layers, nkv, hd)
    return SequenceLM(model.config, model.p, prefix=prefix, adapters=adapters)


def gate_extremes_check(model, cfg, tv, ids):
    """+40: every gate is 1 in f32 -> LoRA + prefix + adapter ungated. -40: every gate ~0 -> the base model with P
    all-zero prefix key/value rows per layer (not the base model itself; see the module doc)."""
    _, num_layers, _, _, hd = model_dims(model.config)
    _, nkv = unipelt_kv_width(model.config)
    high, low = with_gate_biases(tv, 40.0), with_gate_biases(tv, -40.0)
    assert float(gate_values(model, cfg, high, ids).min()) == 1.0
    assert float(gate_values(model, cfg, low, ids).max()) < 1e-12
    with torch.no_grad():
        a = UniPELTLM(model.config, model.p, cfg, high).forward(ids)
        d_up = (a - composed_ungated(model, cfg, tv).forward(ids)).abs().max().item()
        assert d_up < 1e-5, d_up
        b = UniPELTLM(model.config, model.p, cfg, low).forward(ids)
        zero = torch.zeros_like(tv["prefix.embedding.weight"])
        zero_prefix = SequenceLM(model.config, model.p, prefix=prefix_layers(zero, num_layers, nkv, hd)).forward(ids)
        d_low = (b - zero_prefix).abs().max().item()
        assert d_low < 1e-5, d_low
        from_base = (b - model.forward(ids)).abs().max().item()
        assert from_base > 1e-2, from_base  # the zero-value prefix still takes softmax mass
    return d_up, d_low, from_base


def finite_difference_check(model, cfg, ids, labels, tv, grads, g):
    """Central differences in float64 (tiny_models keeps RMSNorm in float32, hence the 1e-2 step and the loose
    tolerance, as make_prompt_method_fixtures.py); a mismatch is retried at 1e-3 and 1e-4 (ReLU kinks)."""
    params64 = {k: v.double() for k, v in model.p.items()}
    tv64 = {k: v.detach().double() for k, v in tv.items()}
    keys = list(tv)
    picks = [(k, int(grads[k].abs().argmax())) for k in keys]
    extra = ["prefix.embedding.weight", next(k for k in keys if k.endswith("lora_gate.weight")),
             [k for k in keys if k.endswith("output_adapter.gate.bias")][-1]]
    picks += [(k, int(torch.randint(grads[k].numel(), (1,), generator=g))) for k in extra]
    worst = 0.0

    def quotient(key, idx, h):
        vals = []
        for sign in (1, -1):
            t = dict(tv64)
            t[key] = tv64[key].clone()
            t[key].view(-1)[idx] += sign * h
            with torch.no_grad():
                vals.append(float(ce64(UniPELTLM(model.config, params64, cfg, t).forward(ids), labels)))
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
            raise AssertionError((key, idx, an, tried))
        worst = max(worst, abs(fd - an))
        if len(tried) > 1:
            print(f"    {key}[{idx}]: fd {tried} vs {an:.6g} (kink within the larger steps)")
    return worst


def gate_values(model, cfg, tv, ids):
    """Every gate value of a forward (LoRA, prefix key/value, adapter gates), flattened."""
    seen = []

    def spy(x, w, b):
        out = sigmoid_gate(x, w, b)
        seen.append(out.detach().reshape(-1))
        return out

    peft_methods.sigmoid_gate = spy  # GatedLoRA, GatedBottleneck and UniPELTLM.prefix_gate look it up at call time
    try:
        with torch.no_grad():
            UniPELTLM(model.config, model.p, cfg, tv).forward(ids)
    finally:
        peft_methods.sigmoid_gate = sigmoid_gate
    return torch.cat(seen)


# ----------------------------------------------------------------------------- main

def variant(model, name, vname, h, ids, labels, seed, g):
    cfg = unipelt_config(name, model.type, h)
    tv = init_tensors(model, cfg, gen(seed))
    logits, loss, grads = run(UniPELTLM, model, cfg, tv, ids, labels)
    assert logits.shape == (ids.shape[0], ids.shape[1], model.lm_head_weight().shape[0]), logits.shape
    assert list(grads) == list(tv) and all(torch.isfinite(v).all() and v.abs().max() > 0 for v in grads.values())
    loss = float(loss)

    dl, dg = two_pass_model_check(model, cfg, tv, ids, labels, logits, grads)
    d_up, d_low, from_base = gate_extremes_check(model, cfg, tv, ids)
    fd_err = finite_difference_check(model, cfg, ids, labels, tv, grads, g)
    out_rt, back = check_method_adapter.roundtrip(cfg, tv, name)
    rt = (back - logits).abs().max().item()
    assert out_rt["method"] == "unipelt" and rt < 1e-5 and abs(out_rt["loss"] - loss) < 1e-5, (rt, out_rt["loss"], loss)
    gates = gate_values(model, cfg, tv, ids)
    gmin, gmean, gmax = float(gates.min()), float(gates.mean()), float(gates.max())
    inside = float(((gates > 0.1) & (gates < 0.9)).double().mean())
    assert 0.1 < inside < 0.95 and gmin < 0.1 and gmax > 0.9, (gmin, gmax, inside)
    print(f"  {vname:14s} loss {loss:.6f}  tensors {len(tv):2d}  gates min/mean/max {gmin:.3f}/{gmean:.3f}/"
          f"{gmax:.3f}, {inside:.0%} in (0.1, 0.9)\n                 |two-pass| {dl:.1e} (grads rel {dg:.1e})  "
          f"|+40 - ungated| {d_up:.1e}  |-40 - zero prefix| {d_low:.1e} (vs base {from_base:.2f})  "
          f"fd err {fd_err:.1e}  |round trip| {rt:.1e}")
    enc = {k: b64(v, "f32") for k, v in tv.items()}
    return {"name": vname, "method": "unipelt", "config": cfg, "tensors": enc,
            "grads": {k: b64(v, "f32") for k, v in grads.items()}, "savedTensors": dict(enc),
            "logits": b64(logits, "f32"), "loss": loss}


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    print(f"two-pass vs direct gated attention (float64, values and gradients): {two_pass_op_check(gen(7)):.1e}")
    for name, seed in MODELS:
        config, params, ids, labels = load(name)
        model = CausalLM(config, params)
        print(name)
        g = gen(seed + 50)
        variants = [variant(model, name, vname, h, ids, labels, seed * 10 + 20 + i, g)
                    for i, (vname, h) in enumerate(VARIANTS)]
        write_fixture(f"{FIX}/goldens/unipelt-{name}.json", GEN, {
            "model": name, "notes": NOTES, "inputIds": ids.tolist(), "labels": labels.tolist(),
            "variants": variants})


if __name__ == "__main__":
    main()
