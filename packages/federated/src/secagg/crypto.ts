/**
 * The cryptography of secure aggregation, from WebCrypto only (browsers, workers and Node >= 20 alike):
 *   key agreement  ECDH on P-256, or X25519 where the runtime has it (the round names one curve for all)
 *   key derivation HKDF-SHA256 (RFC 5869), with a label per purpose and the round id as salt
 *   share transport AES-256-GCM, a fresh 96-bit nonce per message, associated data binding
 *                  (round, sender, recipient) so the server cannot swap or replay ciphertexts
 *   mask generator AES-256-CTR keystream from a 256-bit key (from HKDF), counter from 0 in the low
 *                  64 bits of the block: a full-entropy seed, never a 32-bit fold (as Flower's
 *                  Python mask PRG seeds numpy's RandomState)
 * Public keys travel raw (P-256: 65-byte uncompressed point; X25519: 32 bytes); a private key is
 * shared (Shamir) as its 32-byte scalar and rebuilt with its public key as a JWK.
 */
import { InvalidArgumentError } from '@webtune/errors';

/** The ECDH curves a secure round may name. */
export type SecAggCurve = 'P-256' | 'X25519';

const subtle = (): SubtleCrypto => {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new InvalidArgumentError('Secure aggregation needs WebCrypto (crypto.subtle): a secure context (https or localhost) in a browser, or Node >= 20.');
  return s;
};

/** WebCrypto's types want ArrayBuffer-backed views; nothing here uses a SharedArrayBuffer. */
const bytes = (u: Uint8Array): Uint8Array<ArrayBuffer> => u as Uint8Array<ArrayBuffer>;

const algorithm = (curve: SecAggCurve): EcKeyImportParams | Algorithm => (curve === 'P-256' ? { name: 'ECDH', namedCurve: 'P-256' } : { name: 'X25519' });

/** Bytes of a raw public key on the curve. */
export const publicKeyBytes = (curve: SecAggCurve): number => (curve === 'P-256' ? 65 : 32);

const b64u = {
  encode(bytes: Uint8Array): string {
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  },
  decode(text: string): Uint8Array {
    const s = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  },
};

/** Standard base64 (with padding), as the protocol's JSON carries bytes. */
export function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** The inverse of toBase64; text that is not base64 is InvalidArgumentError. */
export function fromBase64(text: unknown, what: string): Uint8Array {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new InvalidArgumentError(`${what} must be base64`);
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Whether this runtime's WebCrypto does ECDH on `curve` (X25519 is missing from older browsers). */
export async function curveSupported(curve: SecAggCurve): Promise<boolean> {
  try {
    await subtle().generateKey(algorithm(curve), true, ['deriveBits']);
    return true;
  } catch {
    return false;
  }
}

/** An ECDH key pair as bytes: the raw public key and the 32-byte private scalar (to be Shamir-shared). */
export interface KeyPairBytes {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

/** A fresh ECDH key pair on `curve`, exported as bytes. */
export async function generateKeyPair(curve: SecAggCurve): Promise<KeyPairBytes> {
  const pair = (await subtle().generateKey(algorithm(curve), true, ['deriveBits'])) as CryptoKeyPair;
  const publicKey = new Uint8Array(await subtle().exportKey('raw', pair.publicKey));
  const jwk = await subtle().exportKey('jwk', pair.privateKey);
  return { publicKey, privateKey: b64u.decode(jwk.d!) };
}

function checkPublicKey(curve: SecAggCurve, key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array) || key.length !== publicKeyBytes(curve) || (curve === 'P-256' && key[0] !== 4)) {
    throw new InvalidArgumentError(`${what} is not a raw ${curve} public key (${publicKeyBytes(curve)} bytes${curve === 'P-256' ? ', uncompressed' : ''})`);
  }
}

async function importPrivate(curve: SecAggCurve, privateKey: Uint8Array, publicKey: Uint8Array): Promise<CryptoKey> {
  const jwk: JsonWebKey = curve === 'P-256'
    ? { kty: 'EC', crv: 'P-256', d: b64u.encode(privateKey), x: b64u.encode(publicKey.subarray(1, 33)), y: b64u.encode(publicKey.subarray(33, 65)), ext: true }
    : { kty: 'OKP', crv: 'X25519', d: b64u.encode(privateKey), x: b64u.encode(publicKey), ext: true };
  return subtle().importKey('jwk', jwk, algorithm(curve), false, ['deriveBits']);
}

/**
 * The ECDH shared secret (32 bytes) of a private key (with its own public key, which a JWK needs)
 * and a peer's public key. A peer key that is not a point of the curve, or a private key that does
 * not match its public key, is InvalidArgumentError.
 */
export async function agree(curve: SecAggCurve, own: KeyPairBytes, peerPublicKey: Uint8Array): Promise<Uint8Array> {
  checkPublicKey(curve, peerPublicKey, 'the peer key');
  checkPublicKey(curve, own.publicKey, 'the own public key');
  let priv: CryptoKey;
  let peer: CryptoKey;
  try {
    priv = await importPrivate(curve, own.privateKey, own.publicKey);
    peer = await subtle().importKey('raw', bytes(peerPublicKey), algorithm(curve), false, []);
  } catch (cause) {
    throw new InvalidArgumentError(`a ${curve} key is not valid: ${(cause as Error).message}`);
  }
  try {
    return new Uint8Array(await subtle().deriveBits({ name: curve === 'P-256' ? 'ECDH' : 'X25519', public: peer }, priv, 256));
  } catch (cause) {
    // X25519 refuses small-order points (an all-zero shared secret).
    throw new InvalidArgumentError(`no ${curve} shared secret with this peer key: ${(cause as Error).message}`);
  }
}

const encoder = new TextEncoder();

/** HKDF-SHA256 (RFC 5869): `length` bytes of output keying material. */
export async function hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array | string, length: number): Promise<Uint8Array> {
  const key = await subtle().importKey('raw', bytes(ikm), 'HKDF', false, ['deriveBits']);
  const bits = await subtle().deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: bytes(salt), info: bytes(typeof info === 'string' ? encoder.encode(info) : info) }, key, length * 8);
  return new Uint8Array(bits);
}

/** AES-256-GCM: nonce (12 bytes) || ciphertext || tag (16 bytes). */
export async function seal(key: Uint8Array, plaintext: Uint8Array, associatedData: Uint8Array): Promise<Uint8Array> {
  const k = await subtle().importKey('raw', bytes(key), 'AES-GCM', false, ['encrypt']);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = new Uint8Array(await subtle().encrypt({ name: 'AES-GCM', iv, additionalData: bytes(associatedData) }, k, bytes(plaintext)));
  const out = new Uint8Array(12 + ct.length);
  out.set(iv);
  out.set(ct, 12);
  return out;
}

/** Opens seal()'s output; a ciphertext that fails authentication (tampered, wrong key or associated data) is undefined. */
export async function open(key: Uint8Array, sealed: Uint8Array, associatedData: Uint8Array): Promise<Uint8Array | undefined> {
  if (sealed.length < 12 + 16) return undefined;
  const k = await subtle().importKey('raw', bytes(key), 'AES-GCM', false, ['decrypt']);
  try {
    return new Uint8Array(await subtle().decrypt({ name: 'AES-GCM', iv: bytes(sealed.subarray(0, 12)), additionalData: bytes(associatedData) }, k, bytes(sealed.subarray(12))));
  } catch {
    return undefined;
  }
}

/** Keystream bytes per AES-CTR call (the stream is produced in pieces so no call holds more). */
const CHUNK_BYTES = 1 << 22;

/**
 * `words` uint32 words (little-endian) of the AES-256-CTR keystream of `key`: the encryption of
 * zeros with the counter block starting at 0 and counting in its low 64 bits. One key, one stream:
 * every key here comes from HKDF with the round in its salt, so no (key, counter) pair repeats.
 */
export async function keystreamWords(key: Uint8Array, words: number): Promise<Uint32Array> {
  if (key.length !== 32) throw new InvalidArgumentError('a mask key is 32 bytes');
  const k = await subtle().importKey('raw', bytes(key), 'AES-CTR', false, ['encrypt']);
  const out = new Uint8Array(words * 4);
  const zeros = new Uint8Array(Math.min(CHUNK_BYTES, out.length));
  for (let at = 0; at < out.length; at += CHUNK_BYTES) {
    const n = Math.min(CHUNK_BYTES, out.length - at);
    const counter = new Uint8Array(16);
    new DataView(counter.buffer).setBigUint64(8, BigInt(at / 16));
    const chunk = await subtle().encrypt({ name: 'AES-CTR', counter, length: 64 }, k, zeros.subarray(0, n));
    out.set(new Uint8Array(chunk), at);
  }
  // Uint32 view in the platform's order; every supported platform is little-endian, which the
  // protocol states, and the server runs this same code.
  return new Uint32Array(out.buffer);
}
