"""Goldens for the matmul kernels (packages/gpu/src/kernels/matmul.ts) from PyTorch, at the edges
of matmul-tiled.wgsl's 64 x 64 output tiles and 16-deep K steps: M, N and K one past a tile, K
below a step (and below a quad), whole tiles, several tiles per side with a partial last one, and
a batch sharing A or B (stride 0). Each case also runs under every other KernelTuning.matmul.

Operands are stored as the kernel reads them: A [batch, M, K], or [batch, K, M] with transA; B
[batch, K, N], or [batch, N, K] with transB; a shared operand has batch 1. `expected` is
alpha * op(A) op(B) (+ c0 with accumulate) in float64 from the stored float32 values;
`expectedF16` the same from the operands (and c0) rounded to float16, as the kernels' dtype 'f16'
stores them (f32 accumulation; the test rounds the result to float16 as the kernel's output is).

Run: /usr/bin/python3 scripts/make_matmul_fixtures.py
Writes packages/gpu/test/fixtures/matmul.json.
"""
import torch

from fixture_io import b64, write_fixture

CASES = [
    dict(name="65x66x17 tile edges A^T B^T alpha 0.5 accumulate", m=65, n=66, k=17, transA=True, transB=True, alpha=0.5, accumulate=True),
    dict(name="64x64x16 one whole tile", m=64, n=64, k=16),
    dict(name="1x130x3 A^T, K below a quad", m=1, n=130, k=3, transA=True),
    dict(name="batched 2x 33x65x20, shared A", m=33, n=65, k=20, batch=2, broadcastA=True),
    dict(name="batched 3x 70x9x5 B^T, shared B accumulate", m=70, n=9, k=5, batch=3, transB=True, broadcastB=True, accumulate=True),
    dict(name="batched 2x 130x72x36 B^T, shared A", m=130, n=72, k=36, batch=2, transB=True, broadcastA=True),
]


def product(a, b, c0, case):
    m, n, k, batch = case["m"], case["n"], case["k"], case.get("batch", 1)
    a = a.double().reshape(-1, *((k, m) if case.get("transA") else (m, k)))
    b = b.double().reshape(-1, *((n, k) if case.get("transB") else (k, n)))
    op_a = a.transpose(1, 2) if case.get("transA") else a
    op_b = b.transpose(1, 2) if case.get("transB") else b
    out = case.get("alpha", 1.0) * torch.matmul(op_a, op_b).expand(batch, m, n)
    if c0 is not None:
        out = out + c0.double().reshape(batch, m, n)
    return out.reshape(-1).float()


def main():
    gen = torch.Generator().manual_seed(2026)
    cases = []
    for case in CASES:
        m, n, k, batch = case["m"], case["n"], case["k"], case.get("batch", 1)
        a = torch.randn((1 if case.get("broadcastA") else batch) * m * k, generator=gen)
        b = torch.randn((1 if case.get("broadcastB") else batch) * k * n, generator=gen)
        c0 = torch.randn(batch * m * n, generator=gen) if case.get("accumulate") else None
        half = lambda t: None if t is None else t.half().float()
        out = {**case, "a": b64(a, "f32"), "b": b64(b, "f32"), "expected": b64(product(a, b, c0, case), "f32"),
               "expectedF16": b64(product(half(a), half(b), half(c0), case), "f32")}
        if c0 is not None:
            out["c0"] = b64(c0, "f32")
        cases.append(out)
    write_fixture("packages/gpu/test/fixtures/matmul.json", "scripts/make_matmul_fixtures.py", {"cases": cases})


if __name__ == "__main__":
    main()
