"""nn.Module decoders with a KV cache, for ONNX export (make_onnx_fixtures.py).

The modules follow transformers 4.46's eager LlamaForCausalLM / GPT2LMHeadModel module tree, so
torch.onnx.export's scope-based node names match what Hugging Face Optimum emits
(`/model/layers.0/self_attn/q_proj/MatMul`, `/transformer/h.0/attn/c_attn/Gemm`, `/lm_head/MatMul`),
and parameters keep their HF state-dict names. Numerics equal tiny_models.CausalLM (same op order)
when the past is empty; the attention mask follows HF: Llama builds an additive [b, 1, s, past+s]
causal + padding mask from `attention_mask` (0 or finfo.min), GPT-2 slices its `attn.bias` tril
buffer and adds `(1 - attention_mask) * finfo.min`.

forward(input_ids [b, s] i64, attention_mask [b, past+s] i64, position_ids [b, s] i64,
        past.0.key, past.0.value, past.1.key, ...  [b, kv_heads, past, head_dim] f32)
  -> (logits [b, s, vocab], present.0.key, present.0.value, ...  [b, kv_heads, past+s, head_dim])
"""
import torch
import torch.nn.functional as F
from torch import nn

from tiny_models import gelu_new, repeat_kv, rope_inv_freq, rotate_half


def _param(t):
    return nn.Parameter(t.detach().clone().float(), requires_grad=False)


# ----------------------------------------------------------------------------- llama / qwen2-style


class LlamaRMSNorm(nn.Module):
    def __init__(self, weight, eps):
        super().__init__()
        self.weight = _param(weight)
        self.variance_epsilon = eps

    def forward(self, x):
        dt = x.dtype
        h = x.to(torch.float32)
        var = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(var + self.variance_epsilon)
        return self.weight * h.to(dt)


def _linear(p, path):
    w = p[path + ".weight"]
    b = p.get(path + ".bias")
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    lin.weight = _param(w)
    if b is not None:
        lin.bias = _param(b)
    return lin


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, config, head_dim):
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(config, head_dim), persistent=False)

    def forward(self, x, position_ids):
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        freqs = (inv @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


class LlamaAttention(nn.Module):
    def __init__(self, c, p, pre, hd):
        super().__init__()
        self.nh, self.nkv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], hd
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self, n, _linear(p, f"{pre}.{n}"))

    def forward(self, x, cos, sin, mask, past_k, past_v):
        bsz, s = x.shape[0], x.shape[1]
        q = self.q_proj(x).view(bsz, s, -1, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(bsz, s, -1, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(bsz, s, -1, self.hd).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        present = (k, v)
        k, v = repeat_kv(k, self.nh // self.nkv), repeat_kv(v, self.nh // self.nkv)
        w = torch.matmul(q, k.transpose(2, 3)) * self.hd ** -0.5 + mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(bsz, s, -1)
        return self.o_proj(o), present


class LlamaMLP(nn.Module):
    def __init__(self, p, pre):
        super().__init__()
        for n in ("gate_proj", "up_proj", "down_proj"):
            setattr(self, n, _linear(p, f"{pre}.{n}"))

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c, p, i, hd):
        super().__init__()
        pre = f"model.layers.{i}"
        eps = c["rms_norm_eps"]
        self.input_layernorm = LlamaRMSNorm(p[f"{pre}.input_layernorm.weight"], eps)
        self.self_attn = LlamaAttention(c, p, f"{pre}.self_attn", hd)
        self.post_attention_layernorm = LlamaRMSNorm(p[f"{pre}.post_attention_layernorm.weight"], eps)
        self.mlp = LlamaMLP(p, f"{pre}.mlp")

    def forward(self, h, cos, sin, mask, past_k, past_v):
        a, present = self.self_attn(self.input_layernorm(h), cos, sin, mask, past_k, past_v)
        h = h + a
        h = h + self.mlp(self.post_attention_layernorm(h))
        return h, present


class LlamaModel(nn.Module):
    def __init__(self, c, p, hd):
        super().__init__()
        w = p["model.embed_tokens.weight"]
        self.embed_tokens = nn.Embedding(w.shape[0], w.shape[1])
        self.embed_tokens.weight = _param(w)
        self.layers = nn.ModuleList([LlamaDecoderLayer(c, p, i, hd) for i in range(c["num_hidden_layers"])])
        self.norm = LlamaRMSNorm(p["model.norm.weight"], c["rms_norm_eps"])
        self.rotary_emb = LlamaRotaryEmbedding(c, hd)

    def forward(self, input_ids, attention_mask, position_ids, past):
        h = self.embed_tokens(input_ids)
        s = input_ids.shape[1]
        past_len = past[0].shape[2]
        # HF _update_causal_mask: additive mask, min where key j > query position past_len + i or padding
        minv = torch.finfo(h.dtype).min
        qpos = torch.arange(s) + past_len
        kpos = torch.arange(past_len + s)
        blocked = (kpos[None, :] > qpos[:, None])[None, None] | (attention_mask[:, None, None, :] == 0)
        mask = torch.where(blocked, torch.tensor(minv, dtype=h.dtype), torch.tensor(0.0, dtype=h.dtype))
        cos, sin = self.rotary_emb(h, position_ids)
        presents = []
        for i, layer in enumerate(self.layers):
            h, pr = layer(h, cos, sin, mask, past[2 * i], past[2 * i + 1])
            presents += list(pr)
        return self.norm(h), presents


class LlamaForCausalLM(nn.Module):
    def __init__(self, config, params):
        super().__init__()
        c = config
        hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        self.config, self.head_dim = c, hd
        self.num_layers, self.kv_heads = c["num_hidden_layers"], c["num_key_value_heads"]
        self.model = LlamaModel(c, params, hd)
        emb = self.model.embed_tokens.weight
        self.lm_head = nn.Linear(emb.shape[1], emb.shape[0], bias=False)
        if "lm_head.weight" in params:
            self.lm_head.weight = _param(params["lm_head.weight"])
        else:
            self.lm_head.weight = emb  # tie_word_embeddings: the same Parameter, as HF ties them

    def forward(self, input_ids, attention_mask, position_ids, *past):
        h, presents = self.model(input_ids, attention_mask, position_ids, past)
        return (self.lm_head(h), *presents)


# ----------------------------------------------------------------------------- gpt2


class Conv1D(nn.Module):
    """transformers.pytorch_utils.Conv1D: weight [in, out]; addmm exports as Gemm."""

    def __init__(self, p, path):
        super().__init__()
        self.weight = _param(p[path + ".weight"])
        self.bias = _param(p[path + ".bias"])
        self.nf = self.weight.shape[1]

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


def _layer_norm(p, path, eps):
    w = p[path + ".weight"]
    ln = nn.LayerNorm(w.shape[0], eps=eps)
    ln.weight = _param(w)
    ln.bias = _param(p[path + ".bias"])
    return ln


class GPT2Attention(nn.Module):
    def __init__(self, c, p, pre):
        super().__init__()
        n = c["n_positions"]
        self.register_buffer("bias", torch.tril(torch.ones((n, n), dtype=torch.bool)).view(1, 1, n, n),
                             persistent=False)
        self.e, self.nh = c["n_embd"], c["n_head"]
        self.hd = self.e // self.nh
        self.c_attn = Conv1D(p, f"{pre}.c_attn")
        self.c_proj = Conv1D(p, f"{pre}.c_proj")

    def forward(self, x, mask, past_k, past_v):
        bsz, s = x.shape[0], x.shape[1]
        q, k, v = self.c_attn(x).split(self.e, dim=2)
        q, k, v = (t.view(bsz, s, self.nh, self.hd).permute(0, 2, 1, 3) for t in (q, k, v))
        k = torch.cat((past_k, k), dim=-2)
        v = torch.cat((past_v, v), dim=-2)
        present = (k, v)
        w = torch.matmul(q, k.transpose(-1, -2))
        w = w / torch.full([], self.hd ** 0.5, dtype=w.dtype)
        ql, kl = q.size(-2), k.size(-2)
        causal = self.bias[:, :, kl - ql:kl, :kl]
        w = torch.where(causal, w, torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype))
        w = w + mask
        w = F.softmax(w, dim=-1)
        o = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous().view(bsz, s, self.e)
        return self.c_proj(o), present


class GPT2MLP(nn.Module):
    def __init__(self, p, pre):
        super().__init__()
        self.c_fc = Conv1D(p, f"{pre}.c_fc")
        self.c_proj = Conv1D(p, f"{pre}.c_proj")

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, c, p, i):
        super().__init__()
        pre, eps = f"transformer.h.{i}", c["layer_norm_epsilon"]
        self.ln_1 = _layer_norm(p, f"{pre}.ln_1", eps)
        self.attn = GPT2Attention(c, p, f"{pre}.attn")
        self.ln_2 = _layer_norm(p, f"{pre}.ln_2", eps)
        self.mlp = GPT2MLP(p, f"{pre}.mlp")

    def forward(self, h, mask, past_k, past_v):
        a, present = self.attn(self.ln_1(h), mask, past_k, past_v)
        h = h + a
        h = h + self.mlp(self.ln_2(h))
        return h, present


class GPT2Model(nn.Module):
    def __init__(self, c, p):
        super().__init__()
        self.wte = nn.Embedding(*p["transformer.wte.weight"].shape)
        self.wte.weight = _param(p["transformer.wte.weight"])
        self.wpe = nn.Embedding(*p["transformer.wpe.weight"].shape)
        self.wpe.weight = _param(p["transformer.wpe.weight"])
        self.h = nn.ModuleList([GPT2Block(c, p, i) for i in range(c["n_layer"])])
        self.ln_f = _layer_norm(p, "transformer.ln_f", c["layer_norm_epsilon"])

    def forward(self, input_ids, attention_mask, position_ids, past):
        h = self.wte(input_ids) + self.wpe(position_ids)
        mask = attention_mask.view(input_ids.shape[0], -1)[:, None, None, :].to(h.dtype)
        mask = (1.0 - mask) * torch.finfo(h.dtype).min
        presents = []
        for i, block in enumerate(self.h):
            h, pr = block(h, mask, past[2 * i], past[2 * i + 1])
            presents += list(pr)
        return self.ln_f(h), presents


class GPT2LMHeadModel(nn.Module):
    def __init__(self, config, params):
        super().__init__()
        c = config
        self.config, self.head_dim = c, c["n_embd"] // c["n_head"]
        self.num_layers, self.kv_heads = c["n_layer"], c["n_head"]
        self.transformer = GPT2Model(c, params)
        emb = self.transformer.wte.weight
        self.lm_head = nn.Linear(emb.shape[1], emb.shape[0], bias=False)
        if "lm_head.weight" in params:
            self.lm_head.weight = _param(params["lm_head.weight"])
        else:
            self.lm_head.weight = emb

    def forward(self, input_ids, attention_mask, position_ids, *past):
        h, presents = self.transformer(input_ids, attention_mask, position_ids, past)
        return (self.lm_head(h), *presents)


def build(config, params):
    return GPT2LMHeadModel(config, params) if config["model_type"] == "gpt2" else LlamaForCausalLM(config, params)
