"""Goldens for the pointwise activations (packages/gpu/src/kernels/pointwise.ts) from PyTorch,
float32, plus an "f16" section. The small MLPs of bottleneck adapters (AdapterHub's 'relu' and
'swish'), prefix tuning's projection (tanh) and UniPELT's gates (sigmoid) use them.

- forward: F.relu(x), F.silu(x), torch.tanh(x), torch.sigmoid(x).
- backward: autograd's dL/dx for loss = sum(y * upstream), i.e. upstream * f'(x) (relu'(0) = 0 as
  PyTorch's threshold_backward; silu' = s (1 + x (1 - s)); tanh' = 1 - y^2 and sigmoid' = y (1 - y)
  from PyTorch's float32 y), and gradInit + dL/dx for the accumulating backward (the add in float32).

x is 3 * randn with extremes written over its first elements: values that overflow a naive exp or
tanh (+-30, +-100, +-1e4, +-1e13), tanh's and sigmoid's saturation (+-9, +-10), exact zero (relu's
kink), small values where tanh and silu are nearly linear (+-1e-3, +-1e-6), tanh's 0.625 (where
the shader switches from its polynomial to exp), and silu's minimum -1.2785 (silu' = 0 there).

f16 (f16 storage, f32 arithmetic, as the kernels' dtype 'f16' does): x, upstream and gradInit are
rounded to float16, the reference is computed in float32 from the rounded values, and the
expected outputs are rounded to float16; |x| stays within 6e4 (f16's range). Everything is stored
as float32 (every float16 value is exact in float32). The f16 cases draw from their own generator,
so the float32 cases do not change; sigmoid comes last in FUNCTIONS, so adding it left the other
functions' cases byte for byte.

Run: /usr/bin/python3 scripts/make_pointwise_fixtures.py
Writes packages/gpu/test/fixtures/pointwise.json.
"""
import torch
import torch.nn.functional as F

from fixture_io import b64, write_fixture

FUNCTIONS = {"relu": F.relu, "silu": F.silu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
# Sizes: 1 element, fewer than a workgroup, and several workgroups with a partial last one.
SIZES = [1, 37, 1031]


def randn(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g, dtype=torch.float32) * scale


def with_extremes(v, big):
    """Overwrites the first elements (as many as fit) with the edge values the docstring lists."""
    extremes = torch.tensor([0.0, 30.0, -30.0, 100.0, -100.0, 1e4, -1e4, big, -big, 9.0, -9.0, 10.0, -10.0,
                             1e-3, -1e-3, 1e-6, -1e-6, 0.625, -0.625, 0.62499994, -1.2785, 5.5, -5.5])
    v = v.clone()
    n = min(len(v), len(extremes))
    v[:n] = extremes[:n]
    return v


def h(t):
    """Rounded to float16 and back: the value an f16 tensor holds, exact in float32."""
    return t.detach().half().float()


def h_out(t):
    """An expected f16 output: the float32 reference rounded to float16 (must stay finite)."""
    r = h(t)
    assert torch.isfinite(r).all(), "an f16 expected value overflowed; pick smaller inputs"
    return b64(r, "f32")


def case(fn, size, g, half):
    act = h if half else (lambda t: t)
    out = h_out if half else (lambda t: b64(t, "f32"))
    x = act(with_extremes(randn(g, size, scale=3.0), big=6e4 if half else 1e13)).requires_grad_()
    upstream = act(randn(g, size))
    grad_init = act(randn(g, size))
    y = FUNCTIONS[fn](x)
    (y * upstream).sum().backward()
    return {"name": f"{'f16: ' if half else ''}{fn}, {size} element{'s' if size > 1 else ''}", "fn": fn, "size": size,
            "x": b64(x, "f32"), "upstream": b64(upstream, "f32"), "gradInit": b64(grad_init, "f32"),
            "y": out(y), "gradX": out(x.grad), "gradAccumulated": out(grad_init + x.grad)}


def cases(g, half):
    return [case(fn, size, g, half) for fn in FUNCTIONS for size in SIZES]


def main():
    payload = {"cases": cases(torch.Generator().manual_seed(0), half=False)}
    payload["f16"] = cases(torch.Generator().manual_seed(16), half=True)
    write_fixture("packages/gpu/test/fixtures/pointwise.json", "scripts/make_pointwise_fixtures.py", payload)


if __name__ == "__main__":
    main()
