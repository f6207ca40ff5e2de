"""Goldens for the transformer training ops (packages/gpu/src/kernels/{norm,activation,embedding,
elementwise,optimizer}.ts) from PyTorch, float32 throughout, plus an "f16" section:

- rmsnorm: HF LlamaRMSNorm's forward, written out as in transformers (variance = mean(x^2);
  x * rsqrt(variance + eps) * weight), and autograd's dL/dx for loss = sum(y * upstream).
- layernorm: torch.nn.functional.layer_norm (biased variance), with and without bias; dL/dx.
  Weights are random, not ones, so the backward pass must use them; one case adds a large
  mean to x to catch E[x^2] - mean^2 cancellation, and the odd-width cases have |x| small
  enough that eps matters.
- swiglu: F.silu(gate) * up; gelu: F.gelu(x, approximate='tanh') (HF gelu_new), both with
  |x| up to 1e13 to catch tanh/exp/x^3 overflow; dL/dinputs.
- embedding: F.embedding(ids, table) (+ positions[t % seq_len + offset]) and the table's
  gradient (repeated ids), also added onto a non-zero initial gradient.
- elementwise: target + alpha * source, target + bias, column-block copies (= and +=).
- adamw: several steps of torch.optim.AdamW after torch.nn.utils.clip_grad_norm_ (a max_norm
  that clips, one with a gradient scale for accumulation, one with max_norm = inf that only
  measures), with the total norm clip_grad_norm_ returns.

f16 (mixed precision: f16 storage, f32 arithmetic, as the kernels' dtype 'f16' does): the
activation inputs are rounded to float16, the reference is computed in float32 from those
rounded values (norm weights and biases, addBias's bias and the stats stay float32), and the
expected activation outputs are rounded to float16. All of them are stored as float32 (every
float16 value is exact in float32). Covers the norms (with rstd/mean, f32), swiglu, gelu (|x|
up to 6e4, inside f16's range), embedding with positions and its gradient, axpy, addBias,
copyColumns, and cast f32 -> f16 and f16 -> f32, each with accumulate. The f16 cases draw from
their own generator, so the float32 cases do not change.

Run: /usr/bin/python3 scripts/make_transformer_op_fixtures.py
Writes packages/gpu/test/fixtures/transformer-ops.json.
"""
import math

import torch
import torch.nn.functional as F

from fixture_io import b64, write_fixture


def randn(g, *shape, scale=1.0, shift=0.0):
    return torch.randn(*shape, generator=g, dtype=torch.float32) * scale + shift


def norm_case(kind, name, rows, cols, eps, g, bias=True, shift=0.0, scale=1.5):
    x = randn(g, rows, cols, scale=scale, shift=shift).requires_grad_()
    weight = randn(g, cols, scale=0.5, shift=1.0)
    b = randn(g, cols, scale=0.3) if kind == "layer" and bias else None
    upstream = randn(g, rows, cols)
    if kind == "rms":
        variance = x.pow(2).mean(-1, keepdim=True)
        y = weight * (x * torch.rsqrt(variance + eps))
    else:
        y = F.layer_norm(x, (cols,), weight, b, eps)
    (y * upstream).sum().backward()
    out = {"name": name, "rows": rows, "cols": cols, "eps": eps, "x": b64(x, "f32"), "weight": b64(weight, "f32"),
           "upstream": b64(upstream, "f32"), "y": b64(y, "f32"), "dx": b64(x.grad, "f32")}
    if b is not None:
        out["bias"] = b64(b, "f32")
    return out


def with_extremes(v, big=1e13):
    """Overwrites the first elements with values that overflow naive exp/tanh, and x^3 (1e13)."""
    extremes = torch.tensor([30.0, -30.0, 100.0, -100.0, 1e4, -1e4, big, -big, 9.0, -9.0, 0.0, 1e-3, -1e-3, 5.5, -5.5])
    v = v.clone()
    v[: len(extremes)] = extremes
    return v


def swiglu_case(name, size, g):
    gate = with_extremes(randn(g, size, scale=3.0)).requires_grad_()
    up = randn(g, size).requires_grad_()
    upstream = randn(g, size)
    out = F.silu(gate) * up
    (out * upstream).sum().backward()
    return {"name": name, "size": size, "gate": b64(gate, "f32"), "up": b64(up, "f32"), "upstream": b64(upstream, "f32"),
            "out": b64(out, "f32"), "dGate": b64(gate.grad, "f32"), "dUp": b64(up.grad, "f32")}


def gelu_case(name, size, g):
    x = with_extremes(randn(g, size, scale=3.0)).requires_grad_()
    upstream = randn(g, size)
    y = F.gelu(x, approximate="tanh")
    (y * upstream).sum().backward()
    return {"name": name, "size": size, "x": b64(x, "f32"), "upstream": b64(upstream, "f32"), "y": b64(y, "f32"),
            "dx": b64(x.grad, "f32")}


def embedding_case(name, vocab, dim, rows, distinct, g, positions=None, accumulate=False):
    table = randn(g, vocab, dim).requires_grad_()
    # Ids from a small subset of the vocabulary, so most repeat; the last id of the vocabulary
    # is always used (bounds).
    pool = torch.randperm(vocab, generator=g)[:distinct]
    pool[0] = vocab - 1
    ids = pool[torch.randint(0, distinct, (rows,), generator=g)]
    out = F.embedding(ids, table)
    case = {"name": name, "vocab": vocab, "dim": dim, "rows": rows, "ids": ids.tolist()}
    if positions:
        max_pos, seq_len, offset = positions
        pos = randn(g, max_pos, dim, scale=0.5)
        index = torch.arange(rows) % seq_len + offset
        out = out + pos[index]
        case.update({"positions": b64(pos, "f32"), "maxPositions": max_pos, "seqLen": seq_len, "positionOffset": offset})
    upstream = randn(g, rows, dim)
    (out * upstream).sum().backward()
    case.update({"table": b64(table, "f32"), "upstream": b64(upstream, "f32"), "out": b64(out, "f32"),
                 "gradTable": b64(table.grad, "f32")})
    if accumulate:
        init = randn(g, vocab, dim, scale=0.1)
        case.update({"gradInit": b64(init, "f32"), "gradTableAccumulated": b64(init + table.grad, "f32")})
    return case


def elementwise_cases(g):
    size, alpha = 1000, -0.37
    target, source = randn(g, size), randn(g, size)
    rows, cols = 7, 33
    bt, bias = randn(g, rows, cols), randn(g, cols)
    src = randn(g, 9, 60)
    dst = randn(g, 10, 45)
    copy = {"srcRowOffset": 2, "srcOffset": 20, "dstRowOffset": 3, "dstOffset": 5, "rows": 6, "cols": 20}
    overwrite, accumulate = dst.clone(), dst.clone()
    s = src[2:8, 20:40]
    overwrite[3:9, 5:25] = s
    accumulate[3:9, 5:25] += s
    return {
        "axpy": {"size": size, "alpha": alpha, "target": b64(target, "f32"), "source": b64(source, "f32"),
                 "expected": b64(target + alpha * source, "f32")},
        "addBias": {"rows": rows, "cols": cols, "target": b64(bt, "f32"), "bias": b64(bias, "f32"), "expected": b64(bt + bias, "f32")},
        "copyColumns": {**copy, "src": b64(src, "f32"), "srcCols": 60, "dst": b64(dst, "f32"), "dstCols": 45,
                        "overwrite": b64(overwrite, "f32"), "accumulate": b64(accumulate, "f32")},
    }


def adamw_case(name, sizes, steps, g, lr, betas, eps, weight_decay, max_norm, grad_scale, grad_size):
    params = [torch.nn.Parameter(randn(g, n)) for n in sizes]
    initial = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    record = []
    for _ in range(steps):
        raw = [randn(g, n, scale=grad_size) for n in sizes]
        for p, r in zip(params, raw):
            p.grad = r * grad_scale
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        opt.step()
        record.append({"grads": [b64(r, "f32") for r in raw], "totalNorm": float(norm),
                       "params": [b64(p, "f32") for p in params]})
    state = [opt.state[p] for p in params]
    return {
        "name": name, "sizes": sizes, "lr": lr, "beta1": betas[0], "beta2": betas[1], "eps": eps, "weightDecay": weight_decay,
        "maxNorm": "inf" if math.isinf(max_norm) else max_norm, "gradScale": grad_scale,
        "initial": [b64(p, "f32") for p in initial], "steps": record,
        "m": [b64(s["exp_avg"], "f32") for s in state], "v": [b64(s["exp_avg_sq"], "f32") for s in state],
    }


def h(t):
    """Rounded to float16 and back: the value an f16 tensor holds, exact in float32."""
    return t.detach().half().float()


def h_out(t):
    """An expected f16 output: the float32 reference rounded to float16 (must stay finite)."""
    r = h(t)
    assert torch.isfinite(r).all(), "an f16 expected value overflowed; pick smaller inputs"
    return b64(r, "f32")


def norm_case_f16(kind, name, rows, cols, eps, g, bias=True, shift=0.0, scale=1.5):
    x = h(randn(g, rows, cols, scale=scale, shift=shift)).requires_grad_()
    weight = randn(g, cols, scale=0.5, shift=1.0)
    b = randn(g, cols, scale=0.3) if kind == "layer" and bias else None
    upstream = h(randn(g, rows, cols))
    out = {"name": name, "rows": rows, "cols": cols, "eps": eps}
    if kind == "rms":
        variance = x.pow(2).mean(-1, keepdim=True)
        rstd = torch.rsqrt(variance + eps)
        y = weight * (x * rstd)
    else:
        y = F.layer_norm(x, (cols,), weight, b, eps)
        mean = x.mean(-1)
        rstd = torch.rsqrt(x.var(-1, unbiased=False) + eps)
        out["mean"] = b64(mean, "f32")
    (y * upstream).sum().backward()
    out.update({"x": b64(x, "f32"), "weight": b64(weight, "f32"), "upstream": b64(upstream, "f32"), "y": h_out(y),
                "dx": h_out(x.grad), "dxAccumulated": h_out(x.grad + upstream), "rstd": b64(rstd.reshape(rows), "f32")})
    if b is not None:
        out["bias"] = b64(b, "f32")
    return out


def swiglu_case_f16(name, size, g):
    gate = h(with_extremes(randn(g, size, scale=3.0), big=1e4)).requires_grad_()
    up = h(randn(g, size)).requires_grad_()
    upstream = h(randn(g, size))
    out = F.silu(gate) * up
    (out * upstream).sum().backward()
    return {"name": name, "size": size, "gate": b64(gate, "f32"), "up": b64(up, "f32"), "upstream": b64(upstream, "f32"),
            "out": h_out(out), "dGate": h_out(gate.grad), "dUp": h_out(up.grad)}


def gelu_case_f16(name, size, g):
    x = h(with_extremes(randn(g, size, scale=3.0), big=6e4)).requires_grad_()
    upstream = h(randn(g, size))
    y = F.gelu(x, approximate="tanh")
    (y * upstream).sum().backward()
    return {"name": name, "size": size, "x": b64(x, "f32"), "upstream": b64(upstream, "f32"), "y": h_out(y), "dx": h_out(x.grad)}


def embedding_case_f16(name, vocab, dim, rows, distinct, g, positions):
    table = h(randn(g, vocab, dim)).requires_grad_()
    pool = torch.randperm(vocab, generator=g)[:distinct]
    pool[0] = vocab - 1
    ids = pool[torch.randint(0, distinct, (rows,), generator=g)]
    max_pos, seq_len, offset = positions
    pos = h(randn(g, max_pos, dim, scale=0.5))
    out = F.embedding(ids, table) + pos[torch.arange(rows) % seq_len + offset]
    upstream = h(randn(g, rows, dim))
    (out * upstream).sum().backward()
    init = h(randn(g, vocab, dim, scale=0.1))
    return {"name": name, "vocab": vocab, "dim": dim, "rows": rows, "ids": ids.tolist(), "table": b64(table, "f32"),
            "positions": b64(pos, "f32"), "maxPositions": max_pos, "seqLen": seq_len, "positionOffset": offset,
            "upstream": b64(upstream, "f32"), "out": h_out(out), "gradTable": h_out(table.grad),
            "gradInit": b64(init, "f32"), "gradTableAccumulated": h_out(init + table.grad)}


def elementwise_cases_f16(g):
    size, alpha = 1000, -0.37
    target, source = h(randn(g, size)), h(randn(g, size))
    rows, cols = 7, 33
    bt, bias = h(randn(g, rows, cols)), randn(g, cols)
    src = h(randn(g, 9, 60))
    dst = h(randn(g, 10, 45))
    copy = {"srcRowOffset": 2, "srcOffset": 20, "dstRowOffset": 3, "dstOffset": 5, "rows": 6, "cols": 20}
    overwrite, accumulate = dst.clone(), dst.clone()
    s = src[2:8, 20:40]
    overwrite[3:9, 5:25] = s
    accumulate[3:9, 5:25] += s
    # cast: magnitudes from 1e-3 to 3e4 (f16's normal range), rounded to f16 and back.
    n = 1031
    wide = randn(g, n) * torch.pow(10.0, torch.rand(n, generator=g) * 7.0 - 3.0).clamp(max=3e4 / 4.5)
    half_dst, float_dst, half_src = h(randn(g, n)), randn(g, n), h(randn(g, n, scale=100.0))
    return {
        "axpy": {"size": size, "alpha": alpha, "target": b64(target, "f32"), "source": b64(source, "f32"),
                 "expected": h_out(target + alpha * source)},
        "addBias": {"rows": rows, "cols": cols, "target": b64(bt, "f32"), "bias": b64(bias, "f32"), "expected": h_out(bt + bias)},
        "copyColumns": {**copy, "src": b64(src, "f32"), "srcCols": 60, "dst": b64(dst, "f32"), "dstCols": 45,
                        "overwrite": b64(overwrite, "f32"), "accumulate": h_out(accumulate)},
        "cast": {"size": n,
                 # f32 -> f16: = and += (onto an f16 tensor, the sum in f32, then rounded)
                 "float": b64(wide, "f32"), "halfInit": b64(half_dst, "f32"),
                 "toHalf": h_out(wide), "toHalfAccumulated": h_out(half_dst + wide),
                 # f16 -> f32: = (exact) and += (onto an f32 tensor, one f32 add)
                 "half": b64(half_src, "f32"), "floatInit": b64(float_dst, "f32"),
                 "toFloat": b64(half_src, "f32"), "toFloatAccumulated": b64(float_dst + half_src, "f32")},
    }


def f16_cases():
    g = torch.Generator().manual_seed(16)
    return {
        "rmsnorm": [
            norm_case_f16("rms", "f16: rows 5 cols 96", 5, 96, 1e-6, g),
            norm_case_f16("rms", "f16: rows 16 cols 576 (SmolLM width)", 16, 576, 1e-5, g),
        ],
        "layernorm": [
            norm_case_f16("layer", "f16: rows 16 cols 576, mean 20", 16, 576, 1e-5, g, shift=20.0),
            norm_case_f16("layer", "f16: odd, no bias: rows 7 cols 33", 7, 33, 1e-5, g, bias=False),
        ],
        "swiglu": [swiglu_case_f16("f16: 1031 elements with |gate| up to 1e4", 1031, g)],
        "gelu": [gelu_case_f16("f16: 1031 elements with |x| up to 6e4", 1031, g)],
        "embedding": [embedding_case_f16("f16: vocab 50 dim 24, 40 tokens over 6 ids, positions seqLen 8 offset 2", 50, 24, 40, 6, g, (16, 8, 2))],
        "elementwise": elementwise_cases_f16(g),
    }


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(11)
    payload = {
        "rmsnorm": [
            norm_case("rms", "rows 5 cols 96", 5, 96, 1e-6, g),
            norm_case("rms", "rows 16 cols 576 (SmolLM width)", 16, 576, 1e-5, g),
            norm_case("rms", "odd: rows 3 cols 67, |x| ~ 1e-3 so eps matters", 3, 67, 1e-6, g, scale=1e-3),
            norm_case("rms", "wide: rows 1 cols 4096", 1, 4096, 1e-5, g),
        ],
        "layernorm": [
            norm_case("layer", "rows 5 cols 96", 5, 96, 1e-5, g),
            norm_case("layer", "rows 16 cols 576, mean 20", 16, 576, 1e-5, g, shift=20.0),
            norm_case("layer", "odd, no bias: rows 7 cols 33, |x| ~ 3e-3 so eps matters", 7, 33, 1e-5, g, bias=False, scale=3e-3),
            norm_case("layer", "wide: rows 1 cols 4096", 1, 4096, 1e-5, g),
        ],
        "swiglu": [swiglu_case("1031 elements with |gate| up to 1e13", 1031, g)],
        "gelu": [gelu_case("1031 elements with |x| up to 1e13", 1031, g)],
        "embedding": [
            embedding_case("vocab 50 dim 24, 12 tokens, positions seqLen 4 offset 3", 50, 24, 12, 5, g, positions=(16, 4, 3), accumulate=True),
            embedding_case("vocab 60 dim 130, 64 tokens over 12 ids", 60, 130, 64, 12, g),
        ],
        "elementwise": elementwise_cases(g),
        "adamw": [
            adamw_case("clipped: max_norm 1, 4 steps", [37, 300], 4, g, 1e-2, (0.9, 0.95), 1e-6, 0.1, 1.0, 1.0, 1.0),
            adamw_case("grad scale 0.25 (accumulation), max_norm 0.5, 3 steps", [64, 129], 3, g, 3e-3, (0.8, 0.999), 1e-8, 0.01, 0.5, 0.25, 2.0),
            adamw_case("no clipping (max_norm inf), 3 steps", [50], 3, g, 1e-3, (0.9, 0.999), 1e-8, 0.0, math.inf, 1.0, 0.1),
        ],
        "f16": f16_cases(),
    }
    write_fixture("packages/gpu/test/fixtures/transformer-ops.json", "scripts/make_transformer_op_fixtures.py", payload)


if __name__ == "__main__":
    main()
