import { describe, expect, it } from 'vitest';
import { createDynamicMap, NF4_CODEBOOK } from '../src/nf4/format.js';
import { dequantizeNF4, quantizeNF4 } from '../src/nf4/quantize.js';
import { InvalidArgumentError } from '@webtune/errors';
import { f32, nf4Fixture, u8 } from './fixtures.js';

describe('NF4 format constants match bitsandbytes (scripts/make_nf4_fixtures.py)', () => {
  it('codebook', () => {
    expect(Array.from(NF4_CODEBOOK)).toEqual(Array.from(f32(nf4Fixture.nf4Code)));
  });
  it('signed dynamic map, bit for bit', () => {
    expect(Array.from(createDynamicMap())).toEqual(Array.from(f32(nf4Fixture.dynamicMap)));
  });
});

describe('quantizeNF4 against bitsandbytes default backend goldens', () => {
  for (const c of nf4Fixture.cases) {
    it(c.name, () => {
      const input = f32(c.input);
      const q = quantizeNF4(input, { blockSize: c.blockSize, doubleQuant: c.doubleQuant, shape: c.shape });
      expect(q.shape).toEqual(c.shape);
      expect(Buffer.from(q.packed).toString('hex')).toBe(Buffer.from(u8(c.packed)).toString('hex'));
      if (q.scales.doubleQuant) {
        expect(q.scales.offset).toBe(c.offset);
        expect(Array.from(q.scales.quantizedAbsmax)).toEqual(Array.from(u8(c.quantizedAbsmax!)));
        expect(Array.from(q.scales.nestedAbsmax)).toEqual(Array.from(f32(c.nestedAbsmax!)));
      } else {
        expect(Array.from(q.scales.absmax)).toEqual(Array.from(f32(c.absmax)));
      }
      expect(Array.from(dequantizeNF4(q))).toEqual(Array.from(f32(c.dequantized)));
    });
  }

  it('the tie case really contains exact midpoints, and they go to the lower code', () => {
    const tie = nf4Fixture.cases[0]!;
    const input = f32(tie.input);
    const mid = Math.fround((NF4_CODEBOOK[8]! + NF4_CODEBOOK[9]!) / 2);
    const at = Array.from(input).indexOf(mid);
    expect(at).toBeGreaterThan(0);
    const byte = u8(tie.packed)[at >> 1]!;
    expect(at % 2 === 0 ? byte >> 4 : byte & 15).toBe(8);
  });
});

describe('quantizeNF4 rejects bad input with typed errors', () => {
  it('NaN', () => {
    expect(() => quantizeNF4(Float32Array.from([1, NaN, 2]))).toThrowError(InvalidArgumentError);
    expect(() => quantizeNF4(Float32Array.from([1, NaN, 2]))).toThrow(/index 1 is not finite/);
  });
  it('Infinity', () => {
    expect(() => quantizeNF4(Float32Array.from([Infinity]))).toThrowError(InvalidArgumentError);
  });
  it('empty', () => {
    expect(() => quantizeNF4(new Float32Array(0))).toThrow(/empty/);
  });
  it('wrong block size', () => {
    expect(() => quantizeNF4(new Float32Array(64), { blockSize: 48 })).toThrow(/block size 48 is not supported/);
  });
  it('shape that does not match the data', () => {
    expect(() => quantizeNF4(new Float32Array(64), { shape: [8, 9] })).toThrow(/holds 72 values but data has 64/);
  });
  it('truncated packed bytes on dequantize', () => {
    const q = quantizeNF4(new Float32Array(64).fill(0.5));
    expect(() => dequantizeNF4({ ...q, packed: q.packed.subarray(0, 10) })).toThrowError(InvalidArgumentError);
  });
});
