"""Plain-torch re-implementations of Hugging Face transformers' eager forward passes for
LlamaForCausalLM, Qwen2ForCausalLM and GPT2LMHeadModel (modeling_llama.py, modeling_qwen2.py,
modeling_gpt2.py, eval mode, no KV cache), PEFT-style LoRA on named modules, HF's causal-LM loss,
a byte-level BPE tokenizer (GPT-2 pre-tokenizer regex, BPE encoder/decoder, trainer) and minimal
safetensors read/write. Debian has no transformers/safetensors/tokenizers packages, so everything
is written by hand here; run with Debian's /usr/bin/python3 (torch 1.13).

Models are functional: `CausalLM(config, params)` where `config` is the config.json dict and
`params` maps HF parameter names (`model.layers.0.self_attn.q_proj.weight`,
`transformer.h.0.attn.c_attn.weight`, ...) to float32 tensors. `forward(input_ids, lora)` takes
an optional LoRA dict {module path: (A [r, in], B [out, r], scale)} applied as PEFT does:
    y = base(x) + scale * (x @ A.T) @ B.T      (dropout 0)
For GPT-2's Conv1D (weight [in, out]) `in`/`out` are its logical features, as in PEFT.
`forward(..., prompts=, prefix=)` are the hooks of PEFT's prompt learning methods (virtual input embeddings,
past_key_values prefix); `prefix_gate=` adds UniPELT's per-token gates on that prefix (gated_prefix_attention);
see forward's doc and peft_methods.py.

This module writes nothing; see make_tiny_models.py and merge_peft_adapter.py.
"""
import json
import math
import os
import struct
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------- safetensors

ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
             "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "I8": torch.int8, "BOOL": torch.bool}
ST_NAMES = {v: k for k, v in ST_DTYPES.items()}


def raw_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.view(torch.int16).numpy().tobytes()  # numpy has no bf16; same bits
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, tensor) in file order. Header padded with spaces to a multiple of 8."""
    header, chunks, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in tensors:
        data = raw_bytes(t)
        header[name] = {"dtype": ST_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    return offset


def read_safetensors(path):
    """Returns (dict name -> tensor in its stored dtype, metadata or None)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    data = blob[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = ST_DTYPES[e["dtype"]]
        raw = bytearray(data[b:end])
        if dt in (torch.float16, torch.bfloat16):
            t = torch.frombuffer(raw, dtype=torch.int16).view(dt) if raw else torch.zeros(0, dtype=dt)
        else:
            t = torch.frombuffer(raw, dtype=dt) if raw else torch.zeros(0, dtype=dt)
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


def load_hf_model_dir(model_dir):
    """Reads config.json and model.safetensors or the sharded index; returns (config, params as f32)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    index = os.path.join(model_dir, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        for fn in files:
            tensors.update(read_safetensors(os.path.join(model_dir, fn))[0])
    else:
        tensors = read_safetensors(os.path.join(model_dir, "model.safetensors"))[0]
    return config, {k: v.float() for k, v in tensors.items()}


# ----------------------------------------------------------------------------- models

def rope_inv_freq(config, head_dim):
    """transformers modeling_rope_utils: default, linear and llama3 `rope_type`s."""
    base = config.get("rope_theta", 10000.0)
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    rs = config.get("rope_scaling")
    rope_type = None if rs is None else rs.get("rope_type", rs.get("type"))
    if rope_type in (None, "default"):
        return inv_freq
    if rope_type == "linear":
        return inv_freq / rs["factor"]
    if rope_type == "llama3":  # _compute_llama3_parameters
        factor = rs["factor"]
        low_freq_factor = rs["low_freq_factor"]
        high_freq_factor = rs["high_freq_factor"]
        old_context_len = rs["original_max_position_embeddings"]
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
    raise ValueError(f"unsupported rope_type {rope_type}")


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(h, n_rep):
    b, nkv, s, d = h.shape
    if n_rep == 1:
        return h
    return h[:, :, None, :, :].expand(b, nkv, n_rep, s, d).reshape(b, nkv * n_rep, s, d)


def rms_norm(x, w, eps):
    dt = x.dtype
    h = x.to(torch.float32)
    var = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(var + eps)
    return w * h.to(dt)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def causal_additive_mask(s, dtype):
    m = torch.full((s, s), torch.finfo(dtype).min, dtype=dtype)
    return torch.triu(m, diagonal=1)[None, None]


class CausalLM:
    def __init__(self, config, params):
        self.config = config
        self.p = params
        self.type = config["model_type"]
        if self.type not in ("llama", "qwen2", "gpt2"):
            raise ValueError(f"unsupported model_type {self.type}")

    # -- projections (base + optional LoRA), named by HF module path
    def linear(self, x, path, lora):
        w = self.p[path + ".weight"]
        y = F.linear(x, w, self.p.get(path + ".bias"))
        return self._lora(x, y, path, lora)

    def conv1d(self, x, path, lora):  # transformers.pytorch_utils.Conv1D: weight [in, out]
        w, b = self.p[path + ".weight"], self.p[path + ".bias"]
        size_out = x.shape[:-1] + (w.shape[1],)
        y = torch.addmm(b, x.reshape(-1, x.shape[-1]), w).view(size_out)
        return self._lora(x, y, path, lora)

    @staticmethod
    def _lora(x, y, path, lora):
        if lora and path in lora:
            a, b, s = lora[path]
            y = y + (F.linear(F.linear(x, a), b)) * s  # PEFT: lora_B(lora_A(dropout(x))) * scaling
        return y

    def lm_head_weight(self):
        if "lm_head.weight" in self.p:
            return self.p["lm_head.weight"]
        if self.type == "gpt2":
            return self.p["transformer.wte.weight"]
        return self.p["model.embed_tokens.weight"]

    def forward(self, input_ids, lora=None, prompts=None, prefix=None, prefix_gate=None):
        """prompts: optional [P, d] (or [B, P, d]) embeddings prepended to the token embeddings (PEFT prompt
        tuning / P-tuning: `inputs_embeds = cat(prompts, embed(ids))`, positions 0..P+T-1, GPT-2 adds wpe[0..P) to
        them); the logits then cover all P+T positions. prefix: optional per-layer list of (key, value), each
        [1 or B, kv heads, P, head_dim], prepended to every layer's keys/values as `past_key_values` (keys taken
        as already rotated: no RoPE on them), real positions P..P+T-1, every query sees all P prefix rows.
        prefix_gate (with prefix; UniPELT): callable (layer index, attention input x [B, S, d]) -> (gk, gv), each
        [B, S]; that layer's attention is then gated_prefix_attention (per-token key and value gates)."""
        if prefix_gate is not None and prefix is None:
            raise ValueError("prefix_gate needs a prefix")
        if self.type == "gpt2":
            return self._gpt2(input_ids, lora, prompts, prefix, prefix_gate)
        return self._llama(input_ids, lora, prompts, prefix, prefix_gate)

    def gated_prefix_attention(self, q, k, v, npre, gk, gv, scale):
        """UniPELT's gated prefix attention, the direct form (the issue-18 spec; Mao et al. 2022, arXiv 2110.07577
        section 3, with gates per token). q [B, H, S, hd]; k, v [B, H, P+S, hd] (prefix rows first, GQA already
        repeated); gk, gv [B, S]. Real query i: s_ij = scale * gk_i * (q_i . Pk_j) for the P prefix rows,
        scale * (q_i . k_j) for real keys j <= i (others masked out); softmax over all of them (float32, float64 for
        float64 inputs); the prefix values weighted by gv_i:
            out_i = (sum_P e^s gv_i Pv_j + sum_{j<=i} e^s v_j) / sum e^s.
        Returns [B, H, S, hd]. A subclass may override it (the two-pass check in make_unipelt_fixtures.py)."""
        s = q.shape[2]
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale
        scores = torch.cat([scores[..., :npre] * gk[:, None, :, None].to(q.dtype), scores[..., npre:]], dim=-1)
        visible = torch.cat([torch.ones(s, npre, dtype=torch.bool), torch.tril(torch.ones(s, s, dtype=torch.bool))], -1)
        att = F.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1,
                        dtype=torch.promote_types(q.dtype, torch.float32)).to(q.dtype)
        return (torch.matmul(att[..., :npre], v[..., :npre, :]) * gv[:, None, :, None].to(q.dtype)
                + torch.matmul(att[..., npre:], v[..., npre:, :]))

    @staticmethod
    def _prepend_prompts(h, prompts):
        if prompts is None:
            return h
        pr = prompts[None] if prompts.dim() == 2 else prompts
        return torch.cat([pr.to(h.dtype).expand(h.shape[0], -1, -1), h], dim=1)

    @staticmethod
    def _prefix_kv(k, v, prefix, i):
        """Layer i's past rows before the real keys/values (DynamicCache.update: cat along the sequence dim)."""
        pk, pv = prefix[i]
        b = k.shape[0]
        k = torch.cat([pk.to(k.dtype).expand(b, -1, -1, -1), k], dim=2)
        v = torch.cat([pv.to(v.dtype).expand(b, -1, -1, -1), v], dim=2)
        return k, v

    def _llama(self, ids, lora, prompts=None, prefix=None, prefix_gate=None):
        c, p = self.config, self.p
        bsz, s = ids.shape
        nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
        hd = c.get("head_dim") or c["hidden_size"] // nh
        eps = c["rms_norm_eps"]
        h = F.embedding(ids, p["model.embed_tokens.weight"])
        h = self._prepend_prompts(h, prompts)
        s = h.shape[1]
        npre = 0 if prefix is None else prefix[0][0].shape[2]
        # LlamaRotaryEmbedding.forward (attention_scaling 1.0 for default/linear/llama3)
        pos = torch.arange(npre, npre + s)[None].expand(bsz, s)
        inv = rope_inv_freq(c, hd)
        freqs = (inv[None, :, None].float().expand(bsz, -1, 1) @ pos[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[:, None], emb.sin()[:, None]
        mask = causal_additive_mask(s, h.dtype)
        if npre:  # every real query sees all P prefix rows
            mask = torch.cat([torch.zeros(1, 1, s, npre, dtype=h.dtype), mask], dim=-1)
        for i in range(c["num_hidden_layers"]):
            pre = f"model.layers.{i}"
            res = h
            x = rms_norm(h, p[f"{pre}.input_layernorm.weight"], eps)
            gates = None if prefix_gate is None else prefix_gate(i, x)
            q = self.linear(x, f"{pre}.self_attn.q_proj", lora).view(bsz, s, -1, hd).transpose(1, 2)
            k = self.linear(x, f"{pre}.self_attn.k_proj", lora).view(bsz, s, -1, hd).transpose(1, 2)
            v = self.linear(x, f"{pre}.self_attn.v_proj", lora).view(bsz, s, -1, hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if npre:
                k, v = self._prefix_kv(k, v, prefix, i)
            k, v = repeat_kv(k, nh // nkv), repeat_kv(v, nh // nkv)
            if gates is not None:
                o = self.gated_prefix_attention(q, k, v, npre, gates[0], gates[1], hd ** -0.5)
            else:
                w = torch.matmul(q, k.transpose(2, 3)) * hd ** -0.5 + mask
                w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
                o = torch.matmul(w, v)
            o = o.transpose(1, 2).contiguous().reshape(bsz, s, -1)
            h = res + self.linear(o, f"{pre}.self_attn.o_proj", lora)
            res = h
            x = rms_norm(h, p[f"{pre}.post_attention_layernorm.weight"], eps)
            g = F.silu(self.linear(x, f"{pre}.mlp.gate_proj", lora)) * self.linear(x, f"{pre}.mlp.up_proj", lora)
            h = res + self.linear(g, f"{pre}.mlp.down_proj", lora)
        h = rms_norm(h, p["model.norm.weight"], eps)
        return F.linear(h, self.lm_head_weight())

    def _gpt2(self, ids, lora, prompts=None, prefix=None, prefix_gate=None):
        c, p = self.config, self.p
        bsz, s = ids.shape
        e, nh = c["n_embd"], c["n_head"]
        hd = e // nh
        eps = c["layer_norm_epsilon"]
        if prompts is None and prefix is None:
            pos = torch.arange(s)[None]
            h = F.embedding(ids, p["transformer.wte.weight"]) + F.embedding(pos, p["transformer.wpe.weight"])
            npre = 0
        else:  # GPT2Model: inputs_embeds + wpe(position_ids), positions continuing after a past of P rows
            h = self._prepend_prompts(F.embedding(ids, p["transformer.wte.weight"]), prompts)
            s = h.shape[1]
            npre = 0 if prefix is None else prefix[0][0].shape[2]
            pos = (torch.arange(s) + npre)[None]
            h = h + F.embedding(pos, p["transformer.wpe.weight"])
        causal = torch.tril(torch.ones(s, s, dtype=torch.bool))[None, None]
        if npre:
            causal = torch.cat([torch.ones(1, 1, s, npre, dtype=torch.bool), causal], dim=-1)
        for i in range(c["n_layer"]):
            pre = f"transformer.h.{i}"
            res = h
            x = F.layer_norm(h, (e,), p[f"{pre}.ln_1.weight"], p[f"{pre}.ln_1.bias"], eps)
            gates = None if prefix_gate is None else prefix_gate(i, x)
            q, k, v = self.conv1d(x, f"{pre}.attn.c_attn", lora).split(e, dim=2)
            q, k, v = (t.view(bsz, s, nh, hd).permute(0, 2, 1, 3) for t in (q, k, v))
            if npre:
                k, v = self._prefix_kv(k, v, prefix, i)
            if gates is not None:
                o = self.gated_prefix_attention(q, k, v, npre, gates[0], gates[1], v.size(-1) ** -0.5)
            else:
                w = torch.matmul(q, k.transpose(-1, -2))
                w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)
                w = torch.where(causal, w, torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype))
                w = F.softmax(w, dim=-1)
                o = torch.matmul(w, v)
            o = o.permute(0, 2, 1, 3).contiguous().view(bsz, s, e)
            h = res + self.conv1d(o, f"{pre}.attn.c_proj", lora)
            res = h
            x = F.layer_norm(h, (e,), p[f"{pre}.ln_2.weight"], p[f"{pre}.ln_2.bias"], eps)
            x = self.conv1d(gelu_new(self.conv1d(x, f"{pre}.mlp.c_fc", lora)), f"{pre}.mlp.c_proj", lora)
            h = res + x
        h = F.layer_norm(h, (e,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], eps)
        return F.linear(h, self.lm_head_weight())

    # -- LoRA helpers
    def module_shapes(self):
        """{module path: (in_features, out_features, is_conv1d)} for every Linear/Conv1D except lm_head."""
        out = {}
        for name, t in self.p.items():
            if not name.endswith(".weight") or t.dim() != 2 or "embed" in name or name.endswith(("wte.weight", "wpe.weight")):
                continue
            path = name[: -len(".weight")]
            if path == "lm_head":
                continue
            conv = self.type == "gpt2"
            out[path] = (t.shape[0], t.shape[1], True) if conv else (t.shape[1], t.shape[0], False)
        return out

    def lora_targets(self, target_modules):
        """PEFT suffix matching: a module matches a target key if its name equals it or ends with '.' + key."""
        return [m for m in self.module_shapes() if any(m == t or m.endswith("." + t) for t in target_modules)]


def hf_causal_lm_loss(logits, labels):
    """ForCausalLMLoss without num_items_in_batch: shift, float32 cross entropy, mean over labels != -100."""
    shift_logits = logits[:, :-1, :].float().reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="mean")


def greedy(model, prompt, n, lora=None, with_margin=False):
    """Argmax decoding of n tokens (full recompute, no KV cache). with_margin: also return the smallest
    top-1 minus top-2 logit gap over the steps (how robust the golden is to rounding)."""
    ids = torch.tensor([list(prompt)])
    out, margin = [], math.inf
    with torch.no_grad():
        for _ in range(n):
            last = model.forward(ids, lora)[0, -1]
            top = last.topk(2).values
            margin = min(margin, float(top[0] - top[1]))
            nxt = int(last.argmax())
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return (out, margin) if with_margin else out


def lora_scale(r, alpha, use_rslora):
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def peft_key(path, which):
    return f"base_model.model.{path}.lora_{which}.weight"


def merge_lora(model, adapters, scale):
    """PEFT merge: W += s * B @ A; for Conv1D (fan_in_fan_out) the delta is transposed.
    adapters: {module path: (A, B)}. Returns a new CausalLM with merged float32 weights."""
    params = dict(model.p)
    shapes = model.module_shapes()
    for path, (a, b) in adapters.items():
        delta = (b @ a) * scale
        if shapes[path][2]:
            delta = delta.T
        params[path + ".weight"] = params[path + ".weight"] + delta
    return CausalLM(model.config, params)


# ----------------------------------------------------------------------------- byte-level BPE

def bytes_to_unicode():
    """GPT-2's reversible byte -> unicode map; dict order is the order of the 256 base symbols."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


# JavaScript's \s (what @huggingface/tokenizers uses); Oniguruma's differs only for U+0085/U+FEFF.
_JS_SPACE = set("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {chr(c) for c in range(0x2000, 0x200B)}
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def _is_space(ch):
    return ch in _JS_SPACE


def _is_letter(ch):
    return unicodedata.category(ch).startswith("L")


def _is_number(ch):
    return unicodedata.category(ch).startswith("N")


def _is_other(ch):
    return not (_is_space(ch) or _is_letter(ch) or _is_number(ch))


def gpt2_split(text):
    """Hand-written equivalent of the regex
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
    (alternatives tried in order at each position, as a backtracking engine does)."""
    out, i, n = [], 0, len(text)
    while i < n:
        m = next((c for c in _CONTRACTIONS if text.startswith(c, i)), None)
        if m:
            out.append(m)
            i += len(m)
            continue
        matched = False
        for cls in (_is_letter, _is_number, _is_other):
            j = i + 1 if text[i] == " " and i + 1 < n and cls(text[i + 1]) else i
            if j < n and cls(text[j]):
                while j < n and cls(text[j]):
                    j += 1
                out.append(text[i:j])
                i = j
                matched = True
                break
        if matched:
            continue
        # text[i] is whitespace here
        j = i
        while j < n and _is_space(text[j]):
            j += 1
        if j == n or j - i == 1:  # \s+(?!\S) takes the whole run at the end; a single space before \S -> \s+
            out.append(text[i:j])
            i = j
        else:  # \s+(?!\S): back off one so the last space attaches to the next word
            out.append(text[i:j - 1])
            i = j - 1
    return out


class ByteLevelBPE:
    def __init__(self, vocab, merges, specials=None):
        self.vocab = vocab  # token -> id
        self.inv = {v: k for k, v in vocab.items()}
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.specials = specials or {}
        self.b2u = bytes_to_unicode()
        self.u2b = {v: k for k, v in self.b2u.items()}

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((parts[k], parts[k + 1]), math.inf), k) for k in range(len(parts) - 1)]
            rank, best = min(pairs)
            if rank == math.inf:
                break
            a, b = parts[best], parts[best + 1]
            merged, k = [], 0
            while k < len(parts):  # merge all occurrences left to right (GPT-2 bpe())
                if k < len(parts) - 1 and parts[k] == a and parts[k + 1] == b:
                    merged.append(a + b)
                    k += 2
                else:
                    merged.append(parts[k])
                    k += 1
            parts = merged
        return parts

    def encode(self, text):
        """Special tokens (added_tokens) are matched verbatim first; the rest is split and BPE-encoded."""
        ids = []
        for seg in self._split_specials(text):
            if seg in self.specials:
                ids.append(self.specials[seg])
            else:
                ids.extend(self._encode_plain(seg))
        return ids

    def _split_specials(self, text):
        segs, i, start = [], 0, 0
        while i < len(text):
            sp = next((s for s in self.specials if text.startswith(s, i)), None)
            if sp:
                segs += [text[start:i], sp] if i > start else [sp]
                i += len(sp)
                start = i
            else:
                i += 1
        if start < len(text):
            segs.append(text[start:])
        return segs

    def _encode_plain(self, text):
        ids = []
        for piece in gpt2_split(text):
            word = "".join(self.b2u[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[t] for t in self._bpe(word))
        return ids

    def decode(self, ids, skip_special_tokens=False):
        out, buf = [], []
        special_ids = {v: k for k, v in self.specials.items()}
        for i in list(ids) + [None]:
            if i is None or i in special_ids:
                out.append(bytes(self.u2b[c] for c in "".join(buf)).decode("utf-8", errors="replace"))
                buf = []
                if i is not None and not skip_special_tokens:
                    out.append(special_ids[i])
            else:
                buf.append(self.inv[i])
        return "".join(out)


def train_bpe(texts, vocab_size, special="<|endoftext|>"):
    """Greedy BPE on GPT-2 pre-tokenized byte-level words: repeatedly merge the most frequent adjacent
    pair (ties: lexicographically smallest pair), skipping pairs whose concatenation is already a token,
    until 256 + merges + 1 special == vocab_size. Returns (vocab token->id, merges [[a, b], ...])."""
    b2u = bytes_to_unicode()
    counts = {}
    for t in texts:
        for piece in gpt2_split(t):
            w = "".join(b2u[b] for b in piece.encode("utf-8"))
            counts[w] = counts.get(w, 0) + 1
    words = [(list(w), c) for w, c in sorted(counts.items())]
    vocab = {u: i for i, u in enumerate(b2u.values())}
    merges = []
    while len(vocab) < vocab_size - 1:
        pc = {}
        for parts, c in words:
            for k in range(len(parts) - 1):
                pr = (parts[k], parts[k + 1])
                pc[pr] = pc.get(pr, 0) + c
        cands = [(-c, pr) for pr, c in pc.items() if pr[0] + pr[1] not in vocab]
        if not cands:
            break
        _, (a, b) = min(cands)
        merges.append([a, b])
        vocab[a + b] = len(vocab)
        for idx, (parts, c) in enumerate(words):
            if len(parts) < 2:
                continue
            merged, k = [], 0
            while k < len(parts):
                if k < len(parts) - 1 and parts[k] == a and parts[k + 1] == b:
                    merged.append(a + b)
                    k += 2
                else:
                    merged.append(parts[k])
                    k += 1
            words[idx] = (merged, c)
    vocab[special] = len(vocab)
    return vocab, merges


def tokenizer_json(vocab, merges, special="<|endoftext|>"):
    """HF tokenizers' tokenizer.json for a GPT-2-style byte-level BPE."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": vocab[special], "content": special, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def load_tokenizer(path):
    with open(path) as f:
        tj = json.load(f)
    specials = {t["content"]: t["id"] for t in tj["added_tokens"]}
    return ByteLevelBPE(tj["model"]["vocab"], tj["model"]["merges"], specials)
