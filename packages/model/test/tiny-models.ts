/**
 * The tiny HF-layout models and PyTorch goldens written by scripts/make_tiny_models.py, read
 * straight from the fixture folders (the loader has its own tests).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseModelConfig, parseSafetensors, tensorToFloat32, type HostTensor, type ModelConfig, type WeightReader } from '../src/index.js';

export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
export const MODELS = ['tiny-llama', 'tiny-qwen2', 'tiny-gpt2'] as const;
export type TinyModel = (typeof MODELS)[number];

interface Encoded {
  dtype: 'f32';
  shape: number[];
  b64: string;
}

export interface LoraVariant {
  name: string;
  config: { r: number; alpha: number; dropout: number; useRslora: boolean; targets: string[]; fanInFanOut: boolean; scale: number; modules: string[] };
  adapters: Record<string, Encoded>;
  grads: Record<string, Encoded>;
  logits: Encoded;
  loss: number;
  greedy: number[];
}

export interface Golden {
  model: string;
  inputIds: number[][];
  labels: number[][];
  logits: Encoded;
  loss: number;
  greedyPrompt: number[];
  greedyBase: number[];
  lora: LoraVariant[];
}

export function f32(t: Encoded): Float32Array {
  const bytes = Buffer.from(t.b64, 'base64');
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

export function host(t: Encoded): HostTensor {
  return { data: f32(t), shape: t.shape };
}

export function golden(name: TinyModel): Golden {
  return JSON.parse(readFileSync(`${FIXTURES}goldens/${name}.json`, 'utf8')) as Golden;
}

/** config + weights of one fixture folder (single-file safetensors). */
export function tinyModel(name: string): { config: ModelConfig; reader: WeightReader & { names(): string[] } } {
  const dir = `${FIXTURES}models/${name}/`;
  const config = parseModelConfig(readFileSync(`${dir}config.json`, 'utf8'), `${name}/config.json`);
  const file = parseSafetensors(new Uint8Array(readFileSync(`${dir}model.safetensors`)), `${name}/model.safetensors`);
  return {
    config,
    reader: {
      has: (n) => file.tensors.has(n),
      read: (n) => {
        const t = file.tensors.get(n)!;
        return { data: tensorToFloat32(t), shape: t.shape };
      },
      names: () => [...file.tensors.keys()],
    },
  };
}

/** HF's causal-LM shift: target of position s is labels[s + 1]; -100 and the last position are ignored. */
export function batchOf(g: Golden): { ids: Uint32Array; targets: Uint32Array; batch: number; seq: number } {
  const batch = g.inputIds.length;
  const seq = g.inputIds[0]!.length;
  const ids = new Uint32Array(g.inputIds.flat());
  const targets = new Uint32Array(batch * seq).fill(0xffffffff);
  for (let b = 0; b < batch; b++) {
    for (let s = 0; s + 1 < seq; s++) {
      const label = g.labels[b]![s + 1]!;
      if (label !== -100) targets[b * seq + s] = label;
    }
  }
  return { ids, targets, batch, seq };
}

/** Largest |a - b| relative to the largest |b| (gradients span orders of magnitude across layers). */
export function relativeError(a: Float32Array, b: Float32Array): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < b.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    maxRef = Math.max(maxRef, Math.abs(b[i]!));
  }
  return maxDiff / Math.max(maxRef, 1e-30);
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
