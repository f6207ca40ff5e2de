"""LoRA layer goldens from PyTorch autograd (PEFT's formula, REFERENCE.md):
    y = x W^T + s * (x A^T) B^T,   A: [r, in], B: [out, r], s = alpha / r
with W either float32 or NF4-dequantized (W_dq from the bitsandbytes-default-backend
implementation in make_nf4_fixtures.py). For an upstream gradient G = dL/dy (loss = sum(y * G))
autograd gives dx, dA, dB; W is frozen. B is random (not PEFT's zero init) so every
gradient is non-trivial.

Run: /usr/bin/python3 scripts/make_lora_fixtures.py
Writes packages/gpu/test/fixtures/lora.json.
"""
import torch

from fixture_io import b64, write_fixture
from make_nf4_fixtures import dequantize_absmax, dequantize_nf4, quantize_nf4


def case(name, m, k, n, r, alpha, g, weight="f32", batch=None):
    lead = [batch] if batch else []
    x = torch.randn(*lead, m, k, generator=g, dtype=torch.float32).requires_grad_()
    w = torch.randn(n, k, generator=g) / k ** 0.5
    bound = 1 / k ** 0.5  # kaiming_uniform(a=sqrt(5)) on A: U(-1/sqrt(in), 1/sqrt(in))
    a = ((torch.rand(r, k, generator=g) * 2 - 1) * bound).requires_grad_()
    b = (torch.randn(n, r, generator=g) * 0.1).requires_grad_()
    upstream = torch.randn(*lead, m, n, generator=g)
    s = alpha / r
    out = {"name": name, "m": m, "k": k, "n": n, "rank": r, "alpha": alpha, "scale": s, "weightFormat": weight}
    if batch:
        out["batch"] = batch
    if weight == "nf4":
        q = quantize_nf4(w, 64, True)
        absmax = dequantize_absmax(q["quantizedAbsmax"], q["nestedAbsmax"], q["offset"], q["dynamicMap"])
        w_used = dequantize_nf4(q["packed"], absmax, w.numel(), 64).view(n, k)
    else:
        w_used = w
    y = x @ w_used.T + s * (x @ a.T) @ b.T
    (y * upstream).sum().backward()
    out.update({
        "x": b64(x, "f32"), "weight": b64(w, "f32"), "loraA": b64(a, "f32"), "loraB": b64(b, "f32"),
        "upstream": b64(upstream, "f32"), "y": b64(y, "f32"),
        "dx": b64(x.grad, "f32"), "dA": b64(a.grad, "f32"), "dB": b64(b.grad, "f32"),
    })
    return out


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(7)
    cases = [
        case("tiny 1x1x1 rank 1", 1, 1, 1, 1, 2.0, g),
        case("odd 17x33 -> 65 rank 4", 17, 33, 65, 4, 8.0, g),
        case("rank 8, alpha 16, 64x128 -> 96", 64, 128, 96, 8, 16.0, g),
        case("NF4 weight 24x192 -> 80 rank 8", 24, 192, 80, 8, 8.0, g, weight="nf4"),
        case("NF4 weight, odd 9x96 -> 33 rank 3", 9, 96, 33, 3, 6.0, g, weight="nf4"),
    ]
    write_fixture("packages/gpu/test/fixtures/lora.json", "scripts/make_lora_fixtures.py", {"cases": cases})


if __name__ == "__main__":
    main()
