/** Loads the JSON fixtures written by scripts/ (base64 little-endian tensors). */
import nf4Json from './fixtures/nf4.json';
import loraJson from './fixtures/lora.json';

export interface EncodedTensor {
  dtype: 'f32' | 'u8' | 'f64';
  shape: number[];
  b64: string;
}

function bytesOf(t: EncodedTensor): Uint8Array {
  const bin = atob(t.b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

export function f32(t: EncodedTensor): Float32Array {
  if (t.dtype !== 'f32') throw new Error(`fixture tensor is ${t.dtype}, not f32`);
  return new Float32Array(bytesOf(t).buffer);
}

export function u8(t: EncodedTensor): Uint8Array {
  if (t.dtype !== 'u8') throw new Error(`fixture tensor is ${t.dtype}, not u8`);
  return bytesOf(t);
}

export interface Nf4Case {
  name: string;
  blockSize: number;
  doubleQuant: boolean;
  shape: number[];
  input: EncodedTensor;
  packed: EncodedTensor;
  absmax: EncodedTensor;
  quantizedAbsmax?: EncodedTensor;
  nestedAbsmax?: EncodedTensor;
  offset?: number;
  dequantized: EncodedTensor;
}

export interface LoraCase {
  name: string;
  m: number;
  k: number;
  n: number;
  rank: number;
  alpha: number;
  scale: number;
  weightFormat: 'f32' | 'nf4';
  x: EncodedTensor;
  weight: EncodedTensor;
  loraA: EncodedTensor;
  loraB: EncodedTensor;
  upstream: EncodedTensor;
  y: EncodedTensor;
  dx: EncodedTensor;
  dA: EncodedTensor;
  dB: EncodedTensor;
}

export const nf4Fixture = nf4Json as unknown as { generatedBy: string; nf4Code: EncodedTensor; dynamicMap: EncodedTensor; cases: Nf4Case[] };
export const loraFixture = loraJson as unknown as { generatedBy: string; cases: LoraCase[] };
