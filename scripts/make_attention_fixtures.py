"""RoPE, causal attention and cross-entropy goldens from PyTorch, written as HF transformers does it.

RoPE: inv_freq and cos/sin exactly as transformers' ROPE_INIT_FUNCTIONS ('default', 'linear',
'llama3') and LlamaRotaryEmbedding.forward compute them (float32 tensors throughout: inv_freq =
1 / base ** (arange(0, dim, 2) / dim), the llama3 wavelength blend, freqs = inv_freq @ positions,
cos/sin of the float32 angle), and apply_rotary_pos_emb's rotate_half. The backward of RoPE is
autograd's gradient of sum(rope(x) * upstream).

Attention: HF's eager_attention_forward in plain torch: repeat_kv (expand + reshape), scores =
q k^T * scale plus a causal mask (query i sees keys j <= positionOffset + i and j < seqKV), softmax in
float32, P v. lse = logsumexp of the masked scaled scores. dq, dk, dv from autograd of
sum(out * upstream). Rows of k/v past seqKV (a KV cache's unused capacity) hold large values that
must be ignored.

Prefix tuning (attentionPrefix, attentionPrefixF16): PEFT hands the P learned key/value rows of a
layer to transformers as past_key_values, so the keys are cat(prefix_k, k) (P + T rows per sequence)
and transformers' causal mask, offset by the cache length P, lets real query i see keys j <= P + i:
the cases above with seqKV = kvCapacity = P + T and positionOffset = P, forward and backward, dk/dv
over all P + T rows (the prefix rows' gradients are what prefix tuning trains). One case has keys past
P + T that no query sees (their dk/dv are 0).

The lse's gradient (attentionGradLse, attentionGradLseF16): a caller that uses the forward's lse (as
the merge below does) sends dL/dlse back into the attention backward. The cases add sum(lse *
upstreamLse) to the loss, so dq, dk, dv are autograd's of sum(out * upstream) + sum(lse *
upstreamLse): a causal case, a prefix with its tokens, and the prefix alone (seqKV = positionOffset =
P: every query sees every key, as UniPELT's prefix pass does).

Merge (merge, mergeF16): two attentions of the same queries over disjoint keys combined by their lse,
w = sigmoid(lseA - lseB) per (token, head), out = w * g * outA + (1 - w) * outB with g one column
(gateOffset) of an f32 [tokens, gateStride] gate; autograd of sum(out * upstream) gives gradOutA,
gradOutB, gradLseA, gradLseB and the gate column's gradient. lse differences include +-30 and +-100
(w within ulps of 0 or 1, where w (1 - w) must keep its digits) and 0.

End-to-end (asserted here, not written): UniPELT's gated prefix attention computed directly (prefix
scores scaled by gk, prefix values by gv, one softmax over prefix and causal keys) equals the two-pass
form (attention of gk * q over the prefix alone, causal attention over the real keys, merge with
gate gv), and its autograd gradients equal the ones webtune's kernels assemble: mergeBackward's
formulas, the FlashAttention-2 backward with gradLse for each pass, and gk's gradient as rowDot(dq of
the prefix pass, q) (float64).

Cross-entropy: torch.nn.functional.cross_entropy(reduction='mean', ignore_index=-100); per-row
losses from reduction='none' and the logits gradient from autograd of the mean, so the kernel's
gradScale is 1 / (number of rows not ignored). Targets are written as u32 with ignored rows as
0xffffffff, as the kernel reads them.

Half precision (ropeF16, attentionF16, crossEntropyF16): what the kernels do with dtype 'f16' --
storage in float16, arithmetic in float32. Inputs are rounded to float16, the reference is computed
in float32 from the rounded inputs, and the outputs the kernels store as f16 (rotated x, attention
out and its gradients, the logits gradient, merge's out and output gradients) are rounded to
float16; lse, losses, gates and their gradients stay float32. The attention backward here is
FlashAttention-2's formulas written out (dS = P (dO V^T - (delta - gradLse))) with delta =
rowsum(dO * out16) from the float16 out, as the kernel reads it; it is checked against autograd with
the float32 out first. Tensors the kernels hold as f16 are written as "f16" bytes.

Run: /usr/bin/python3 scripts/make_attention_fixtures.py
Writes packages/gpu/test/fixtures/attention.json.
"""
import base64
import math

import torch
import torch.nn.functional as F

from fixture_io import b64, write_fixture
from tiny_models import rope_inv_freq as hf_rope_inv_freq

IGNORE_U32 = 0xFFFFFFFF


def b16(t):
    """A float16 tensor (values already representable) as base64 of its little-endian binary16 bytes."""
    arr = t.detach().cpu().to(torch.float16).numpy()
    return {"dtype": "f16", "shape": list(arr.shape), "b64": base64.b64encode(arr.astype("<f2").tobytes()).decode()}


def half(t):
    """Round to float16 and back: the values an f16 tensor holds."""
    return t.detach().to(torch.float16).float()


# ---- RoPE (transformers.modeling_rope_utils, LlamaRotaryEmbedding) ----

def rope_inv_freq(base, dim, scaling):
    """inv_freq for webtune's camelCase scaling dict, through tiny_models' transcription of
    transformers' rope init functions (one implementation for every fixture)."""
    hf = None
    if scaling["type"] == "linear":
        hf = {"rope_type": "linear", "factor": scaling["factor"]}
    elif scaling["type"] == "llama3":
        hf = {"rope_type": "llama3", "factor": scaling["factor"], "low_freq_factor": scaling["lowFreqFactor"],
              "high_freq_factor": scaling["highFreqFactor"],
              "original_max_position_embeddings": scaling["originalMaxPositionEmbeddings"]}
    return hf_rope_inv_freq({"rope_theta": base, "rope_scaling": hf}, dim)


def rope_cos_sin(inv_freq, positions):
    """LlamaRotaryEmbedding.forward for position_ids `positions` (1-D), attention_scaling 1."""
    inv_freq_expanded = inv_freq[None, :, None].float()
    position_ids_expanded = positions[None, None, :].float()
    freqs = (inv_freq_expanded @ position_ids_expanded).transpose(1, 2)[0]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_case(name, g, head_dim, theta, scaling, table_positions, sample_positions, batch, seq, heads, offset):
    inv_freq = rope_inv_freq(theta, head_dim, scaling)
    half = head_dim // 2
    sample = torch.tensor(sample_positions, dtype=torch.int64)
    cos_s, sin_s = rope_cos_sin(inv_freq, sample)
    x = torch.randn(batch, seq, heads, head_dim, generator=g).requires_grad_()
    pos = torch.arange(offset, offset + seq, dtype=torch.int64)
    cos, sin = rope_cos_sin(inv_freq, pos)  # [seq, head_dim]
    rotated = x * cos[None, :, None, :] + rotate_half(x) * sin[None, :, None, :]
    upstream = torch.randn(batch, seq, heads, head_dim, generator=g)
    (rotated * upstream).sum().backward()
    rows = batch * seq
    return {
        "name": name, "headDim": head_dim, "theta": theta, "scaling": scaling, "positions": table_positions,
        "samplePositions": sample_positions, "invFreq": b64(inv_freq, "f32"),
        "cos": b64(cos_s[:, :half], "f32"), "sin": b64(sin_s[:, :half], "f32"),
        "rows": rows, "heads": heads, "seqLen": seq, "positionOffset": offset,
        "x": b64(x.reshape(rows, heads * head_dim), "f32"),
        "rotated": b64(rotated.reshape(rows, heads * head_dim), "f32"),
        "upstream": b64(upstream.reshape(rows, heads * head_dim), "f32"),
        "gradX": b64(x.grad.reshape(rows, heads * head_dim), "f32"),
    }


# ---- attention (HF eager_attention_forward) ----

def repeat_kv(hidden, n_rep):
    b, kvh, s, d = hidden.shape
    if n_rep == 1:
        return hidden
    return hidden[:, :, None, :, :].expand(b, kvh, n_rep, s, d).reshape(b, kvh * n_rep, s, d)


def attention_case(name, g, batch, seq_q, heads, kv_heads, head_dim, seq_kv=None, kv_capacity=None, offset=0, backward=True,
                   grad_lse=False):
    seq_kv = seq_q if seq_kv is None else seq_kv
    kv_capacity = seq_kv if kv_capacity is None else kv_capacity
    scale = 1 / math.sqrt(head_dim)
    q = torch.randn(batch, seq_q, heads, head_dim, generator=g)
    k_full = torch.randn(batch, kv_capacity, kv_heads, head_dim, generator=g)
    v_full = torch.randn(batch, kv_capacity, kv_heads, head_dim, generator=g)
    # Unused cache rows hold values that would dominate the softmax if they leaked in.
    k_full[:, seq_kv:] = 50.0
    v_full[:, seq_kv:] = 1000.0
    q.requires_grad_()
    k = k_full[:, :seq_kv].clone().requires_grad_()
    v = v_full[:, :seq_kv].clone().requires_grad_()

    query = q.transpose(1, 2)
    key = repeat_kv(k.transpose(1, 2), heads // kv_heads)
    value = repeat_kv(v.transpose(1, 2), heads // kv_heads)
    scores = torch.matmul(query, key.transpose(2, 3)) * scale
    i = torch.arange(seq_q)[:, None]
    j = torch.arange(seq_kv)[None, :]
    masked = j > offset + i
    scores = scores.masked_fill(masked, torch.finfo(torch.float32).min)
    lse = torch.logsumexp(scores, dim=-1)  # [batch, heads, seq_q]
    probs = F.softmax(scores, dim=-1, dtype=torch.float32)
    out = torch.matmul(probs, value).transpose(1, 2).reshape(batch * seq_q, heads * head_dim)
    doc = {
        "name": name, "batch": batch, "seqQ": seq_q, "seqKV": seq_kv, "kvCapacity": kv_capacity,
        "heads": heads, "kvHeads": kv_heads, "headDim": head_dim, "scale": scale, "positionOffset": offset,
        "q": b64(q.reshape(batch * seq_q, -1), "f32"),
        "k": b64(k_full.reshape(batch * kv_capacity, -1), "f32"),
        "v": b64(v_full.reshape(batch * kv_capacity, -1), "f32"),
        "out": b64(out, "f32"), "lse": b64(lse, "f32"),
    }
    if backward:
        upstream = torch.randn(batch * seq_q, heads * head_dim, generator=g)
        loss = (out * upstream).sum()
        if grad_lse:
            upstream_lse = torch.randn(batch, heads, seq_q, generator=g)
            loss = loss + (lse * upstream_lse).sum()
            doc["upstreamLse"] = b64(upstream_lse, "f32")
        loss.backward()
        doc.update({
            "upstream": b64(upstream, "f32"),
            "dq": b64(q.grad.reshape(batch * seq_q, -1), "f32"),
            "dk": b64(k.grad.reshape(batch * seq_kv, -1), "f32"),
            "dv": b64(v.grad.reshape(batch * seq_kv, -1), "f32"),
        })
    return doc


# ---- cross-entropy ----

def cross_entropy_case(name, g, rows, vocab, ignored, shift_rows=()):
    logits = torch.randn(rows, vocab, generator=g) * 3
    for r in shift_rows:
        logits[r] += 90.0  # exp() overflows float32 here unless the row max is subtracted first
    targets = torch.randint(0, vocab, (rows,), generator=g)
    for r in ignored:
        targets[r] = -100
    logits.requires_grad_()
    losses = F.cross_entropy(logits, targets, reduction="none", ignore_index=-100)
    loss = F.cross_entropy(logits, targets, reduction="mean", ignore_index=-100)
    loss.backward()
    counted = rows - len(ignored)
    return {
        "name": name, "rows": rows, "vocab": vocab,
        "targets": [IGNORE_U32 if int(t) == -100 else int(t) for t in targets],
        "gradScale": 1.0 / counted, "loss": float(loss),
        "logits": b64(logits, "f32"), "losses": b64(losses, "f32"), "gradLogits": b64(logits.grad, "f32"),
    }


# ---- half precision: f16 storage, f32 arithmetic ----

def rope_case_f16(name, g, head_dim, theta, scaling, batch, seq, heads, offset):
    inv_freq = rope_inv_freq(theta, head_dim, scaling)
    x = half(torch.randn(batch, seq, heads, head_dim, generator=g)).requires_grad_()
    pos = torch.arange(offset, offset + seq, dtype=torch.int64)
    cos, sin = rope_cos_sin(inv_freq, pos)
    rotated = x * cos[None, :, None, :] + rotate_half(x) * sin[None, :, None, :]
    upstream = half(torch.randn(batch, seq, heads, head_dim, generator=g))
    (rotated * upstream).sum().backward()
    rows = batch * seq
    flat = lambda t: t.reshape(rows, heads * head_dim)
    return {
        "name": name, "headDim": head_dim, "theta": theta, "scaling": scaling,
        "rows": rows, "heads": heads, "seqLen": seq, "positionOffset": offset,
        "x": b16(flat(x)), "rotated": b16(flat(rotated)), "upstream": b16(flat(upstream)), "gradX": b16(flat(x.grad)),
    }


def attention_backward(query, key, value, probs, grad_out, out, scale, kv_heads, grad_lse=None):
    """FlashAttention-2's backward on [batch, heads, seq, dim] tensors (key/value already repeated):
    dS = P (dO V^T - (rowsum(dO * out) - gradLse)); dq = scale dS K, dk = scale dS^T Q, dv = P^T dO,
    with dk and dv summed over each kv head's group of query heads. gradLse [batch, heads, seq] is
    dL/dlse (omitted: 0). Returns [batch, heads or kv_heads, seq, dim]."""
    delta = (grad_out * out).sum(-1, keepdim=True)
    if grad_lse is not None:
        delta = delta - grad_lse[..., None]
    ds = probs * (torch.matmul(grad_out, value.transpose(2, 3)) - delta)
    dq = torch.matmul(ds, key) * scale
    dk = torch.matmul(ds.transpose(2, 3), query) * scale
    dv = torch.matmul(probs.transpose(2, 3), grad_out)
    b, h, s, d = dk.shape
    group = lambda t: t.reshape(b, kv_heads, h // kv_heads, s, d).sum(2)
    return dq, group(dk), group(dv)


def attention_case_f16(name, g, batch, seq_q, heads, kv_heads, head_dim, seq_kv=None, kv_capacity=None, offset=0, backward=True,
                       grad_lse=False):
    seq_kv = seq_q if seq_kv is None else seq_kv
    kv_capacity = seq_kv if kv_capacity is None else kv_capacity
    scale = 1 / math.sqrt(head_dim)
    q = half(torch.randn(batch, seq_q, heads, head_dim, generator=g))
    k_full = half(torch.randn(batch, kv_capacity, kv_heads, head_dim, generator=g))
    v_full = half(torch.randn(batch, kv_capacity, kv_heads, head_dim, generator=g))
    k_full[:, seq_kv:] = 50.0
    v_full[:, seq_kv:] = 1000.0
    q.requires_grad_()
    k = k_full[:, :seq_kv].clone().requires_grad_()
    v = v_full[:, :seq_kv].clone().requires_grad_()

    query = q.transpose(1, 2)
    key = repeat_kv(k.transpose(1, 2), heads // kv_heads)
    value = repeat_kv(v.transpose(1, 2), heads // kv_heads)
    scores = torch.matmul(query, key.transpose(2, 3)) * scale
    i = torch.arange(seq_q)[:, None]
    j = torch.arange(seq_kv)[None, :]
    scores = scores.masked_fill(j > offset + i, torch.finfo(torch.float32).min)
    lse = torch.logsumexp(scores, dim=-1)
    probs = F.softmax(scores, dim=-1, dtype=torch.float32)
    out_bhsd = torch.matmul(probs, value)
    out = out_bhsd.transpose(1, 2).reshape(batch * seq_q, heads * head_dim)
    doc = {
        "name": name, "batch": batch, "seqQ": seq_q, "seqKV": seq_kv, "kvCapacity": kv_capacity,
        "heads": heads, "kvHeads": kv_heads, "headDim": head_dim, "scale": scale, "positionOffset": offset,
        "q": b16(q.reshape(batch * seq_q, -1)),
        "k": b16(k_full.reshape(batch * kv_capacity, -1)),
        "v": b16(v_full.reshape(batch * kv_capacity, -1)),
        "out": b16(half(out)), "lse": b64(lse, "f32"),
    }
    if backward:
        upstream = half(torch.randn(batch * seq_q, heads * head_dim, generator=g))
        loss = (out * upstream).sum()
        upstream_lse = None
        if grad_lse:
            upstream_lse = torch.randn(batch, heads, seq_q, generator=g)
            loss = loss + (lse * upstream_lse).sum()
            doc["upstreamLse"] = b64(upstream_lse, "f32")
        loss.backward()
        grad_out = upstream.reshape(batch, seq_q, heads, head_dim).transpose(1, 2)
        detached = [t.detach() for t in (query, key, value, probs, out_bhsd)]
        # The written-out backward with the float32 out is autograd's, to float32 rounding.
        check = attention_backward(*detached[:4], grad_out, detached[4], scale, kv_heads, upstream_lse)
        for mine, auto in zip(check, (q.grad.transpose(1, 2), k.grad.transpose(1, 2), v.grad.transpose(1, 2))):
            assert torch.allclose(mine, auto, atol=1e-5, rtol=1e-5), name
        dq, dk, dv = attention_backward(*detached[:4], grad_out, half(detached[4]), scale, kv_heads, upstream_lse)
        rows = lambda t, s: half(t.transpose(1, 2).reshape(batch * s, -1))
        doc.update({
            "upstream": b16(upstream),
            "dq": b16(rows(dq, seq_q)), "dk": b16(rows(dk, seq_kv)), "dv": b16(rows(dv, seq_kv)),
        })
    return doc


# ---- merge: two attentions over disjoint keys, combined by their lse (UniPELT's gated prefix) ----

def merge_formula(out_a, lse_a, out_b, lse_b, gate_column, batch, seq, heads, head_dim):
    """out = w g outA + (1 - w) outB, w = sigmoid(lseA - lseB) per (token, head); out_a/out_b
    [tokens, heads * head_dim], lse [batch, heads, seq], gate_column [tokens]."""
    w = torch.sigmoid(lse_a - lse_b).transpose(1, 2).reshape(batch * seq, heads, 1)
    a = out_a.reshape(batch * seq, heads, head_dim)
    b = out_b.reshape(batch * seq, heads, head_dim)
    out = w * gate_column[:, None, None] * a + (1 - w) * b
    return out.reshape(batch * seq, heads * head_dim)


def merge_case(name, g, batch, seq, heads, head_dim, gate_stride, gate_offset, grad_gate_stride, grad_gate_offset, f16=False):
    tokens = batch * seq
    act = half if f16 else (lambda t: t)
    store = b16 if f16 else (lambda t: b64(t, "f32"))
    store_out = (lambda t: b16(half(t))) if f16 else (lambda t: b64(t, "f32"))
    out_a = act(torch.randn(tokens, heads * head_dim, generator=g)).requires_grad_()
    out_b = act(torch.randn(tokens, heads * head_dim, generator=g)).requires_grad_()
    lse_a = torch.randn(batch, heads, seq, generator=g) * 3
    lse_b = torch.randn(batch, heads, seq, generator=g) * 3
    # Saturated weights (w within ulps of 1 or 0, or exactly so in float32) and an even split.
    extremes = [(30.0, 0.0), (0.0, 30.0), (100.0, -5.0), (-120.0, 2.0), (1.5, 1.5)]
    flat_a, flat_b = lse_a.view(-1), lse_b.view(-1)
    for i, (x, y) in enumerate(extremes[:flat_a.numel()]):
        flat_a[i * 3 % flat_a.numel()], flat_b[i * 3 % flat_a.numel()] = x, y
    lse_a.requires_grad_()
    lse_b.requires_grad_()
    # Gates are sigmoid outputs; the other columns hold values of their own, so a wrong column shows.
    gate = torch.sigmoid(torch.randn(tokens, gate_stride, generator=g) * 2).requires_grad_()
    upstream = act(torch.randn(tokens, heads * head_dim, generator=g))
    out = merge_formula(out_a, lse_a, out_b, lse_b, gate[:, gate_offset], batch, seq, heads, head_dim)
    (out * upstream).sum().backward()
    assert gate.grad[:, [c for c in range(gate_stride) if c != gate_offset]].abs().sum() == 0
    return {
        "name": name, "batch": batch, "seq": seq, "heads": heads, "headDim": head_dim,
        "gateStride": gate_stride, "gateOffset": gate_offset, "gradGateStride": grad_gate_stride, "gradGateOffset": grad_gate_offset,
        "outA": store(out_a), "outB": store(out_b), "lseA": b64(lse_a, "f32"), "lseB": b64(lse_b, "f32"),
        "gate": b64(gate, "f32"), "upstream": store(upstream),
        "out": store_out(out), "gradOutA": store_out(out_a.grad), "gradOutB": store_out(out_b.grad),
        "gradLseA": b64(lse_a.grad, "f32"), "gradLseB": b64(lse_b.grad, "f32"), "gradGate": b64(gate.grad[:, gate_offset], "f32"),
    }


def plain_attention(query, key, value, scale, mask=None):
    """[batch, heads, seq, dim] query against repeated key/value; mask True where a key is hidden.
    Returns out [batch, heads, seq, dim], lse [batch, heads, seq], probs."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scale
    if mask is not None:
        scores = scores.masked_fill(mask, torch.finfo(scores.dtype).min)
    probs = F.softmax(scores, dim=-1)
    return torch.matmul(probs, value), torch.logsumexp(scores, dim=-1), probs


def check_gated_prefix_two_pass():
    """Asserts (float64) that UniPELT's gated prefix attention, computed directly as the method
    defines it, equals webtune's two-pass form, and that its autograd gradients equal what the
    kernels assemble (mergeBackward, attention backward with gradLse, scaleRows and rowDot)."""
    g = torch.Generator().manual_seed(1818)
    batch, seq, heads, kv_heads, head_dim, prefix = 2, 6, 4, 2, 8, 3
    scale = 1 / math.sqrt(head_dim)
    rep = heads // kv_heads
    d64 = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)
    q = d64(batch, heads, seq, head_dim).requires_grad_()
    k = d64(batch, kv_heads, seq, head_dim).requires_grad_()
    v = d64(batch, kv_heads, seq, head_dim).requires_grad_()
    pk = d64(kv_heads, prefix, head_dim).requires_grad_()
    pv = d64(kv_heads, prefix, head_dim).requires_grad_()
    gk = torch.sigmoid(d64(batch, seq)).requires_grad_()
    gv = torch.sigmoid(d64(batch, seq)).requires_grad_()
    upstream = d64(batch, heads, seq, head_dim)
    causal = torch.arange(seq)[None, :] > torch.arange(seq)[:, None]
    key, value = repeat_kv(k, rep), repeat_kv(v, rep)
    pkey = repeat_kv(pk.expand(batch, -1, -1, -1), rep)
    pvalue = repeat_kv(pv.expand(batch, -1, -1, -1), rep)
    gk4, gv4 = gk[:, None, :, None], gv[:, None, :, None]

    # Direct: prefix scores scaled by gk_i, prefix values by gv_i, one softmax over all keys.
    s_p = scale * gk4 * torch.matmul(q, pkey.transpose(2, 3))
    s_r = (scale * torch.matmul(q, key.transpose(2, 3))).masked_fill(causal, torch.finfo(torch.float64).min)
    probs = F.softmax(torch.cat([s_p, s_r], dim=-1), dim=-1)
    direct = gv4 * torch.matmul(probs[..., :prefix], pvalue) + torch.matmul(probs[..., prefix:], value)
    grads = torch.autograd.grad((direct * upstream).sum(), [q, k, v, pk, pv, gk, gv])

    # Two passes and the merge, from detached inputs: the kernels' own chain rule, by hand.
    q0, key0, value0, pkey0, pvalue0 = (t.detach() for t in (q, key, value, pkey, pvalue))
    gk0, gv0 = gk.detach()[:, None, :, None], gv.detach()[:, None, :, None]
    q_p = gk0 * q0
    out_p, lse_p, probs_p = plain_attention(q_p, pkey0, pvalue0, scale)
    out_r, lse_r, probs_r = plain_attention(q0, key0, value0, scale, causal)
    w = torch.sigmoid(lse_p - lse_r)[..., None]
    merged = w * gv0 * out_p + (1 - w) * out_r
    assert torch.allclose(merged, direct.detach(), atol=1e-12, rtol=1e-12), "two-pass forward"
    # mergeBackward
    d = (upstream * (gv0 * out_p - out_r)).sum(-1)
    grad_lse_p = w[..., 0] * (1 - w[..., 0]) * d
    grad_out_p, grad_out_r = w * gv0 * upstream, (1 - w) * upstream
    grad_gv = (w * (upstream * out_p).sum(-1, keepdim=True)).sum(1)[..., 0]
    # attention backward with gradLse, each pass
    dq_p, dpk, dpv = attention_backward(q_p, pkey0, pvalue0, probs_p, grad_out_p, out_p, scale, kv_heads, grad_lse_p)
    dq_r, dk, dv = attention_backward(q0, key0, value0, probs_r, grad_out_r, out_r, scale, kv_heads, -grad_lse_p)
    # scaleRows (dq += gk * dq_p) and rowDot (dgk = sum over every head's columns of dq_p * q)
    dq = dq_r + gk0 * dq_p
    dgk = (dq_p * q0).sum(dim=(1, 3))
    # The prefix rows are shared by the batch: their gradient is the sum of the per-batch rows.
    mine = [dq, dk, dv, dpk.sum(0), dpv.sum(0), dgk, grad_gv]
    for label, a, b in zip(["q", "k", "v", "prefix k", "prefix v", "gk", "gv"], mine, grads):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10), f"two-pass gradient of {label}"



def cross_entropy_case_f16(name, g, rows, vocab, ignored, shift_rows=()):
    logits = torch.randn(rows, vocab, generator=g) * 3
    for r in shift_rows:
        logits[r] += 90.0
    logits = half(logits)
    targets = torch.randint(0, vocab, (rows,), generator=g)
    for r in ignored:
        targets[r] = -100
    logits.requires_grad_()
    losses = F.cross_entropy(logits, targets, reduction="none", ignore_index=-100)
    loss = F.cross_entropy(logits, targets, reduction="mean", ignore_index=-100)
    loss.backward()
    counted = rows - len(ignored)
    return {
        "name": name, "rows": rows, "vocab": vocab,
        "targets": [IGNORE_U32 if int(t) == -100 else int(t) for t in targets],
        "gradScale": 1.0 / counted, "loss": float(loss),
        "logits": b16(logits), "losses": b64(losses, "f32"), "gradLogits": b16(half(logits.grad)),
    }


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(11)
    llama3 = {"type": "llama3", "factor": 8.0, "lowFreqFactor": 1.0, "highFreqFactor": 4.0, "originalMaxPositionEmbeddings": 8192}
    llama3_small = {"type": "llama3", "factor": 8.0, "lowFreqFactor": 1.0, "highFreqFactor": 4.0, "originalMaxPositionEmbeddings": 64}
    small = list(range(16)) + [31, 63, 64, 100]
    large = small + [1000, 2047, 4096, 8191, 8192, 16383]
    rope = [
        rope_case("default theta 1e4, headDim 16, 2x7 rows", g, 16, 10000.0, {"type": "default"}, 40, small, 2, 7, 3, 0),
        rope_case("default theta 1e4, headDim 64, offset 5", g, 64, 10000.0, {"type": "default"}, 40, small, 2, 3, 2, 5),
        rope_case("llama3 theta 1e5 (8, 1, 4, 8192), headDim 64, offset 8188", g, 64, 100000.0, llama3, 16384, large, 1, 4, 2, 8188),
        rope_case("llama3 theta 1e4 (8, 1, 4, original 64), headDim 32", g, 32, 10000.0, llama3_small, 128, small, 2, 9, 2, 50),
        rope_case("linear factor 4, theta 1e4, headDim 32", g, 32, 10000.0, {"type": "linear", "factor": 4.0}, 128, small, 2, 9, 2, 3),
    ]
    attention = [
        attention_case("MHA 4 heads, headDim 16, batch 2, seq 1", g, 2, 1, 4, 4, 16),
        attention_case("MHA 2 heads, headDim 64, batch 2, seq 7", g, 2, 7, 2, 2, 64),
        attention_case("GQA 4/2, headDim 16, batch 2, seq 33", g, 2, 33, 4, 2, 16),
        attention_case("GQA 6/2, headDim 16, batch 2, seq 130", g, 2, 130, 6, 2, 16),
        attention_case("GQA 2/1, headDim 64, batch 2, seq 70", g, 2, 70, 2, 1, 64),
        attention_case("GQA 6/2, headDim 32, batch 2, seq 17", g, 2, 17, 6, 2, 32),
        attention_case("MHA 4 heads, headDim 32, batch 1, seq 20", g, 1, 20, 4, 4, 32),
        attention_case("GQA 2/1, headDim 128, batch 1, seq 24", g, 1, 24, 2, 1, 128),
        attention_case("GQA 4/2, headDim 80 (5 lanes a row), batch 1, seq 19", g, 1, 19, 4, 2, 80),
        attention_case("KV cache: 1 query at offset 19 of 20 keys, capacity 40, GQA 4/2", g, 2, 1, 4, 2, 16,
                       seq_kv=20, kv_capacity=40, offset=19, backward=False),
        attention_case("KV cache: 3 queries at offset 17 of 20 keys, capacity 40, GQA 4/2, headDim 64", g, 2, 3, 4, 2, 64,
                       seq_kv=20, kv_capacity=40, offset=17, backward=False),
        attention_case("KV cache: 2 queries at offset 3 of 37 keys (more keys than causal reach), capacity 48", g, 1, 2, 2, 2, 16,
                       seq_kv=37, kv_capacity=48, offset=3, backward=False),
        attention_case("KV cache: 2 queries at offset 30 past seqKV 20 (all 20 keys visible), capacity 40", g, 2, 2, 2, 1, 32,
                       seq_kv=20, kv_capacity=40, offset=30, backward=False),
    ]
    cross_entropy = [
        cross_entropy_case("vocab 1000, 9 rows, 2 ignored, one row shifted by +90", g, 9, 1000, [2, 7], shift_rows=[4]),
        cross_entropy_case("vocab 50257, 3 rows, 1 ignored", g, 3, 50257, [1], shift_rows=[2]),
        cross_entropy_case("vocab 7, 5 rows", g, 5, 7, []),
    ]
    # Half precision, from their own generator so that the float32 cases above stay byte for byte.
    h = torch.Generator().manual_seed(16)
    rope_f16 = [
        rope_case_f16("f16: llama3 theta 5e5 (32, 1, 4, 8192), headDim 64, 2x9 rows, 2 heads, offset 5", h, 64, 500000.0,
                      {"type": "llama3", "factor": 32.0, "lowFreqFactor": 1.0, "highFreqFactor": 4.0,
                       "originalMaxPositionEmbeddings": 8192}, 2, 9, 2, 5),
        rope_case_f16("f16: default theta 1e4, headDim 16, 2x7 rows", h, 16, 10000.0, {"type": "default"}, 2, 7, 2, 0),
    ]
    attention_f16 = [
        attention_case_f16("f16: MHA 2 heads, headDim 16, batch 2, seq 33", h, 2, 33, 2, 2, 16),
        attention_case_f16("f16: GQA 4/2, headDim 16, batch 1, seq 33", h, 1, 33, 4, 2, 16),
        attention_case_f16("f16: MHA 2 heads, headDim 64, batch 1, seq 33", h, 1, 33, 2, 2, 64),
        attention_case_f16("f16: GQA 2/1, headDim 64, batch 1, seq 35", h, 1, 35, 2, 1, 64),
        attention_case_f16("f16: KV cache: 3 queries at offset 17 of 20 keys, capacity 24, GQA 4/2, headDim 64", h, 1, 3, 4, 2, 64,
                           seq_kv=20, kv_capacity=24, offset=17, backward=False),
    ]
    cross_entropy_f16 = [
        cross_entropy_case_f16("f16: vocab 1000, 7 rows, 2 ignored, one row shifted by +90", h, 7, 1000, [1, 5], shift_rows=[3]),
    ]
    # The forward's tile shapes (shaders/attention-forward.wgsl: 64, 32 or 16 query rows by 32, 64 or
    # 128 keys for headDim <= 64, 128, 256), sequences that end mid-tile, SmolLM2-135M's heads, and
    # decoding from a KV cache past the first tile; from a generator of their own so that the cases
    # above stay byte for byte.
    t = torch.Generator().manual_seed(23)
    attention += [
        attention_case("SmolLM2-135M heads: GQA 9/3, headDim 64, batch 1, seq 70 (tiles of 64 rows, 32 keys)", t, 1, 70, 9, 3, 64),
        attention_case("GQA 4/2, headDim 128, batch 1, seq 45 (tiles of 32 rows, 64 keys)", t, 1, 45, 4, 2, 128),
        attention_case("MHA 2 heads, headDim 256, batch 1, seq 37 (tiles of 16 rows, 128 keys)", t, 1, 37, 2, 2, 256),
        attention_case("GQA 4/2, headDim 48, batch 1, seq 70", t, 1, 70, 4, 2, 48),
        attention_case("KV cache: 5 queries at offset 60 of 65 keys, capacity 80, GQA 9/3, headDim 64", t, 1, 5, 9, 3, 64,
                       seq_kv=65, kv_capacity=80, offset=60, backward=False),
        attention_case("KV cache: 1 query at offset 130 of 131 keys, capacity 136, GQA 4/2, headDim 128", t, 1, 1, 4, 2, 128,
                       seq_kv=131, kv_capacity=136, offset=130, backward=False),
    ]
    attention_f16 += [
        attention_case_f16("f16: SmolLM2-135M heads: GQA 9/3, headDim 64, batch 1, seq 70", t, 1, 70, 9, 3, 64),
        attention_case_f16("f16: GQA 4/2, headDim 128, batch 1, seq 45", t, 1, 45, 4, 2, 128),
        attention_case_f16("f16: KV cache: 2 queries at offset 70 of 72 keys, capacity 80, GQA 4/2, headDim 128", t, 1, 2, 4, 2, 128,
                           seq_kv=72, kv_capacity=80, offset=70, backward=False),
    ]
    # Prefix tuning, from generators of their own (the cases above stay byte for byte). Prefix lengths
    # 1, 7 and 30 with odd real lengths, GQA 4/2 and MHA 4/4, headDim 16 and 64, batch 2.
    shapes = [  # (prefix, real tokens, kv heads, head dim)
        (1, 5, 2, 16), (1, 5, 4, 64), (7, 13, 4, 16), (7, 13, 2, 64), (30, 33, 2, 16), (30, 33, 4, 64),
    ]
    label = lambda p, t, kvh, hd: f"prefix {p} + {t} tokens, {'GQA 4/2' if kvh == 2 else 'MHA 4 heads'}, headDim {hd}, batch 2"
    pg = torch.Generator().manual_seed(18)
    attention_prefix = [attention_case(label(p, t, kvh, hd), pg, 2, t, 4, kvh, hd, seq_kv=p + t, offset=p) for p, t, kvh, hd in shapes]
    attention_prefix += [
        attention_case("prefix 30 + 5 tokens (prefix longer than the sequence), GQA 4/2, headDim 64, batch 2", pg, 2, 5, 4, 2, 64,
                       seq_kv=35, offset=30),
        attention_case("prefix 7 + 5 tokens and 3 keys no query sees (seqKV 15), GQA 4/2, headDim 16, batch 2", pg, 2, 5, 4, 2, 16,
                       seq_kv=15, offset=7),
    ]
    ph = torch.Generator().manual_seed(81)
    attention_prefix_f16 = [
        attention_case_f16(f"f16: {label(p, t, kvh, hd)}", ph, 2, t, 4, kvh, hd, seq_kv=p + t, offset=p) for p, t, kvh, hd in shapes
    ]
    # The lse's gradient and the merge, from generators of their own (everything above stays byte for byte).
    lg = torch.Generator().manual_seed(19)
    attention_grad_lse = [
        attention_case("gradLse: causal, GQA 4/2, headDim 16, batch 2, seq 13", lg, 2, 13, 4, 2, 16, grad_lse=True),
        attention_case("gradLse: causal, MHA 2 heads, headDim 64, batch 1, seq 40", lg, 1, 40, 2, 2, 64, grad_lse=True),
        attention_case("gradLse: prefix 7 + 9 tokens, GQA 4/2, headDim 32, batch 2", lg, 2, 9, 4, 2, 32, seq_kv=16, offset=7, grad_lse=True),
        attention_case("gradLse: prefix alone, 7 keys (seqKV = positionOffset = 7), 13 queries, GQA 4/2, headDim 16, batch 2", lg,
                       2, 13, 4, 2, 16, seq_kv=7, offset=7, grad_lse=True),
        attention_case("gradLse: prefix alone, 30 keys (seqKV = positionOffset = 30), 5 queries, MHA 4 heads, headDim 64, batch 2", lg,
                       2, 5, 4, 4, 64, seq_kv=30, offset=30, grad_lse=True),
    ]
    lh = torch.Generator().manual_seed(91)
    attention_grad_lse_f16 = [
        attention_case_f16("f16 gradLse: causal, GQA 4/2, headDim 16, batch 2, seq 13", lh, 2, 13, 4, 2, 16, grad_lse=True),
        attention_case_f16("f16 gradLse: prefix alone, 7 keys (seqKV = positionOffset = 7), 13 queries, GQA 4/2, headDim 64, batch 2", lh,
                           2, 13, 4, 2, 64, seq_kv=7, offset=7, grad_lse=True),
    ]
    # Several blocks of 64 queries (attention's matmul path: kernels/attention-matmul.ts) with a
    # prefix in front, keys no query sees, a prefix alone and gradLse, from a generator of their own
    # and appended, so every case above stays byte for byte.
    bg = torch.Generator().manual_seed(22)
    attention_prefix += [
        attention_case("prefix 30 + 130 tokens (three blocks of 64 queries), GQA 4/2, headDim 16, batch 2", bg, 2, 130, 4, 2, 16,
                       seq_kv=160, offset=30),
        attention_case("prefix 7 + 70 tokens (two blocks) and 3 keys no query sees (seqKV 80), GQA 4/2, headDim 16, batch 1", bg,
                       1, 70, 4, 2, 16, seq_kv=80, offset=7),
    ]
    attention_grad_lse += [
        attention_case("gradLse: prefix alone, 7 keys, 130 queries (three blocks of 64), GQA 4/2, headDim 16, batch 2", bg,
                       2, 130, 4, 2, 16, seq_kv=7, offset=7, grad_lse=True),
        attention_case("gradLse: prefix 9 + 70 tokens (two blocks), MHA 2 heads, headDim 32, batch 1", bg, 1, 70, 2, 2, 32,
                       seq_kv=79, offset=9, grad_lse=True),
    ]
    mg = torch.Generator().manual_seed(20)
    merge_shapes = [  # (batch, seq, heads, head dim, gate stride, gate offset, grad gate stride, grad gate offset)
        (2, 5, 4, 16, 2, 1, 2, 1), (1, 7, 2, 64, 1, 0, 3, 2), (2, 33, 3, 32, 2, 0, 1, 0), (1, 3, 1, 4, 1, 0, 1, 0),
        (1, 11, 14, 64, 2, 1, 2, 0),
    ]
    merge_label = lambda b, s, h, d, gs, go, ggs, ggo: (f"batch {b}, seq {s}, {h} head{'s' if h > 1 else ''}, headDim {d}, "
                                                         f"gate column {go} of {gs}, gradient column {ggo} of {ggs}")
    merge = [merge_case(merge_label(*shape), mg, *shape) for shape in merge_shapes]
    mh = torch.Generator().manual_seed(21)
    merge_f16 = [merge_case(f"f16: {merge_label(*shape)}", mh, *shape, f16=True) for shape in merge_shapes[:3]]
    check_gated_prefix_two_pass()
    write_fixture("packages/gpu/test/fixtures/attention.json", "scripts/make_attention_fixtures.py",
                  {"ignoreIndex": IGNORE_U32, "rope": rope, "attention": attention, "crossEntropy": cross_entropy,
                   "ropeF16": rope_f16, "attentionF16": attention_f16, "crossEntropyF16": cross_entropy_f16,
                   "attentionPrefix": attention_prefix, "attentionPrefixF16": attention_prefix_f16,
                   "attentionGradLse": attention_grad_lse, "attentionGradLseF16": attention_grad_lse_f16,
                   "merge": merge, "mergeF16": merge_f16})


if __name__ == "__main__":
    main()
