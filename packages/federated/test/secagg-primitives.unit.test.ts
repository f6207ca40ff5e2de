/**
 * The primitives of secure aggregation (packages/federated/src/secagg) against values from outside
 * this code:
 *   - fixtures/secagg-vectors.json, written by scripts/make_secagg_fixtures.py from Python integers
 *     (Shamir over GF(2^521 - 1)), cryptography/OpenSSL (HKDF, ECDH on P-256 and X25519, AES-CTR,
 *     AES-GCM) and exact rationals (quantization);
 *   - published test vectors, transcribed below with their sources: RFC 5869 Appendix A (HKDF-SHA256),
 *     RFC 7748 section 6.1 (X25519), RFC 5903 section 8.1 (ECDH on the 256-bit random ECP group,
 *     P-256) and McGrew & Viega's GCM specification, test case 16 (AES-256-GCM with AAD).
 * Plus the structural properties of the neighbour graph, the threshold and the wire formats.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@webtune/errors';
import {
  SHAMIR_PRIME, SHARE_BYTES, combineShares, decodeShareValue, encodeShareValue, evaluatePolynomial, shareSecret, type Share,
} from '../src/secagg/shamir.js';
import { agree, generateKeyPair, hkdf, keystreamWords, open, publicKeyBytes, seal, type SecAggCurve } from '../src/secagg/crypto.js';
import {
  MASKED_HEADER_BYTES, SHARE_PLAINTEXT_BYTES, addMask, decodeMaskedInput, decodeSharePlaintext, encodeMaskedInput, encodeSharePlaintext,
  neighboursOf, pairwiseMask, pairwiseMaskKey, resolveNeighbours, resolveThreshold, selfMask, selfMaskKey, shareAssociatedData, shareEncryptionKey,
} from '../src/secagg/masks.js';
import { dequantizeSum, maxParticipants, quantizationStep, quantize } from '../src/secagg/quantize.js';

interface KeyPairHex { privateKey: string; publicKey: string }
interface Fixture {
  shamir: {
    prime: string; fieldMax: string; prime66: string;
    cases: { name: string; secret: string; threshold: number; xs: number[]; coefficients: string[]; shares: string[]; subsets: number[][] }[];
  };
  keystreams: {
    key: string; words: number; sha256: string; first: number[]; all?: number[];
    windowStart?: number; window?: number[]; prefixes?: { words: number; sha256: string }[];
  }[];
  hkdf: { ikm: string; roundId: number; salt: string; 'share-encryption': string; 'pairwise-mask': string; 'self-mask': string }[];
  ecdh: Record<SecAggCurve, { a: KeyPairHex; b: KeyPairHex; shared: string }>;
  masked: {
    curve: SecAggCurve; roundId: number; words: number;
    participants: { index: number; maskPrivateKey: string; maskPublicKey: string; seed: string; quantized: number[]; selfMask: number[]; masked: number[] }[];
    pairs: { i: number; j: number; shared: string; key: string; mask: number[] }[];
    sumMasked: number[]; sumQuantized: number[];
  }[];
  shareTransport: {
    roundId: number; from: number; to: number; sender: KeyPairHex; recipient: KeyPairHex;
    shared: string; key: string; seedShare: string; keyShare: string; plaintext: string; associatedData: string; sealed: string;
  };
  formats: {
    associatedData: { roundId: number; from: number; to: number; bytes: string }[];
    maskedInput: { roundId: number; baseVersion: number; words: number[]; bytes: string };
  };
  quantization: {
    clippingRange: number; quantizationRange: number; step: number; maxParticipants: number;
    values: number[]; uniforms: number[]; quantized: number[]; clipped: number;
    sum: {
      count: number; inputs: { values: number[]; uniforms: number[]; quantized: number[]; clipped: number }[];
      quantizedSum: number[]; dequantized: number[]; clippedSum: number[];
    };
    maxParticipantsTable: { quantizationRange: number; maxParticipants: number }[];
  };
}

const fx = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/secagg-vectors.json'), 'utf8')) as Fixture;

const hex = (s: string): Uint8Array => {
  const t = s.replace(/\s+/g, '');
  if (t.length % 2 !== 0 || /[^0-9a-fA-F]/.test(t)) throw new Error(`bad hex ${s}`);
  return Uint8Array.from({ length: t.length / 2 }, (_, i) => parseInt(t.slice(2 * i, 2 * i + 2), 16));
};
const toHex = (b: Uint8Array): string => Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
const utf8 = (s: string) => new TextEncoder().encode(s);
const pair = (k: KeyPairHex) => ({ privateKey: hex(k.privateKey), publicKey: hex(k.publicKey) });
/** Words as little-endian bytes, explicitly (not the platform's view). */
const leBytes = (words: Uint32Array): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(words.length * 4);
  const v = new DataView(out.buffer);
  words.forEach((w, i) => v.setUint32(4 * i, w, true));
  return out;
};
const sha256Hex = async (bytes: Uint8Array<ArrayBuffer>) => toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)));
const flipBit = (b: Uint8Array, byte: number, bit = 0): Uint8Array => {
  const out = b.slice();
  out[byte]! ^= 1 << bit;
  return out;
};

// ------------------------------------------------------------------------------------------------
describe('Shamir over GF(2^521 - 1) against Python integers (fixture)', () => {
  it('the field and its encoding: p = 2^521 - 1, p - 1 encodes to 66 bytes, p and wrong lengths do not decode', () => {
    expect(SHAMIR_PRIME).toBe(BigInt('0x' + fx.shamir.prime));
    expect(SHARE_BYTES).toBe(66);
    expect(toHex(encodeShareValue(SHAMIR_PRIME - 1n))).toBe(fx.shamir.fieldMax);
    expect(decodeShareValue(hex(fx.shamir.fieldMax))).toBe(SHAMIR_PRIME - 1n);
    expect(() => decodeShareValue(hex(fx.shamir.prime66))).toThrow(InvalidArgumentError);
    expect(() => decodeShareValue(new Uint8Array(65))).toThrow(InvalidArgumentError);
    expect(() => decodeShareValue(new Uint8Array(67))).toThrow(InvalidArgumentError);
    expect(() => encodeShareValue(1n << 528n)).toThrow(InvalidArgumentError);
  });

  for (const c of fx.shamir.cases) {
    const secret = hex(c.secret);
    const coefficients = c.coefficients.map((v) => BigInt('0x' + v));
    const fixtureShares: Share[] = c.xs.map((x, k) => ({ x, y: decodeShareValue(hex(c.shares[k]!)) }));
    const byX = new Map(fixtureShares.map((s) => [s.x, s]));

    describe(c.name, () => {
      it('shareSecret with the fixed coefficients gives Python\'s shares (and evaluatePolynomial agrees)', () => {
        const shares = shareSecret(secret, c.threshold, c.xs, coefficients);
        expect(shares.map((s) => s.x)).toEqual(c.xs);
        expect(shares.map((s) => toHex(encodeShareValue(s.y)))).toEqual(c.shares);
        const poly = [BigInt('0x' + c.secret), ...coefficients];
        expect(c.xs.map((x) => toHex(encodeShareValue(evaluatePolynomial(poly, x))))).toEqual(c.shares);
      });

      it(`combineShares from each of the ${c.subsets.length} listed subsets returns the secret`, () => {
        for (const subset of c.subsets) {
          const got = combineShares(subset.map((x) => byX.get(x)!), c.threshold, secret.length);
          expect(toHex(got), `subset ${subset.join(',')}`).toBe(c.secret);
        }
      });

      it('fewer than t shares and repeated points throw; a tampered share gives another secret or throws', () => {
        const used = fixtureShares.slice(0, c.threshold);
        if (c.threshold > 1) {
          expect(() => combineShares(used.slice(0, c.threshold - 1), c.threshold, secret.length)).toThrow(InvalidArgumentError);
          const repeated = [used[0]!, used[0]!, ...used.slice(2)];
          expect(() => combineShares(repeated, c.threshold, secret.length)).toThrow(InvalidArgumentError);
          expect(() => shareSecret(secret, c.threshold, [c.xs[0]!, ...c.xs.slice(0, -1)], coefficients)).toThrow(InvalidArgumentError);
        }
        for (let k = 0; k < used.length; k++) {
          const tampered = used.map((s, m) => (m === k ? { x: s.x, y: (s.y + 1n) % SHAMIR_PRIME } : s));
          let got: Uint8Array | undefined;
          try {
            got = combineShares(tampered, c.threshold, secret.length);
          } catch (e) {
            expect(e).toBeInstanceOf(InvalidArgumentError);
          }
          if (got) expect(toHex(got)).not.toBe(c.secret);
        }
      });
    });
  }

  it('shareSecret refuses bad arguments: point 0, threshold out of range, wrong coefficient count, secret size', () => {
    const s = new Uint8Array(32).fill(7);
    expect(() => shareSecret(s, 2, [0, 1, 2])).toThrow(InvalidArgumentError);
    expect(() => shareSecret(s, 2, [1, 1.5, 2])).toThrow(InvalidArgumentError);
    expect(() => shareSecret(s, 0, [1, 2, 3])).toThrow(InvalidArgumentError);
    expect(() => shareSecret(s, 4, [1, 2, 3])).toThrow(InvalidArgumentError);
    expect(() => shareSecret(s, 3, [1, 2, 3], [5n])).toThrow(InvalidArgumentError);
    expect(() => shareSecret(new Uint8Array(0), 1, [1])).toThrow(InvalidArgumentError);
    expect(() => shareSecret(new Uint8Array(65), 1, [1])).toThrow(InvalidArgumentError);
  });

  it('with random coefficients: any t of n shares recover a 32- and a 64-byte secret; t - 1 shares do not', () => {
    for (const length of [32, 64]) {
      const secret = crypto.getRandomValues(new Uint8Array(length));
      const shares = shareSecret(secret, 3, [1, 2, 3, 4, 5]);
      for (const subset of [[0, 1, 2], [4, 2, 0], [1, 3, 4]]) {
        expect(toHex(combineShares(subset.map((k) => shares[k]!), 3, length))).toBe(toHex(secret));
      }
      // Two of three shares are a degree-2 polynomial's values: interpolating a line through them
      // is a uniform field element, which fits `length` bytes with probability 2^(8 length - 521).
      let got: Uint8Array | undefined;
      try {
        got = combineShares(shares.slice(0, 2), 2, length);
      } catch (e) {
        expect(e).toBeInstanceOf(InvalidArgumentError);
      }
      if (got) expect(toHex(got)).not.toBe(toHex(secret));
      // The coefficients are fresh each time.
      expect(shareSecret(secret, 3, [1, 2, 3])[0]!.y).not.toBe(shares[0]!.y);
    }
  });
});

// ------------------------------------------------------------------------------------------------
describe('AES-256-CTR keystream words against cryptography (fixture)', () => {
  for (const k of fx.keystreams) {
    it(`key ${k.key.slice(0, 8)}…, ${k.words} words`, async () => {
      const words = await keystreamWords(hex(k.key), k.words);
      expect(words.length).toBe(k.words);
      expect(Array.from(words.subarray(0, 16))).toEqual(k.first);
      if (k.all) expect(Array.from(words)).toEqual(k.all);
      if (k.window) expect(Array.from(words.subarray(k.windowStart!, k.windowStart! + k.window.length))).toEqual(k.window);
      expect(await sha256Hex(leBytes(words))).toBe(k.sha256);
    }, 30_000);
  }

  it('streams that end at and just past the 4 MiB chunk boundary', async () => {
    const big = fx.keystreams.find((k) => k.prefixes)!;
    for (const p of big.prefixes!) {
      expect(await sha256Hex(leBytes(await keystreamWords(hex(big.key), p.words)))).toBe(p.sha256);
    }
  }, 30_000);

  it('a key that is not 32 bytes throws', async () => {
    await expect(keystreamWords(new Uint8Array(16), 4)).rejects.toThrow(InvalidArgumentError);
  });
});

// ------------------------------------------------------------------------------------------------
describe('HKDF-SHA256', () => {
  // RFC 5869, Appendix A, test cases 1-3 (Hash = SHA-256).
  const rfc5869 = [
    {
      name: 'A.1 (basic)', ikm: '0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b', salt: '000102030405060708090a0b0c', info: 'f0f1f2f3f4f5f6f7f8f9', L: 42,
      okm: '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
    },
    {
      name: 'A.2 (longer inputs and outputs)',
      ikm: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f'
        + '303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f',
      salt: '606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f'
        + '909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf',
      info: 'b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf'
        + 'e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff',
      L: 82,
      okm: 'b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09'
        + 'da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87',
    },
    {
      name: 'A.3 (zero-length salt and info)', ikm: '0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b', salt: '', info: '', L: 42,
      okm: '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8',
    },
  ];
  for (const t of rfc5869) {
    it(`RFC 5869 ${t.name}`, async () => {
      expect(toHex(await hkdf(hex(t.ikm), hex(t.salt), hex(t.info), t.L))).toBe(t.okm);
    });
  }

  it('webtune\'s labels (salt "webtune-secagg/v1/round/<id>", three infos) against cryptography (fixture)', async () => {
    for (const v of fx.hkdf) {
      const ikm = hex(v.ikm);
      expect(v.salt).toBe(`webtune-secagg/v1/round/${v.roundId}`);
      expect(toHex(await shareEncryptionKey(ikm, v.roundId))).toBe(v['share-encryption']);
      expect(toHex(await pairwiseMaskKey(ikm, v.roundId))).toBe(v['pairwise-mask']);
      expect(toHex(await selfMaskKey(ikm, v.roundId))).toBe(v['self-mask']);
      for (const info of ['share-encryption', 'pairwise-mask', 'self-mask'] as const) {
        expect(toHex(await hkdf(ikm, utf8(v.salt), info, 32))).toBe(v[info]);
      }
    }
  });
});

// ------------------------------------------------------------------------------------------------
describe('ECDH (agree)', () => {
  it('RFC 7748 section 6.1: X25519 Alice and Bob reach K', async () => {
    const alice = { privateKey: hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'), publicKey: hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a') };
    const bob = { privateKey: hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'), publicKey: hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f') };
    const K = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(toHex(await agree('X25519', alice, bob.publicKey))).toBe(K);
    expect(toHex(await agree('X25519', bob, alice.publicKey))).toBe(K);
  });

  it('RFC 5903 section 8.1: ECDH on the 256-bit random ECP group (P-256), shared secret = x of g^ir', async () => {
    // The JWK the private key is imported as needs x and y: taken from the RFC's g^i and g^r.
    const i = {
      privateKey: hex('C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433'),
      publicKey: hex('04' + 'DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180'
        + '5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3'),
    };
    const r = {
      privateKey: hex('C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53'),
      publicKey: hex('04' + 'D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63'
        + '56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB'),
    };
    const girX = 'D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE'.replace(/ /g, '').toLowerCase();
    expect(toHex(await agree('P-256', i, r.publicKey))).toBe(girX);
    expect(toHex(await agree('P-256', r, i.publicKey))).toBe(girX);
  });

  for (const curve of ['P-256', 'X25519'] as const) {
    it(`${curve}: fixed key pairs reach cryptography's shared secret from both sides (fixture)`, async () => {
      const v = fx.ecdh[curve];
      const a = pair(v.a);
      const b = pair(v.b);
      expect(a.publicKey.length).toBe(publicKeyBytes(curve));
      expect(toHex(await agree(curve, a, b.publicKey))).toBe(v.shared);
      expect(toHex(await agree(curve, b, a.publicKey))).toBe(v.shared);
    });

    it(`${curve}: a private key with another's public key, and malformed peer keys, are InvalidArgumentError`, async () => {
      const v = fx.ecdh[curve];
      const a = pair(v.a);
      const b = pair(v.b);
      await expect(agree(curve, { privateKey: a.privateKey, publicKey: b.publicKey }, b.publicKey)).rejects.toThrow(InvalidArgumentError);
      await expect(agree(curve, a, b.publicKey.subarray(1))).rejects.toThrow(InvalidArgumentError);
      await expect(agree(curve, a, new Uint8Array([...b.publicKey, 0]))).rejects.toThrow(InvalidArgumentError);
      if (curve === 'P-256') {
        await expect(agree(curve, a, flipBit(b.publicKey, 64))).rejects.toThrow(InvalidArgumentError); // y off the curve
        const compressed = b.publicKey.slice();
        compressed[0] = 2;
        await expect(agree(curve, a, compressed)).rejects.toThrow(InvalidArgumentError);
      } else {
        // The all-zero u-coordinate is a point of small order: the shared secret would be zero.
        await expect(agree(curve, a, new Uint8Array(32))).rejects.toThrow();
      }
    });

    it(`${curve}: generateKeyPair gives a raw public key and a 32-byte scalar that agree with each other`, async () => {
      const a = await generateKeyPair(curve);
      const b = await generateKeyPair(curve);
      expect(a.publicKey.length).toBe(publicKeyBytes(curve));
      expect(a.privateKey.length).toBe(32);
      if (curve === 'P-256') expect(a.publicKey[0]).toBe(4);
      const ab = await agree(curve, a, b.publicKey);
      expect(ab.length).toBe(32);
      expect(toHex(await agree(curve, b, a.publicKey))).toBe(toHex(ab));
      expect(toHex(a.privateKey)).not.toBe(toHex(b.privateKey));
    });
  }
});

// ------------------------------------------------------------------------------------------------
describe('AES-256-GCM (seal/open, nonce || ciphertext || tag)', () => {
  // McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)" (NIST submission, 2005), test case 16:
  // 256-bit key, 96-bit IV, 60-byte plaintext, 20-byte AAD.
  const K = hex('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308');
  const IV = hex('cafebabefacedbaddecaf888');
  const P = hex('d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39');
  const A = hex('feedfacedeadbeeffeedfacedeadbeefabaddad2');
  const C = hex('522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662');
  const T = hex('76fc6ece0f4e1768cddf8853bb2d551b');
  const sealed = new Uint8Array([...IV, ...C, ...T]);

  it('test case 16 opens to its plaintext', async () => {
    expect(toHex((await open(K, sealed, A))!)).toBe(toHex(P));
  });

  it('a flipped bit in the nonce, ciphertext, tag or AAD, a wrong key or a short input: undefined', async () => {
    for (const at of [0, 11, 12, 12 + 30, 12 + C.length - 1, 12 + C.length, sealed.length - 1]) {
      expect(await open(K, flipBit(sealed, at, at % 8), A), `byte ${at}`).toBeUndefined();
    }
    expect(await open(K, sealed, flipBit(A, 0))).toBeUndefined();
    expect(await open(K, sealed, flipBit(A, A.length - 1, 7))).toBeUndefined();
    expect(await open(K, sealed, A.subarray(0, 16))).toBeUndefined();
    expect(await open(flipBit(K, 31), sealed, A)).toBeUndefined();
    expect(await open(K, sealed.subarray(0, 27), A)).toBeUndefined();
    expect(await open(K, sealed.subarray(0, sealed.length - 1), A)).toBeUndefined();
  });

  it('seal gives 12 + n + 16 bytes with a fresh nonce each time, and open reverses it', async () => {
    const s1 = await seal(K, P, A);
    const s2 = await seal(K, P, A);
    expect(s1.length).toBe(12 + P.length + 16);
    expect(toHex(s1.subarray(0, 12))).not.toBe(toHex(s2.subarray(0, 12)));
    expect(toHex((await open(K, s1, A))!)).toBe(toHex(P));
    expect(await open(K, s1, flipBit(A, 3))).toBeUndefined();
    expect(toHex((await open(K, await seal(K, new Uint8Array(0), A), A))!)).toBe('');
  });

  it('a share sealed by cryptography\'s AESGCM opens with the key derived here and the share AAD (fixture)', async () => {
    const t = fx.shareTransport;
    const sender = pair(t.sender);
    const recipient = pair(t.recipient);
    const shared = await agree('X25519', recipient, sender.publicKey);
    expect(toHex(shared)).toBe(t.shared);
    expect(toHex(await agree('X25519', sender, recipient.publicKey))).toBe(t.shared);
    const key = await shareEncryptionKey(shared, t.roundId);
    expect(toHex(key)).toBe(t.key);
    const ad = shareAssociatedData(t.roundId, t.from, t.to);
    expect(toHex(ad)).toBe(t.associatedData);
    const plain = await open(key, hex(t.sealed), ad);
    expect(toHex(plain!)).toBe(t.plaintext);
    expect(toHex(encodeSharePlaintext(t.roundId, t.from, t.to, hex(t.seedShare), hex(t.keyShare)))).toBe(t.plaintext);
    const decoded = decodeSharePlaintext(plain!)!;
    expect(decoded).toBeDefined();
    expect({ ...decoded, seedShare: toHex(decoded.seedShare), keyShare: toHex(decoded.keyShare) })
      .toEqual({ from: t.from, to: t.to, roundId: t.roundId, seedShare: t.seedShare, keyShare: t.keyShare });
    // The server cannot move the ciphertext to another pair or round.
    expect(await open(key, hex(t.sealed), shareAssociatedData(t.roundId, t.to, t.from))).toBeUndefined();
    expect(await open(key, hex(t.sealed), shareAssociatedData(t.roundId + 1, t.from, t.to))).toBeUndefined();
    expect(await open(await shareEncryptionKey(shared, t.roundId + 1), hex(t.sealed), ad)).toBeUndefined();
  });
});

// ------------------------------------------------------------------------------------------------
describe('wire formats against Python struct packing (fixture)', () => {
  it('share associated data: "webtune-secagg-share" || round || from || to (u32 BE)', () => {
    for (const v of fx.formats.associatedData) expect(toHex(shareAssociatedData(v.roundId, v.from, v.to))).toBe(v.bytes);
  });

  it('share plaintext: round trip, and other lengths are refused', () => {
    const seed = encodeShareValue(SHAMIR_PRIME - 2n);
    const key = encodeShareValue(123456789n);
    const bytes = encodeSharePlaintext(4294967295, 17, 3, seed, key);
    expect(bytes.length).toBe(SHARE_PLAINTEXT_BYTES);
    expect(SHARE_PLAINTEXT_BYTES).toBe(12 + 2 * 66);
    const d = decodeSharePlaintext(bytes)!;
    expect([d.roundId, d.from, d.to, toHex(d.seedShare), toHex(d.keyShare)]).toEqual([4294967295, 17, 3, toHex(seed), toHex(key)]);
    // From a view into a larger buffer too.
    const padded = new Uint8Array(bytes.length + 7);
    padded.set(bytes, 5);
    expect(decodeSharePlaintext(padded.subarray(5, 5 + bytes.length))!.from).toBe(17);
    expect(decodeSharePlaintext(bytes.subarray(1))).toBeUndefined();
    expect(decodeSharePlaintext(new Uint8Array(bytes.length + 1))).toBeUndefined();
  });

  it('masked input: "WTSM" || round || base version || words (u32 LE), then the words', () => {
    const m = fx.formats.maskedInput;
    const words = Uint32Array.from(m.words);
    const bytes = encodeMaskedInput(m.roundId, m.baseVersion, words);
    expect(toHex(bytes)).toBe(m.bytes);
    expect(MASKED_HEADER_BYTES).toBe(16);
    const expected = { roundId: m.roundId, baseVersion: m.baseVersion, words: m.words.length };
    const back = decodeMaskedInput(hex(m.bytes), expected);
    expect(back).toBeInstanceOf(Uint32Array);
    expect(Array.from(back as Uint32Array)).toEqual(m.words);
    const padded = new Uint8Array(bytes.length + 3);
    padded.set(bytes, 3);
    expect(Array.from(decodeMaskedInput(padded.subarray(3), expected) as Uint32Array)).toEqual(m.words);
  });

  it('masked input refusals: size, magic, round, base version, word count', () => {
    const m = fx.formats.maskedInput;
    const bytes = hex(m.bytes);
    const expected = { roundId: m.roundId, baseVersion: m.baseVersion, words: m.words.length };
    const refusal = (b: Uint8Array, e = expected) => {
      const r = decodeMaskedInput(b, e);
      expect(typeof r).toBe('string');
      return r as string;
    };
    expect(refusal(bytes.subarray(0, bytes.length - 1))).toMatch(/bytes/);
    expect(refusal(new Uint8Array([...bytes, 0, 0, 0, 0]))).toMatch(/bytes/);
    expect(refusal(bytes, { ...expected, words: expected.words + 1 })).toMatch(/bytes/);
    expect(refusal(flipBit(bytes, 0))).toMatch(/WTSM/);
    expect(refusal(bytes, { ...expected, roundId: m.roundId + 1 })).toMatch(/round/);
    expect(refusal(bytes, { ...expected, baseVersion: m.baseVersion + 1 })).toMatch(/version/);
    const wrongCount = bytes.slice();
    wrongCount[12] = m.words.length + 1; // the header's word count, not the size
    expect(refusal(wrongCount)).toMatch(/words/);
  });
});

// ------------------------------------------------------------------------------------------------
describe('masked inputs: a 3-participant round against Python (cryptography ECDH, HKDF, AES-CTR)', () => {
  for (const ex of fx.masked) {
    describe(`${ex.curve}, round ${ex.roundId}, ${ex.words} words`, () => {
      const people = ex.participants.map((p) => ({ ...p, own: { privateKey: hex(p.maskPrivateKey), publicKey: hex(p.maskPublicKey) } }));

      it('self masks PRG(b_i)', async () => {
        for (const p of people) expect(Array.from(await selfMask(hex(p.seed), ex.roundId, ex.words)), `participant ${p.index}`).toEqual(p.selfMask);
      });

      it('pairwise masks and their signs (+1 for j > i, -1 for j < i), equal from both ends', async () => {
        for (const pr of ex.pairs) {
          const i = people.find((p) => p.index === pr.i)!;
          const j = people.find((p) => p.index === pr.j)!;
          expect(toHex(await agree(ex.curve, i.own, j.own.publicKey))).toBe(pr.shared);
          expect(toHex(await pairwiseMaskKey(await agree(ex.curve, j.own, i.own.publicKey), ex.roundId))).toBe(pr.key);
          const fromI = await pairwiseMask(ex.curve, ex.roundId, ex.words, i.own, i.index, j.index, j.own.publicKey);
          const fromJ = await pairwiseMask(ex.curve, ex.roundId, ex.words, j.own, j.index, i.index, i.own.publicKey);
          expect(fromI.sign).toBe(1);
          expect(fromJ.sign).toBe(-1);
          expect(Array.from(fromI.mask)).toEqual(pr.mask);
          expect(Array.from(fromJ.mask)).toEqual(pr.mask);
        }
      });

      it('y_i = x_i + PRG(b_i) + sum_j sign(i, j) PRG(s_ij) mod 2^32; the pairwise masks cancel in the sum', async () => {
        const total = new Uint32Array(ex.words);
        for (const p of people) {
          const y = Uint32Array.from(p.quantized);
          addMask(y, await selfMask(hex(p.seed), ex.roundId, ex.words), 1);
          for (const q of people) {
            if (q.index === p.index) continue;
            const { mask, sign } = await pairwiseMask(ex.curve, ex.roundId, ex.words, p.own, p.index, q.index, q.own.publicKey);
            addMask(y, mask, sign);
          }
          expect(Array.from(y), `participant ${p.index}`).toEqual(p.masked);
          const wire = encodeMaskedInput(ex.roundId, 0, y);
          expect(Array.from(decodeMaskedInput(wire, { roundId: ex.roundId, baseVersion: 0, words: ex.words }) as Uint32Array)).toEqual(p.masked);
          addMask(total, y, 1);
        }
        expect(Array.from(total)).toEqual(ex.sumMasked);
        for (const p of people) addMask(total, Uint32Array.from(p.selfMask), -1);
        expect(Array.from(total)).toEqual(ex.sumQuantized);
      });
    });
  }

  it('addMask wraps mod 2^32 both ways', () => {
    const t = Uint32Array.from([0xffffffff, 0, 5]);
    addMask(t, Uint32Array.from([1, 1, 0xffffffff]), 1);
    expect(Array.from(t)).toEqual([0, 1, 4]);
    addMask(t, Uint32Array.from([1, 2, 0xffffffff]), -1);
    expect(Array.from(t)).toEqual([0xffffffff, 0xffffffff, 5]);
  });
});

// ------------------------------------------------------------------------------------------------
describe('neighbour graph and threshold', () => {
  it('resolveNeighbours: even k >= 2 (odd rounds up), n - 1 at or above it and for "all"', () => {
    expect(resolveNeighbours('all', 10)).toBe(9);
    expect(resolveNeighbours(9, 10)).toBe(9);
    expect(resolveNeighbours(50, 10)).toBe(9);
    expect(resolveNeighbours(8, 10)).toBe(8);
    expect(resolveNeighbours(3, 10)).toBe(4);
    expect(resolveNeighbours(1, 10)).toBe(2);
    expect(resolveNeighbours(0, 10)).toBe(2);
    expect(resolveNeighbours(5, 7)).toBe(6);
    expect(resolveNeighbours(1, 2)).toBe(1);
  });

  it('a Harary ring by hand: n = 7, k = 4', () => {
    expect(neighboursOf(1, 7, 4)).toEqual([2, 3, 6, 7]);
    expect(neighboursOf(4, 7, 4)).toEqual([2, 3, 5, 6]);
    expect(neighboursOf(7, 7, 4)).toEqual([1, 2, 5, 6]);
    expect(neighboursOf(3, 5, 4)).toEqual([1, 2, 4, 5]);
    expect(neighboursOf(2, 2, 1)).toEqual([1]);
  });

  it('every node has exactly k neighbours, never itself, ascending, and j in N(i) iff i in N(j)', () => {
    const cases: [number, number | 'all'][] = [];
    for (const n of [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 33, 100]) {
      for (const configured of [1, 2, 3, 4, 5, 6, 8, 9, 10, 15, 16, 31, 32, 99, 100, 'all'] as const) cases.push([n, configured]);
    }
    for (const [n, configured] of cases) {
      const k = resolveNeighbours(configured, n);
      const sets = Array.from({ length: n }, (_, i) => neighboursOf(i + 1, n, k));
      for (let i = 1; i <= n; i++) {
        const N = sets[i - 1]!;
        const where = `n=${n} k=${k} (configured ${configured}) i=${i}`;
        expect(N.length, where).toBe(k);
        expect(new Set(N).size, where).toBe(k);
        expect(N.includes(i), where).toBe(false);
        expect(N.every((j) => Number.isInteger(j) && j >= 1 && j <= n), where).toBe(true);
        expect([...N].sort((a, b) => a - b), where).toEqual(N);
        for (const j of N) expect(sets[j - 1]!.includes(i), `${where} j=${j}`).toBe(true);
      }
    }
  });

  it('neighboursOf refuses an index outside 1..n', () => {
    expect(() => neighboursOf(0, 5, 2)).toThrow(InvalidArgumentError);
    expect(() => neighboursOf(6, 5, 2)).toThrow(InvalidArgumentError);
    expect(() => neighboursOf(1.5, 5, 2)).toThrow(InvalidArgumentError);
  });

  it('resolveThreshold(k): more than half of the k + 1 holders (k neighbours and the client), at most k, at least ceil(fraction (k + 1))', () => {
    // By hand from the rule: t = min(k, max(floor((k + 1) / 2) + 1, ceil(fraction (k + 1)))).
    expect(() => resolveThreshold(1, undefined)).toThrow(/at least 2 neighbours/);
    expect(() => resolveThreshold(4, 0)).toThrow(/in \(0, 1\]/);
    expect(() => resolveThreshold(4, Number.NaN)).toThrow(/in \(0, 1\]/);
    expect(resolveThreshold(99, 0.55)).toBe(55); // 0.55 * 100 = 55.00000000000001 must not round up
    expect(resolveThreshold(2, undefined)).toBe(2);
    expect(resolveThreshold(3, undefined)).toBe(3);
    expect(resolveThreshold(4, undefined)).toBe(3);
    expect(resolveThreshold(5, undefined)).toBe(4);
    expect(resolveThreshold(8, undefined)).toBe(5);
    expect(resolveThreshold(9, 0.7)).toBe(7);
    expect(resolveThreshold(10, 1)).toBe(10);
    for (let k = 2; k <= 200; k++) {
      for (const fraction of [undefined, 0.25, 0.5, 0.51, 2 / 3, 0.75, 0.99, 1]) {
        const t = resolveThreshold(k, fraction);
        const where = `k=${k} fraction=${fraction}`;
        expect(Number.isInteger(t), where).toBe(true);
        expect(2 * t, where).toBeGreaterThan(k);
        if (k >= 2) expect(2 * t, where).toBeGreaterThan(k + 1);
        expect(t, where).toBeLessThanOrEqual(k);
        if (fraction !== undefined) expect(t, where).toBeGreaterThanOrEqual(Math.min(k, Math.ceil(fraction * (k + 1) - 1e-9)));
      }
    }
  });
});

// ------------------------------------------------------------------------------------------------
describe('quantization against exact rationals (fixture; Flower quantization.py with scale (Q-1)/(2c))', () => {
  const q = fx.quantization;
  const uniformsFrom = (us: number[]) => {
    let k = 0;
    return { next: () => us[k++]!, used: () => k };
  };

  it('quantize with fixed uniforms: edges (-c, c, 0 at u = 0.5 and just below), beyond range, random values', () => {
    const u = uniformsFrom(q.uniforms);
    const { quantized, clipped } = quantize(q.values, q.clippingRange, q.quantizationRange, u.next);
    expect(u.used()).toBe(q.values.length);
    expect(Array.from(quantized)).toEqual(q.quantized);
    expect(clipped).toBe(q.clipped);
  });

  it('the quantized sum of three inputs dequantizes to Python\'s value, within n steps of the clipped sum', () => {
    const sum = new Uint32Array(q.sum.quantizedSum.length);
    for (const input of q.sum.inputs) {
      const u = uniformsFrom(input.uniforms);
      const { quantized, clipped } = quantize(input.values, q.clippingRange, q.quantizationRange, u.next);
      expect(Array.from(quantized)).toEqual(input.quantized);
      expect(clipped).toBe(input.clipped);
      addMask(sum, quantized, 1);
    }
    expect(Array.from(sum)).toEqual(q.sum.quantizedSum);
    const deq = dequantizeSum(sum, q.sum.count, q.clippingRange, q.quantizationRange);
    deq.forEach((v, w) => {
      expect(v).toBeCloseTo(q.sum.dequantized[w]!, 9);
      expect(Math.abs(v - q.sum.clippedSum[w]!)).toBeLessThan(q.sum.count * q.step);
    });
  });

  it('step and maxParticipants', () => {
    expect(quantizationStep(q.clippingRange, q.quantizationRange)).toBe(q.step);
    expect(maxParticipants(q.quantizationRange)).toBe(q.maxParticipants);
    expect(q.maxParticipants).toBe(1024);
    for (const r of q.maxParticipantsTable) expect(maxParticipants(r.quantizationRange), `Q=${r.quantizationRange}`).toBe(r.maxParticipants);
  });

  it('without fixed uniforms: -c and c are exact, 0 lands on one of its two neighbours; bad input throws', () => {
    const { quantized } = quantize([-8, 8, 0, 0, 0, 0], 8, 2 ** 22);
    expect(quantized[0]).toBe(0);
    expect(quantized[1]).toBe(2 ** 22 - 1);
    for (const v of quantized.subarray(2)) expect([2097151, 2097152]).toContain(v);
    expect(() => quantize([0, Number.NaN], 8, 2 ** 22)).toThrow(InvalidArgumentError);
    expect(() => quantize([Number.POSITIVE_INFINITY], 8, 2 ** 22)).toThrow(InvalidArgumentError);
    expect(() => quantize([0], 0, 2 ** 22)).toThrow(InvalidArgumentError);
    expect(() => quantize([0], 8, 1)).toThrow(InvalidArgumentError);
    expect(() => quantize([0], 8, 2 ** 31 + 1)).toThrow(InvalidArgumentError);
  });
});
