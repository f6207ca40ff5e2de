"""NF4 golden values from an independent Python implementation of bitsandbytes' default
(torch) backend: bitsandbytes/backends/default/ops.py (quantize_4bit, quantize_blockwise,
dequantize_*) and functional.py (quantize_4bit with compress_statistics=True,
create_dynamic_map). Written from those sources' semantics, not from webtune's code.

Run: /usr/bin/python3 scripts/make_nf4_fixtures.py
Writes packages/gpu/test/fixtures/nf4.json.
"""
import math

import torch

from fixture_io import b64, write_fixture

NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
], dtype=torch.float32)


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    # bitsandbytes functional.create_dynamic_map
    data = []
    non_sign_bits = total_bits - (1 if signed else 1)
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    if additional_items > 0:
        boundaries = torch.linspace(0.1, 1, additional_items + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def blockwise_scale(flat, blocksize):
    """absmax per block (a short last block has its own) and values scaled by x * (1/absmax), clamped."""
    n = flat.numel()
    rem = n % blocksize
    full = n // blocksize
    blocks = full + (1 if rem else 0)
    absmax = torch.zeros(blocks, dtype=torch.float32)
    parts = []
    if full:
        fb = flat[: n - rem].reshape(full, blocksize)
        absmax[:full] = fb.abs().max(dim=-1)[0]
        parts.append(torch.clamp(fb * (1 / absmax[:full].view(-1, 1)), -1, 1).reshape(-1))
    if rem:
        r = flat[n - rem:]
        absmax[-1] = r.abs().max()
        parts.append(torch.clamp(r * (1 / absmax[-1]), -1, 1))
    return absmax, torch.cat(parts)


def nearest_code(scaled, code):
    # torch.argmin returns the first minimum: an exact tie goes to the lower code;
    # NaN (an all-zero block scaled by 1/0) gives index 0, as bitsandbytes does.
    return torch.argmin(torch.abs(scaled.view(-1, 1) - code), dim=-1).to(torch.uint8)


def quantize_nf4(x, blocksize=64, double_quant=False):
    flat = x.reshape(-1).to(torch.float32)
    absmax, scaled = blockwise_scale(flat, blocksize)
    if scaled.numel() % 2:
        scaled = torch.nn.functional.pad(scaled, (0, 1), value=0.0)
    q = nearest_code(scaled, NF4_CODE)
    packed = (q[::2] << 4) | q[1::2]
    out = {"packed": packed, "absmax": absmax}
    if double_quant:
        # functional.quantize_4bit(compress_statistics=True): offset = absmax.mean(); the
        # float32 mean is taken in float64 and rounded once, a correctly rounded mean
        # (torch's float32 cascade sum may differ in the last bit; the offset is stored,
        # so files stay interchangeable).
        offset = absmax.double().mean().float()
        centered = absmax - offset
        dyn = create_dynamic_map()
        absmax2, scaled2 = blockwise_scale(centered, 256)
        q2 = nearest_code(scaled2, dyn)
        out.update({"nestedAbsmax": absmax2, "quantizedAbsmax": q2, "offset": offset, "dynamicMap": dyn})
    return out


def dequantize_nf4(packed, absmax, n, blocksize):
    q = torch.empty(packed.numel() * 2, dtype=torch.long)
    q[::2] = (packed >> 4).long()
    q[1::2] = (packed & 15).long()
    vals = NF4_CODE[q[:n]]
    idx = torch.arange(n) // blocksize
    return vals * absmax[idx]


def dequantize_absmax(q2, absmax2, offset, dyn):
    idx = torch.arange(q2.numel()) // 256
    return dyn[q2.long()] * absmax2[idx] + offset


def tie_inputs():
    """Values exactly on the midpoints between adjacent codes (absmax pinned to 1.0 so x*(1/absmax) == x),
    plus one float32 step above and below each, and the codes themselves."""
    mids = ((NF4_CODE[:-1] + NF4_CODE[1:]) / 2).tolist()
    vals = []
    for m in mids:
        t = torch.tensor(m, dtype=torch.float32)
        vals += [t.item(), torch.nextafter(t, torch.tensor(2.0)).item(), torch.nextafter(t, torch.tensor(-2.0)).item()]
    vals += NF4_CODE.tolist()
    vals = vals[: 63]
    return torch.tensor([1.0] + vals, dtype=torch.float32)  # 64 values, absmax exactly 1


def main():
    g = torch.Generator().manual_seed(20261121)
    cases = []

    def add(name, x, blocksize=64, double_quant=False):
        r = quantize_nf4(x, blocksize, double_quant)
        n = x.numel()
        case = {
            "name": name,
            "blockSize": blocksize,
            "doubleQuant": double_quant,
            "shape": list(x.shape),
            "input": b64(x, "f32"),
            "packed": b64(r["packed"], "u8"),
            "absmax": b64(r["absmax"], "f32"),
        }
        absmax = r["absmax"]
        if double_quant:
            absmax = dequantize_absmax(r["quantizedAbsmax"], r["nestedAbsmax"], r["offset"], r["dynamicMap"])
            case.update({
                "quantizedAbsmax": b64(r["quantizedAbsmax"], "u8"),
                "nestedAbsmax": b64(r["nestedAbsmax"], "f32"),
                "offset": r["offset"].item(),
            })
        case["dequantized"] = b64(dequantize_nf4(r["packed"], absmax, n, blocksize), "f32")
        cases.append(case)

    add("ties on every midpoint, absmax 1", tie_inputs())
    add("normal 4x64 + short last block of 17", torch.randn(4 * 64 + 17, generator=g))
    add("odd element count 3x65", torch.randn(3, 65, generator=g) * 0.02)
    add("all-zero block then values", torch.cat([torch.zeros(64), torch.randn(64, generator=g)]))
    add("outliers, block size 128", torch.randn(8, 48, generator=g) * torch.tensor([1.0, 100.0]).repeat(192)[:384].view(8, 48))
    add("single element", torch.tensor([-0.37], dtype=torch.float32))
    add("double quant, 300 blocks (2 nested blocks, short last)", torch.randn(300, 64, generator=g) * 0.05, 64, True)
    add("double quant, block size 256 and short last block", torch.randn(40 * 256 + 100, generator=g), 256, True)

    write_fixture("packages/gpu/test/fixtures/nf4.json", "scripts/make_nf4_fixtures.py", {
        "nf4Code": b64(NF4_CODE, "f32"),
        "dynamicMap": b64(create_dynamic_map(), "f32"),
        "cases": cases,
    })


if __name__ == "__main__":
    main()
