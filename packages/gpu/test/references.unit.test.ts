import { describe, expect, it } from 'vitest';
import { f16BitsToF32, f32ToF16Bits, fromF16Bits, loraBackwardRef, loraForwardRef, MemoryTracker } from '../src/index.js';
import { formatBytes, WebtuneError, InvalidArgumentError, BindingLimitError } from '@webtune/errors';
import { grid1D } from '../src/kernels/grid.js';
import { f32, loraFixture } from './fixtures.js';
import { worstError } from './random.js';

describe('LoRA CPU reference against PyTorch autograd', () => {
  for (const c of loraFixture.cases.filter((c) => c.weightFormat === 'f32')) {
    it(c.name, () => {
      const input = { x: f32(c.x), w: f32(c.weight), a: f32(c.loraA), b: f32(c.loraB), m: c.m, k: c.k, n: c.n, r: c.rank, scale: c.scale };
      const { y } = loraForwardRef(input);
      const g = loraBackwardRef(input, f32(c.upstream));
      for (const [name, got] of [['y', y], ['dx', g.dx], ['dA', g.dA], ['dB', g.dB]] as const) {
        expect(worstError(got, f32(c[name]), 1e-5, 1e-4).ratio, name).toBeLessThanOrEqual(1);
      }
    });
  }
});

describe('f16 conversion', () => {
  it('fromF16Bits widens all 65,536 bit patterns as f16BitsToF32 does (signed zeros and NaNs included)', () => {
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const wide = fromF16Bits(bits);
    for (let i = 0; i < 65536; i++) {
      const expected = f16BitsToF32(i);
      if (Number.isNaN(expected)) expect(Number.isNaN(wide[i])).toBe(true);
      else expect(Object.is(wide[i], expected), `bits 0x${i.toString(16)}: ${wide[i]} vs ${expected}`).toBe(true);
    }
  });

  it('round-trips representable values and rounds to nearest even', () => {
    for (const v of [0, -0, 1, -2.5, 65504, 6.103515625e-5, 5.960464477539063e-8]) expect(f16BitsToF32(f32ToF16Bits(v))).toBe(v);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // halfway between 1 and the next f16: even
    expect(f32ToF16Bits(1e6)).toBe(0x7c00);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
  });
});

describe('memory accounting', () => {
  it('tracks live and peak bytes by label', () => {
    const m = new MemoryTracker();
    m.allocated('a', 100);
    m.allocated('b', 50);
    m.released('a', 100);
    m.allocated('a', 10);
    const s = m.snapshot();
    expect(s.liveBytes).toBe(60);
    expect(s.peakBytes).toBe(150);
    expect(s.byLabel.a).toEqual({ liveBytes: 10, peakBytes: 100, buffers: 1 });
    m.resetPeak();
    expect(m.peakBytes).toBe(60);
  });
});

describe('errors and helpers', () => {
  it('typed errors carry a code and a class name', () => {
    const e = new InvalidArgumentError('x');
    expect(e).toBeInstanceOf(WebtuneError);
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.name).toBe('InvalidArgumentError');
    const b = new BindingLimitError('weights', 2 * 2 ** 30, 2 ** 30, 'maxStorageBufferBindingSize');
    expect(b.message).toMatch(/2\.00 GiB.*1\.00 GiB.*never truncates/);
  });
  it('formatBytes', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
  });
  it('grid1D spreads past the per-dimension limit', () => {
    expect(grid1D(100, 64, 65535)).toEqual({ workgroups: [2, 1], rowStride: 128 });
    const g = grid1D(65535 * 64 * 3 + 1, 64, 65535);
    expect(g.workgroups).toEqual([65535, 4]);
    expect(g.workgroups[0] * g.workgroups[1] * 64).toBeGreaterThanOrEqual(65535 * 64 * 3 + 1);
  });
});
