"""Test vectors for webtune's secure aggregation (SecAgg+) primitives, computed here from upstream
implementations and never from webtune's TypeScript:

  - Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning"
    (CCS 2017), section 4: Shamir sharing of the self-mask seed b_i and of the mask private key,
    masked input y_i = x_i + PRG(b_i) + sum_{j != i} sign(i, j) PRG(s_ij) mod R, sign +1 for j > i
    and -1 for j < i, so the pairwise masks cancel in the sum;
  - Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead" (CCS 2020),
    the SecAgg+ neighbour graph (masks only between neighbours; the same formula over neighbours);
  - Flower, src/py/flwr/common/secure_aggregation/quantization.py: clip to [-c, c], map to the
    integer range, stochastic rounding, dequantization of a sum of n inputs by subtracting n c.
    webtune's documented variant (quantize.ts) scales by (Q - 1) / (2c), so the largest value is
    Q - 1, and rounds up iff u < v - floor(v) for a uniform u in [0, 1) (Flower rounds down iff
    ceil(v) - v > u: the same distribution, another use of u). Computed here with exact rationals
    (fractions.Fraction of the doubles), and checked against plain double arithmetic;
  - RFC 5869 (HKDF) through cryptography's HKDF(SHA256); RFC 7748 (X25519) and RFC 5903 (ECDH on
    the NIST P-256 group) through cryptography's X25519 and ECDH(SECP256R1); AES-256-CTR and
    AES-256-GCM through cryptography's Cipher/AESGCM (OpenSSL). The published vectors of RFC 5869
    A.1-A.3, RFC 7748 6.1, RFC 5903 8.1 and McGrew-Viega GCM test case 16 are asserted here too,
    so the library reproduces them before it is trusted for the rest.

Shamir (Shamir 1979) is computed with Python integers over GF(2^521 - 1): fixed coefficients, shares
by Horner's rule, and every listed subset interpolated at 0 with Lagrange's formula (inverse by
pow(a, -1, p)) to give the secret back.

Conventions of webtune (packages/federated/src/secagg) that the vectors follow:
  HKDF salt utf8 "webtune-secagg/v1/round/<roundId>", info "share-encryption" / "pairwise-mask" /
  "self-mask", 32 bytes; mask PRG = AES-256-CTR keystream (encryption of zeros) with a 16-byte
  counter block starting at zero (cryptography's CTR counts in all 128 bits, the same while the
  stream is under 2^64 blocks), read as little-endian uint32 words; share AAD = utf8
  "webtune-secagg-share" || round || from || to (u32 BE); share plaintext = from || to || round
  (u32 BE) || seed share (66 B) || key share (66 B); masked input = "WTSM" || round || base version
  || words (u32 LE) || words (u32 LE).

Run: /usr/bin/python3 scripts/make_secagg_fixtures.py (Debian python3-cryptography, python3-numpy; a newer
cryptography and numpy write the same vectors)
Writes packages/federated/test/fixtures/secagg-vectors.json.
"""
import hashlib
import itertools
import json
import math
import os
import struct
import sys
from fractions import Fraction

import cryptography
import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = "packages/federated/test/fixtures/secagg-vectors.json"

P = 2**521 - 1
SHARE_BYTES = 66
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def h(b):
    return b.hex()


def unhex(s):
    return bytes.fromhex("".join(s.split()))


def label_bytes(label, n=32):
    """Fixed bytes for a label (SHA-512 prefix): reproducible 'random-looking' constants."""
    return hashlib.sha512(label.encode()).digest()[:n]


# ----------------------------------------------------------------------------------------------
# Published vectors, asserted against cryptography (the TS test transcribes the same values).
# ----------------------------------------------------------------------------------------------
def hkdf_sha256(ikm, salt, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def check_published():
    # RFC 5869 Appendix A.1-A.3 (SHA-256).
    assert hkdf_sha256(b"\x0b" * 22, bytes(range(0x00, 0x0D)), bytes(range(0xF0, 0xFA)), 42) == unhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
    assert hkdf_sha256(bytes(range(0x00, 0x50)), bytes(range(0x60, 0xB0)), bytes(range(0xB0, 0x100)), 82) == unhex(
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87")
    assert hkdf_sha256(b"\x0b" * 22, b"", b"", 42) == unhex(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")
    # RFC 7748 section 6.1.
    a = x25519.X25519PrivateKey.from_private_bytes(unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    b = x25519.X25519PrivateKey.from_private_bytes(unhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
    raw = lambda k: k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw(a) == unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert raw(b) == unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    assert a.exchange(b.public_key()) == b.exchange(a.public_key()) == unhex(
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    # RFC 5903 section 8.1 (256-bit random ECP group).
    i = ec.derive_private_key(int("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433", 16), ec.SECP256R1())
    r = ec.derive_private_key(int("C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53", 16), ec.SECP256R1())
    gi, gr = i.public_key().public_numbers(), r.public_key().public_numbers()
    assert (gi.x, gi.y) == (int("DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180", 16),
                            int("5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3", 16))
    assert (gr.x, gr.y) == (int("D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63", 16),
                            int("56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB", 16))
    assert i.exchange(ec.ECDH(), r.public_key()) == r.exchange(ec.ECDH(), i.public_key()) == unhex(
        "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE")
    # McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", test case 16 (AES-256, AAD, 96-bit IV).
    key = unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    iv = unhex("cafebabefacedbaddecaf888")
    pt = unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
               "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
    aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    ct = unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
               "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662")
    tag = unhex("76fc6ece0f4e1768cddf8853bb2d551b")
    assert AESGCM(key).encrypt(iv, pt, aad) == ct + tag


# ----------------------------------------------------------------------------------------------
# a. Shamir over GF(2^521 - 1)
# ----------------------------------------------------------------------------------------------
def horner(coeffs, x):
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % P
    return acc


def lagrange_at_zero(points):
    secret = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if j != i:
                num = num * (-xj) % P
                den = den * (xi - xj) % P
        secret = (secret + yi * num * pow(den, -1, P)) % P
    return secret


def shamir_case(name, secret, threshold, xs, coefficients, subsets):
    s = int.from_bytes(secret, "big")
    assert s < P and len(coefficients) == threshold - 1
    poly = [s] + [c % P for c in coefficients]
    shares = {x: horner(poly, x) for x in xs}
    # Horner against the plain power sum, as a second computation of the same polynomial.
    for x in xs:
        assert shares[x] == sum(c * pow(x, k, P) for k, c in enumerate(poly)) % P
    for subset in subsets:
        assert len(subset) >= threshold and len(set(subset)) == len(subset)
        assert lagrange_at_zero([(x, shares[x]) for x in subset[:threshold]]) == s, (name, subset)
    # Fewer than threshold points interpolate to something else (the lower-degree polynomial).
    if threshold > 1:
        assert lagrange_at_zero([(x, shares[x]) for x in xs[: threshold - 1]]) != s
    return {
        "name": name,
        "secret": h(secret),
        "threshold": threshold,
        "xs": xs,
        "coefficients": [format(c, "x") for c in coefficients],
        "shares": [h(shares[x].to_bytes(SHARE_BYTES, "big")) for x in xs],
        "subsets": subsets,
    }


def coeffs(label, count):
    return [int.from_bytes(hashlib.sha512(f"{label}/{k}".encode()).digest() + b"\x01\xff", "big") % P for k in range(count)]


def all_subsets(xs, t, reorder=False):
    out = [list(c) for c in itertools.combinations(xs, t)]
    if reorder:  # the same subsets in other orders: interpolation does not depend on it
        out += [list(reversed(c)) for c in out[::3]]
    return out


def make_shamir():
    cases = []
    xs5 = [1, 2, 3, 4, 5]
    cases.append(shamir_case("32 zero bytes, t=3 of n=5", bytes(32), 3, xs5, coeffs("zero32", 2), all_subsets(xs5, 3, True)))
    cases.append(shamir_case("32 bytes 0xff, t=3, points 2,4,7,9,12", b"\xff" * 32, 3, [2, 4, 7, 9, 12], coeffs("ff32", 2),
                             all_subsets([2, 4, 7, 9, 12], 3, True)))
    cases.append(shamir_case("32 bytes 00..1f, t=2 of n=4, coefficient p-1", bytes(range(32)), 2, [1, 2, 3, 4], [P - 1],
                             all_subsets([1, 2, 3, 4], 2, True)))
    cases.append(shamir_case("64 bytes 0xff, t=3 of n=5, coefficients 0 and p-1", b"\xff" * 64, 3, xs5, [0, P - 1], all_subsets(xs5, 3, True)))
    cases.append(shamir_case("64 zero bytes, t=4 of n=6", bytes(64), 4, [1, 2, 3, 4, 5, 6], coeffs("zero64", 3), all_subsets([1, 2, 3, 4, 5, 6], 4)))
    xs10 = list(range(1, 11))
    supersets = [[3, 1, 4, 10, 5, 9, 2], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]
    cases.append(shamir_case("64 bytes, t=6 of n=10", label_bytes("secret64", 64), 6, xs10, coeffs("n10", 5), all_subsets(xs10, 6) + supersets))
    cases.append(shamir_case("32 bytes, t=4 of n=4", label_bytes("secret32"), 4, [1, 2, 3, 4], coeffs("t=n", 3), [[1, 2, 3, 4], [4, 2, 3, 1]]))
    cases.append(shamir_case("32 bytes, t=1 of n=3 (every share is the secret)", label_bytes("t1"), 1, [1, 2, 3], [], [[1], [2], [3]]))
    return {
        "prime": format(P, "x"),
        "fieldMax": h((P - 1).to_bytes(SHARE_BYTES, "big")),
        "prime66": h(P.to_bytes(SHARE_BYTES, "big")),
        "cases": cases,
    }


# ----------------------------------------------------------------------------------------------
# b. AES-256-CTR keystream words
# ----------------------------------------------------------------------------------------------
def keystream(key, words):
    enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return enc.update(bytes(4 * words)) + enc.finalize()


def le_words(b):
    return [int(w) for w in np.frombuffer(b, dtype="<u4")]


def make_keystreams():
    out = []
    key = bytes(range(32))
    big = keystream(key, 1_100_000)
    chunk_words = (1 << 22) // 4  # the 4 MiB chunk boundary of keystreamWords, in words
    # Crossing a block boundary: words 4k..4k+3 are block k; compare one block against ECB(counter).
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    block = chunk_words // 4
    assert big[16 * block:16 * block + 16] == ecb.update(block.to_bytes(16, "big"))
    out.append({
        "key": h(key),
        "words": 1_100_000,
        "sha256": hashlib.sha256(big).hexdigest(),
        "first": le_words(big[:64]),
        "windowStart": chunk_words - 8,
        "window": le_words(big[4 * (chunk_words - 8):4 * (chunk_words + 8)]),
        "prefixes": [{"words": w, "sha256": hashlib.sha256(big[:4 * w]).hexdigest()} for w in (chunk_words, chunk_words + 1)],
    })
    for key, words in ((label_bytes("ctr-key-2"), 37), (b"\xff" * 32, 5)):
        ks = keystream(key, words)
        out.append({"key": h(key), "words": words, "sha256": hashlib.sha256(ks).hexdigest(), "first": le_words(ks[:64]), "all": le_words(ks)})
    return out


# ----------------------------------------------------------------------------------------------
# c. HKDF with webtune's labels
# ----------------------------------------------------------------------------------------------
INFOS = ("share-encryption", "pairwise-mask", "self-mask")


def salt(round_id):
    return f"webtune-secagg/v1/round/{round_id}".encode()


def make_hkdf():
    out = []
    for ikm in (label_bytes("hkdf-ikm"), bytes(32)):
        for round_id in (0, 7, 4294967295):
            out.append({"ikm": h(ikm), "roundId": round_id, "salt": salt(round_id).decode(),
                        **{info: h(hkdf_sha256(ikm, salt(round_id), info.encode(), 32)) for info in INFOS}})
    return out


# ----------------------------------------------------------------------------------------------
# d. ECDH
# ----------------------------------------------------------------------------------------------
def p256_private(label):
    d = int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") % (P256_ORDER - 1) + 1
    return d.to_bytes(32, "big")


def public_raw(curve, priv):
    if curve == "P-256":
        k = ec.derive_private_key(int.from_bytes(priv, "big"), ec.SECP256R1())
        return k.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    k = x25519.X25519PrivateKey.from_private_bytes(priv)
    return k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ecdh(curve, priv, peer_pub):
    if curve == "P-256":
        k = ec.derive_private_key(int.from_bytes(priv, "big"), ec.SECP256R1())
        return k.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), peer_pub))
    k = x25519.X25519PrivateKey.from_private_bytes(priv)
    return k.exchange(x25519.X25519PublicKey.from_public_bytes(peer_pub))


def private_key(curve, label):
    return p256_private(label) if curve == "P-256" else label_bytes(label)


def make_ecdh():
    out = {}
    for curve in ("P-256", "X25519"):
        a, b = private_key(curve, f"ecdh/{curve}/a"), private_key(curve, f"ecdh/{curve}/b")
        A, B = public_raw(curve, a), public_raw(curve, b)
        shared = ecdh(curve, a, B)
        assert shared == ecdh(curve, b, A) and len(shared) == 32
        out[curve] = {"a": {"privateKey": h(a), "publicKey": h(A)}, "b": {"privateKey": h(b), "publicKey": h(B)}, "shared": h(shared)}
    return out


# ----------------------------------------------------------------------------------------------
# e. A full masked-input example (3 participants, everyone a neighbour)
# ----------------------------------------------------------------------------------------------
M = 2**32


def make_masked(curve, round_id=7, n=3, words=37, q_range=2**22):
    rng = np.random.RandomState(20170 + len(curve))
    people = []
    for i in range(1, n + 1):
        priv = private_key(curve, f"mask/{curve}/{i}")
        seed = label_bytes(f"seed/{i}")
        q = [int(v) for v in rng.randint(0, q_range, size=words)]
        q[0], q[-1] = 0, q_range - 1  # the two ends of the range
        people.append({"index": i, "maskPrivateKey": priv, "maskPublicKey": public_raw(curve, priv), "seed": seed, "quantized": q})
    for p in people:
        p["selfMask"] = le_words(keystream(hkdf_sha256(p["seed"], salt(round_id), b"self-mask", 32), words))
    pairs = []
    pairwise = {}
    for p, r in itertools.combinations(people, 2):
        s = ecdh(curve, p["maskPrivateKey"], r["maskPublicKey"])
        assert s == ecdh(curve, r["maskPrivateKey"], p["maskPublicKey"])
        key = hkdf_sha256(s, salt(round_id), b"pairwise-mask", 32)
        mask = le_words(keystream(key, words))
        pairwise[(p["index"], r["index"])] = pairwise[(r["index"], p["index"])] = mask
        pairs.append({"i": p["index"], "j": r["index"], "shared": h(s), "key": h(key), "mask": mask})
    for p in people:
        i = p["index"]
        y = [(p["quantized"][w] + p["selfMask"][w]) % M for w in range(words)]
        for r in people:
            j = r["index"]
            if j == i:
                continue
            sign = 1 if j > i else -1
            y = [(y[w] + sign * pairwise[(i, j)][w]) % M for w in range(words)]
        p["masked"] = y
    # The pairwise masks cancel: sum of y = sum of x + sum of self masks (mod 2^32).
    total = [sum(p["masked"][w] for p in people) % M for w in range(words)]
    assert total == [(sum(p["quantized"][w] for p in people) + sum(p["selfMask"][w] for p in people)) % M for w in range(words)]
    return {
        "curve": curve, "roundId": round_id, "words": words,
        "participants": [{**{k: (h(v) if isinstance(v, bytes) else v) for k, v in p.items()}} for p in people],
        "pairs": pairs,
        "sumMasked": total,
        "sumQuantized": [sum(p["quantized"][w] for p in people) % M for w in range(words)],
    }


def make_share_transport(round_id=7):
    """One share ciphertext from participant 1 to 2, sealed by cryptography's AESGCM with a fixed nonce."""
    curve = "X25519"
    a, b = label_bytes("enc/1"), label_bytes("enc/2")
    A, B = public_raw(curve, a), public_raw(curve, b)
    shared = ecdh(curve, a, B)
    key = hkdf_sha256(shared, salt(round_id), b"share-encryption", 32)
    # Real shares: participant 1's seed and mask key, shared with t=2 at x=2.
    seed, mask_priv = label_bytes("seed/1"), private_key(curve, f"mask/{curve}/1")
    seed_share = horner([int.from_bytes(seed, "big")] + coeffs("transport-seed", 1), 2).to_bytes(SHARE_BYTES, "big")
    key_share = horner([int.from_bytes(mask_priv, "big")] + coeffs("transport-key", 1), 2).to_bytes(SHARE_BYTES, "big")
    plaintext = struct.pack(">III", 1, 2, round_id) + seed_share + key_share
    aad = b"webtune-secagg-share" + struct.pack(">III", round_id, 1, 2)
    nonce = label_bytes("nonce", 12)
    sealed = nonce + AESGCM(key).encrypt(nonce, plaintext, aad)
    return {
        "roundId": round_id, "from": 1, "to": 2,
        "sender": {"privateKey": h(a), "publicKey": h(A)}, "recipient": {"privateKey": h(b), "publicKey": h(B)},
        "shared": h(shared), "key": h(key), "seedShare": h(seed_share), "keyShare": h(key_share),
        "plaintext": h(plaintext), "associatedData": h(aad), "sealed": h(sealed),
    }


def make_formats():
    aad = [{"roundId": r, "from": f, "to": t, "bytes": h(b"webtune-secagg-share" + struct.pack(">III", r, f, t))}
           for r, f, t in ((7, 1, 2), (0, 3, 1), (4294967295, 65536, 258))]
    words = [0, 1, 0xFFFFFFFF, 0x01020304, 123456789]
    masked_input = {"roundId": 7, "baseVersion": 3, "words": words,
                    "bytes": h(b"WTSM" + struct.pack("<III", 7, 3, len(words)) + struct.pack(f"<{len(words)}I", *words))}
    return {"associatedData": aad, "maskedInput": masked_input}


# ----------------------------------------------------------------------------------------------
# f. Quantization
# ----------------------------------------------------------------------------------------------
def quantize_exact(values, c, q, uniforms):
    scale = Fraction(q - 1) / (2 * Fraction(c))
    out, clipped = [], 0
    for x, u in zip(values, uniforms):
        if x > c:
            x, clipped = c, clipped + 1
        elif x < -c:
            x, clipped = -c, clipped + 1
        v = (Fraction(x) + c) * scale
        fl = math.floor(v)
        up = Fraction(u) < v - fl
        # The same decision in double arithmetic (as the TypeScript computes it), else the vector
        # would test rounding noise: pick other uniforms.
        vf = (x + c) * ((q - 1) / (2 * c))
        assert (u < vf - math.floor(vf)) == up and math.floor(vf) == fl, (x, u)
        out.append(min(q - 1, fl + (1 if up else 0)))
    return out, clipped


def make_quantization(c=8.0, q=2**22):
    rng = np.random.RandomState(1024)
    edge = [-8.0, 8.0, 0.0, 0.0, 0.0, 0.0, 100.0, -100.0, 8.000001, -8.5, 1e30, -1e30, 7.999999, -7.999999, 1e-3, -1e-300, 3.14159, -2.5]
    edge_u = [0.0, 0.0, 0.5, 0.49999999999999994, 0.0, 0.9999999999999999, 0.3, 0.7, 0.999, 0.0, 0.5, 0.5, 0.25, 0.75, 0.5, 0.5, 0.1, 0.9]
    rand = [float(v) for v in rng.uniform(-10, 10, size=40)]
    values = edge + rand
    uniforms = edge_u + [float(u) for u in rng.random_sample(len(rand))]
    quantized, clipped = quantize_exact(values, c, q, uniforms)
    step = Fraction(2 * Fraction(c)) / (q - 1)
    # Three inputs to sum (each its own uniforms), then the dequantized sum.
    inputs = []
    for k in range(3):
        vals = [float(v) for v in rng.uniform(-9, 9, size=24)]
        us = [float(u) for u in rng.random_sample(24)]
        qs, cl = quantize_exact(vals, c, q, us)
        inputs.append({"values": vals, "uniforms": us, "quantized": qs, "clipped": cl})
    n = len(inputs)
    qsum = [sum(inp["quantized"][w] for inp in inputs) % M for w in range(24)]
    deq = [float(Fraction(s) * step - n * Fraction(c)) for s in qsum]
    true_sum = [float(sum(Fraction(max(-c, min(c, inp["values"][w]))) for inp in inputs)) for w in range(24)]
    return {
        "clippingRange": c, "quantizationRange": q,
        "step": float(step), "maxParticipants": (M - 1) // (q - 1),
        "values": values, "uniforms": uniforms, "quantized": quantized, "clipped": clipped,
        "sum": {"count": n, "inputs": inputs, "quantizedSum": qsum, "dequantized": deq, "clippedSum": true_sum},
        "maxParticipantsTable": [{"quantizationRange": r, "maxParticipants": (M - 1) // (r - 1)} for r in (2, 3, 2**16, 2**22, 2**31)],
    }


def main():
    check_published()
    payload = {
        "generatedBy": f"scripts/make_secagg_fixtures.py with cryptography {cryptography.__version__} and numpy {np.__version__}; do not edit by hand",
        "shamir": make_shamir(),
        "keystreams": make_keystreams(),
        "hkdf": make_hkdf(),
        "ecdh": make_ecdh(),
        "masked": [make_masked("P-256"), make_masked("X25519")],
        "shareTransport": make_share_transport(),
        "formats": make_formats(),
        "quantization": make_quantization(),
    }
    path = os.path.join(ROOT, OUT)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(path)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
