"""Goldens for the vector-scale kernels (packages/gpu/src/kernels/vector-scale.ts) from PyTorch,
float32, plus an "f16" section:

- scaleColumns: src * v (a [rows, cols] activation times a learned [cols] vector, broadcast over
  rows: IA3's scaling), and dstInit + src * v for accumulate.
- columnDot: (a * b).sum(0), or a.sum(0) without b (IA3's vector gradient, BitFit's bias
  gradient), and outInit + that for accumulate.
- scaleRows: src * gate[:, offset:offset + 1] (a [rows, cols] activation times one column of an f32
  [rows, stride] gate tensor, broadcast over columns: UniPELT's per-token gates), and dstInit + that
  for accumulate. The gate's other columns hold values of their own, so reading the wrong column
  shows.
- rowDot: (a * b).sum(1) written into column `offset` of an f32 [rows, stride] tensor that starts
  as outInit: `out` is outInit with that column replaced, `outAccumulated` with it added to (the
  other columns stay outInit's).

Shapes cover rows 1, 7, 9, 300, 2050 (none a multiple of columnDot's 8 row threads) and cols 1,
3, 64, 577 (577 = 18 * 32 + 1 leaves a partial 32-column tile); columnDot with b and without.
rowDot's cols add 63, 65 and 4100 around and past its 64 invocations per row; strides 1 to 4 with
every kind of offset (first, middle, last column).

f16 (f16 storage, f32 arithmetic, as the kernels' dtype 'f16' does): the activations (src, dstInit,
a, b) are rounded to float16, the vector, gates and outInit stay float32, the reference is computed
in float32 from the rounded values, and scaleColumns' and scaleRows' outputs are rounded to
float16 (columnDot's and rowDot's out are float32). Everything is stored as float32 (every float16 value is exact in float32). The f16
cases draw from their own generator, so the float32 cases do not change.

Run: /usr/bin/python3 scripts/make_vector_scale_fixtures.py
Writes packages/gpu/test/fixtures/vector-scale.json.
"""
import torch

from fixture_io import b64, write_fixture

SCALE_SHAPES = [(1, 577), (7, 3), (300, 1), (13, 64), (2050, 3)]
# (rows, cols, with b)
DOT_SHAPES = [(1, 577, True), (7, 3, False), (300, 64, True), (300, 64, False), (2050, 1, True), (2050, 3, False), (9, 577, True)]
# (rows, cols, gate stride, gate offset)
SCALE_ROWS_SHAPES = [(1, 577, 1, 0), (7, 3, 2, 1), (300, 1, 3, 2), (13, 64, 2, 0), (2050, 3, 1, 0)]
# (rows, cols, out stride, out offset)
ROW_DOT_SHAPES = [(1, 577, 1, 0), (7, 3, 2, 1), (300, 16, 3, 2), (3, 4100, 2, 0), (2050, 1, 1, 0), (5, 63, 1, 0), (3, 65, 4, 3)]


def randn(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g, dtype=torch.float32) * scale


def h(t):
    """Rounded to float16 and back: the value an f16 tensor holds, exact in float32."""
    return t.detach().half().float()


def h_out(t):
    """An expected f16 output: the float32 reference rounded to float16 (must stay finite)."""
    r = h(t)
    assert torch.isfinite(r).all(), "an f16 expected value overflowed; pick smaller inputs"
    return b64(r, "f32")


def scale_case(rows, cols, g, half):
    act = h if half else (lambda t: t)
    out = h_out if half else (lambda t: b64(t, "f32"))
    src = act(randn(g, rows, cols, scale=2.0))
    # IA3 vectors start at ones and drift; a spread around 1 with a few negatives.
    v = randn(g, cols, scale=0.5) + 1.0
    dst_init = act(randn(g, rows, cols))
    return {"name": f"{'f16: ' if half else ''}rows {rows} cols {cols}", "rows": rows, "cols": cols,
            "src": b64(src, "f32"), "vector": b64(v, "f32"), "dstInit": b64(dst_init, "f32"),
            "out": out(src * v), "outAccumulated": out(dst_init + src * v)}


def dot_case(rows, cols, with_b, g, half):
    act = h if half else (lambda t: t)
    a = act(randn(g, rows, cols))
    b = act(randn(g, rows, cols, scale=1.5)) if with_b else None
    out_init = randn(g, cols)
    total = (a * b).sum(0) if b is not None else a.sum(0)
    case = {"name": f"{'f16: ' if half else ''}rows {rows} cols {cols}{'' if with_b else ', no b'}", "rows": rows, "cols": cols,
            "a": b64(a, "f32"), "outInit": b64(out_init, "f32"), "out": b64(total, "f32"),
            "outAccumulated": b64(out_init + total, "f32")}
    if b is not None:
        case["b"] = b64(b, "f32")
    return case


def scale_rows_case(rows, cols, stride, offset, g, half):
    act = h if half else (lambda t: t)
    out = h_out if half else (lambda t: b64(t, "f32"))
    src = act(randn(g, rows, cols, scale=2.0))
    # Gates are sigmoid outputs in practice; any float works, so spread them past [0, 1].
    gate = randn(g, rows, stride, scale=0.5) + 0.5
    dst_init = act(randn(g, rows, cols))
    y = src * gate[:, offset:offset + 1]
    return {"name": f"{'f16: ' if half else ''}rows {rows} cols {cols}, gate column {offset} of {stride}", "rows": rows,
            "cols": cols, "gateStride": stride, "gateOffset": offset,
            "src": b64(src, "f32"), "gate": b64(gate, "f32"), "dstInit": b64(dst_init, "f32"),
            "out": out(y), "outAccumulated": out(dst_init + y)}


def row_dot_case(rows, cols, stride, offset, g, half):
    act = h if half else (lambda t: t)
    a = act(randn(g, rows, cols))
    b = act(randn(g, rows, cols, scale=1.5))
    out_init = randn(g, rows, stride)
    total = (a * b).sum(1)
    out = out_init.clone()
    out[:, offset] = total
    accumulated = out_init.clone()
    accumulated[:, offset] += total
    return {"name": f"{'f16: ' if half else ''}rows {rows} cols {cols}, out column {offset} of {stride}", "rows": rows,
            "cols": cols, "outStride": stride, "outOffset": offset,
            "a": b64(a, "f32"), "b": b64(b, "f32"), "outInit": b64(out_init, "f32"), "out": b64(out, "f32"),
            "outAccumulated": b64(accumulated, "f32")}


def cases(g, half):
    # The row ops draw after the column ops, so adding them left the column cases byte for byte.
    doc = {
        "scaleColumns": [scale_case(rows, cols, g, half) for rows, cols in SCALE_SHAPES],
        "columnDot": [dot_case(rows, cols, with_b, g, half) for rows, cols, with_b in DOT_SHAPES],
    }
    doc["scaleRows"] = [scale_rows_case(rows, cols, stride, offset, g, half) for rows, cols, stride, offset in SCALE_ROWS_SHAPES]
    doc["rowDot"] = [row_dot_case(rows, cols, stride, offset, g, half) for rows, cols, stride, offset in ROW_DOT_SHAPES]
    return doc


def main():
    payload = cases(torch.Generator().manual_seed(0), half=False)
    payload["f16"] = cases(torch.Generator().manual_seed(16), half=True)
    write_fixture("packages/gpu/test/fixtures/vector-scale.json", "scripts/make_vector_scale_fixtures.py", payload)


if __name__ == "__main__":
    main()
