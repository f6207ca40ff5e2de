"""Goldens for DoRA's weight norm (packages/gpu/src/kernels/dora.ts) from PyTorch, float32, plus
an "f16" section. PEFT's DoraLinearLayer.get_weight_norm (tuners/lora/dora.py):

    weight = weight + scaling * lora_weight          # lora_weight = B @ A
    weight_norm = torch.linalg.norm(weight, dim=1)   # one norm per output row

and the magnitude scale DoRA applies, m / weight_norm. Here: norm = ||W + s B A||_2 per row,
invNorm = 1 / norm, mOverNorm = m / norm, for W [out, in], A [r, in], B [out, r], m [out].

Shapes (out, in, r): (1, 4, 1) the smallest, (5, 7, 3) fewer columns than the kernel's threads,
(64, 48, 4), (300, 129, 8) (129 leaves one column past a multiple of 128), (33, 2050, 16)
(several columns per thread). Each shape with a magnitude and without one (mOverNorm then absent).
B is random rather than PEFT's zero init, so the LoRA term matters; s = alpha / r varies.

f16 (f16 storage of W, f32 arithmetic, as the kernel's dtype 'f16' does): W is rounded to float16
and stored as float32 (exact), A, B and m stay float32, and the reference is computed in float32
from the rounded W; the outputs are float32. The f16 cases draw from their own generator, so the
float32 cases do not change.

Run: /usr/bin/python3 scripts/make_dora_fixtures.py
Writes packages/gpu/test/fixtures/dora.json.
"""
import torch

from fixture_io import b64, write_fixture

# (out, in, r, alpha)
SHAPES = [(1, 4, 1, 2), (5, 7, 3, 6), (64, 48, 4, 8), (300, 129, 8, 16), (33, 2050, 16, 8)]


def randn(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g, dtype=torch.float32) * scale


def case(out, inp, r, alpha, with_m, g, half):
    # A Linear-like weight (std 1 / sqrt(in)) and LoRA factors of the same order as a trained pair.
    w = randn(g, out, inp, scale=inp ** -0.5)
    if half:
        w = w.half().float()
    a = randn(g, r, inp, scale=inp ** -0.5)
    b = randn(g, out, r, scale=0.5)
    s = alpha / r
    norm = torch.linalg.norm(w + s * (b @ a), dim=1)
    c = {"name": f"{'f16: ' if half else ''}out {out} in {inp} r {r}{'' if with_m else ', no m'}",
         "out": out, "in": inp, "rank": r, "scale": s,
         "weight": b64(w, "f32"), "a": b64(a, "f32"), "b": b64(b, "f32"),
         "norm": b64(norm, "f32"), "invNorm": b64(1 / norm, "f32")}
    if with_m:
        # DoRA initializes m to the norm itself; a trained m drifts from it.
        m = norm * (1 + randn(g, out, scale=0.1))
        c["magnitude"] = b64(m, "f32")
        c["mOverNorm"] = b64(m / norm, "f32")
    return c


def cases(g, half):
    return [case(out, inp, r, alpha, with_m, g, half) for out, inp, r, alpha in SHAPES for with_m in (True, False)]


def main():
    payload = {"cases": cases(torch.Generator().manual_seed(0), half=False),
               "f16": cases(torch.Generator().manual_seed(16), half=True)}
    write_fixture("packages/gpu/test/fixtures/dora.json", "scripts/make_dora_fixtures.py", payload)


if __name__ == "__main__":
    main()
