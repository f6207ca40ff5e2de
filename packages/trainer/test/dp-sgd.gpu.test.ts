/**
 * DP-SGD's per-example clipping (PerExampleClipper) against a PyTorch reference that loops over
 * the examples one by one and clips them as Opacus' DPOptimizer.clip_and_accumulate does
 * (scripts/make_dp_sgd_fixtures.py): per-example L2 norms over every trainable tensor, the sum of
 * min(1, C / (norm + 1e-6)) x gradient before any noise, for LoRA, DoRA, IA3 and prefix tuning
 * on the tiny Llama and the tiny GPT-2, f32. C sits between the per-example norms, so some
 * examples are clipped and some are not; C = 1e9 gives the plain sum; reset() starts from zero.
 *
 * Tolerances (f32 on Dawn against f32 PyTorch; the references' clipping is float64, rounded once):
 * gradients and sums, max |diff| / max |reference| per tensor below 3e-5, as the method suites
 * (packages/model/test/methods.gpu.test.ts 2e-5, prompt-methods.gpu.test.ts 3e-5): the gradient's
 * own summation-order error, which the clip factor (a smooth function of the norm) carries into
 * the sum at the same relative size. Norms are sums of squares of those gradients, relative 1e-5
 * (their errors average over thousands of entries). Losses: 1e-5 absolute, as the method suites.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { useNodeContext } from '../../gpu/test/node-context.js';
import {
  adapterFromTensors, adapterMethod, Transformer, uploadBaseModel, type Adapter, type AdapterSpec, type HostTensor, type ModelConfig,
} from '../../model/src/index.js';
import { f32, relativeError, tinyModel } from '../../model/test/tiny-models.js';
import { batchFromWindows, PerExampleClipper } from '../src/index.js';

const gpu = useNodeContext();

const TOL = { grad: 3e-5, norm: 1e-5, loss: 1e-5 } as const;

interface Encoded { dtype: 'f32'; shape: number[]; b64: string }
type Tensors = Record<string, Encoded>;
interface DpVariant {
  name: string;
  method: 'lora' | 'dora' | 'ia3' | 'prefix-tuning';
  config: Record<string, unknown>;
  tensors: Tensors;
  losses: number[];
  perExample: Tensors[];
  norms: number[];
  maxGradNorm: number;
  clipFactors: number[];
  clipped: Tensors;
  unclippedSum: Tensors;
  reset: { rows: number[]; norms: number[]; clipped: Tensors };
}
interface DpGolden { model: string; seq: number; rows: number[][]; variants: DpVariant[] }

const MODELS = ['tiny-llama', 'tiny-gpt2'] as const;

function dpGolden(name: string): DpGolden {
  return JSON.parse(readFileSync(fileURLToPath(new URL(`./fixtures/dp-sgd-${name}.json`, import.meta.url)), 'utf8')) as DpGolden;
}

/** The variant's spec from its adapter_config.json fields (a plain prefix is resolved from its settings, as the prompt-method suite does). */
function specOf(config: ModelConfig, v: DpVariant): AdapterSpec {
  const method = adapterMethod(v.method);
  if (v.method === 'prefix-tuning') {
    return { method: v.method, config: method.resolve(config, { numVirtualTokens: v.config['num_virtual_tokens'], prefixProjection: false, encoderHiddenSize: v.config['encoder_hidden_size'] }) as AdapterSpec['config'] };
  }
  return { method: method.method, config: method.fromPeftConfig(config, v.config) as AdapterSpec['config'] };
}

const decode = (r: Tensors) => new Map<string, HostTensor>(Object.entries(r).map(([k, t]) => [k, { data: f32(t), shape: t.shape }]));

/** The tiny model on the GPU (f32) running the variant's adapter from the reference's initial tensors. */
async function session<T>(name: string, v: DpVariant, body: (model: Transformer, adapter: Adapter) => Promise<T>): Promise<T> {
  const { config, reader } = tinyModel(name);
  const base = await uploadBaseModel(gpu(), config, reader);
  const model = await Transformer.create(gpu(), base);
  const adapter = adapterFromTensors(gpu(), config, specOf(config, v), decode(v.tensors));
  try {
    model.setAdapter(adapter);
    return await body(model, adapter);
  } finally {
    adapter.release();
    model.release();
    base.release();
  }
}

function expectTensors(got: Map<string, HostTensor>, want: Tensors, what: string): void {
  expect([...got.keys()].sort(), what).toEqual(Object.keys(want).sort());
  for (const [key, t] of Object.entries(want)) {
    expect(got.get(key)!.shape, `${what} ${key}`).toEqual(t.shape);
    expect(relativeError(got.get(key)!.data, f32(t)), `${what} ${key}`).toBeLessThan(TOL.grad);
  }
}

function expectNorms(got: Float32Array, want: number[], what: string): void {
  expect(got.length, what).toBe(want.length);
  want.forEach((n, i) => expect(Math.abs(got[i]! - n) / n, `${what} example ${i}`).toBeLessThan(TOL.norm));
}

describe.each(MODELS)('%s: DP-SGD per-example clipping against PyTorch (Opacus clip_and_accumulate)', (name) => {
  const g = dpGolden(name);
  const rows = g.rows.map((r) => Uint32Array.from(r));

  it('the fixture clips some examples and not others in every variant', () => {
    expect(rows.every((r) => r.length === g.seq + 1)).toBe(true);
    for (const v of g.variants) {
      expect(v.clipFactors.some((f) => f < 1), v.name).toBe(true);
      expect(v.clipFactors.some((f) => f === 1), v.name).toBe(true);
    }
    expect(g.variants.map((v) => v.method).sort()).toEqual(['dora', 'ia3', 'lora', 'prefix-tuning']);
  });

  for (const v of g.variants) {
    it(`${v.name}: each example's gradient, a train step on its row alone, is PyTorch's (what the clipper starts from)`, async () => {
      await session(name, v, async (model, adapter) => {
        for (let i = 0; i < rows.length; i++) {
          adapter.zeroGradients();
          const { loss } = await model.trainStep(batchFromWindows([rows[i]!]));
          expect(Math.abs(loss - v.losses[i]!), `loss of example ${i}`).toBeLessThan(TOL.loss);
          expectTensors(await adapter.readGradients(), v.perExample[i]!, `example ${i}`);
        }
      });
    });

    it(`${v.name}: per-example norms and the clipped sum at C = ${v.maxGradNorm.toPrecision(4)}; with C = 1e9 the plain sum`, async () => {
      await session(name, v, async (model, adapter) => {
        const clipper = await PerExampleClipper.create(gpu(), adapter, { maxGradNorm: v.maxGradNorm });
        try {
          for (let i = 0; i < rows.length; i++) {
            const { loss } = await clipper.add(model, rows[i]!);
            expect(Math.abs(loss - v.losses[i]!), `loss of example ${i}`).toBeLessThan(TOL.loss);
          }
          expectNorms(await clipper.readNorms(), v.norms, 'norms');
          expectTensors(await clipper.readSum(), v.clipped, 'clipped sum');
        } finally {
          clipper.release();
        }
        const unclipped = await PerExampleClipper.create(gpu(), adapter, { maxGradNorm: 1e9 });
        try {
          for (const row of rows) await unclipped.add(model, row);
          expectNorms(await unclipped.readNorms(), v.norms, 'norms (C = 1e9)');
          expectTensors(await unclipped.readSum(), v.unclippedSum, 'sum (C = 1e9)');
        } finally {
          unclipped.release();
        }
      });
    });

    it(`${v.name}: after reset() the sum and the norms start from zero`, async () => {
      await session(name, v, async (model, adapter) => {
        const clipper = await PerExampleClipper.create(gpu(), adapter, { maxGradNorm: v.maxGradNorm });
        try {
          for (const row of rows) await clipper.add(model, row);
          clipper.reset();
          expect(await clipper.readNorms()).toEqual(new Float32Array(0));
          for (const [key, t] of await clipper.readSum()) expect(t.data.every((x) => x === 0), key).toBe(true);
          for (const i of v.reset.rows) await clipper.add(model, rows[i]!);
          expectNorms(await clipper.readNorms(), v.reset.norms, 'norms after reset');
          expectTensors(await clipper.readSum(), v.reset.clipped, 'clipped sum after reset');
        } finally {
          clipper.release();
        }
      });
    });
  }
});
