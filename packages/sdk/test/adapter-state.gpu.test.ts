/**
 * exportAdapterState / importAdapterState on Dawn (tiny Llama): the trainable state of P-tuning and
 * of prefix tuning with projection (what their PEFT files cannot carry: those hold the encoder's
 * output) goes from one session to another unchanged, the adapter keeps its method, and training
 * on from it in both sessions gives the same bytes; through createTrainer's facade too. Every way a
 * state can be wrong is a typed error, and the adapter in place survives a refused import.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, ModelFormatError } from '@webtune/errors';
import { createNodeGpu } from '@webtune/gpu/node';
import { nodeDirectorySource } from '../../model/src/node.js';
import { parseSafetensors, PROMPT_EMBEDDINGS, serializeSafetensors, tensorToFloat32, type HostTensor } from '../../model/src/index.js';
import { FIXTURES } from '../../model/test/tiny-models.js';
import { chapter } from '../../trainer/test/corpus.js';
import { createTrainer, TrainerSession, type AdapterRequest, type AdapterState, type TrainRequest } from '../src/index.js';

async function ready(): Promise<TrainerSession> {
  const session = new TrainerSession({ gpu: await createNodeGpu() });
  await session.loadModel(nodeDirectorySource(`${FIXTURES}models/tiny-llama`));
  await session.prepareData({ texts: [chapter(1), chapter(2)] }, { seqLen: 32, heldOut: 0 });
  return session;
}

const tensorsOf = (bytes: Uint8Array) => new Map<string, HostTensor>([...parseSafetensors(bytes).tensors].map(([k, t]) => [k, { data: tensorToFloat32(t), shape: [...t.shape] }]));
const rewrite = (bytes: Uint8Array, edit: (t: Map<string, HostTensor>) => void) => {
  const t = tensorsOf(bytes);
  edit(t);
  return serializeSafetensors([...t].map(([name, v]) => ({ name, dtype: 'F32' as const, shape: v.shape, data: v.data })));
};

const METHODS: Array<{ name: string; adapter: AdapterRequest; keys: string[] }> = [
  {
    name: 'P-tuning', adapter: { method: 'p-tuning', config: { numVirtualTokens: 5, encoderHiddenSize: 32 } },
    keys: ['prompt_encoder.embedding.weight', ...[0, 2, 4].flatMap((i) => [`prompt_encoder.mlp_head.${i}.weight`, `prompt_encoder.mlp_head.${i}.bias`])],
  },
  {
    name: 'prefix tuning with projection', adapter: { method: 'prefix-tuning', config: { numVirtualTokens: 4, prefixProjection: true, encoderHiddenSize: 16 } },
    keys: ['prompt_encoder.embedding.weight', ...[0, 2].flatMap((i) => [`prompt_encoder.transform.${i}.weight`, `prompt_encoder.transform.${i}.bias`])],
  },
];

describe.each(METHODS)('$name: the trainable state moves whole', ({ adapter, keys }) => {
  const run: TrainRequest = { steps: 3, batchSize: 2, learningRate: 2e-2, seed: 3, schedule: 'constant', checkpointEvery: 0, adapter };

  it('exports every trainable tensor under its key; another session imports it as the same adapter and trains on to the same bytes', async () => {
    const [a, b] = [await ready(), await ready()];
    try {
      await a.train({ ...run, runId: 'first' });
      const state = await a.exportAdapterState();
      expect(state.architecture).toBe('llama');
      expect(state.spec.method).toBe(adapter.method);
      expect([...tensorsOf(state.weights).keys()].sort()).toEqual([...keys].sort());
      // The PEFT file holds the encoder's output only: not the state.
      expect([...parseSafetensors((await a.exportAdapter())['adapter_model.safetensors']).tensors.keys()]).toEqual([PROMPT_EMBEDDINGS]);

      await b.importAdapterState({ spec: state.spec, architecture: state.architecture, weights: state.weights.slice() });
      expect((await b.exportAdapterState()).weights).toEqual(state.weights);
      expect(await b.generate('Call me Ishmael.', { maxNewTokens: 5 })).toEqual(await a.generate('Call me Ishmael.', { maxNewTokens: 5 }));
      const on: TrainRequest = { ...run, runId: 'on', startFrom: 'current' };
      await a.train(on);
      await b.train(on);
      const [sa, sb] = [await a.exportAdapterState(), await b.exportAdapterState()];
      expect(sb.weights).toEqual(sa.weights);
      expect(sb.weights).not.toEqual(state.weights);
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});

describe('importAdapterState refusals', () => {
  let session: TrainerSession;
  let state: AdapterState;
  beforeAll(async () => {
    session = await ready();
    await expect(session.exportAdapterState()).rejects.toThrowError(InvalidArgumentError);
    await session.train({ steps: 1, batchSize: 2, checkpointEvery: 0, adapter: METHODS[0]!.adapter });
    state = await session.exportAdapterState();
  });
  afterAll(() => session?.dispose());

  it('a spec this model cannot use is InvalidArgumentError; tensors that do not fit it are ModelFormatError; the adapter in place stays', async () => {
    const config = state.spec.config;
    const wrongSpec: Array<[string, Parameters<TrainerSession['importAdapterState']>[0]]> = [
      ['unknown method', { ...state, spec: { method: 'adalora' as never, config } }],
      ['a setting P-tuning does not have', { ...state, spec: { method: 'p-tuning', config: { ...config, bias: 'all' } } }],
      ['more virtual tokens than the context has', { ...state, spec: { method: 'p-tuning', config: { ...config, numVirtualTokens: 300 } } }],
      ['another architecture', { ...state, architecture: 'gpt2' }],
      ['weights that are not bytes', { ...state, weights: [1, 2, 3] as never }],
    ];
    for (const [what, bad] of wrongSpec) await expect(session.importAdapterState(bad), what).rejects.toThrowError(InvalidArgumentError);
    await expect(session.importAdapterState({ ...state, spec: { method: 'p-tuning', config: { ...config, numVirtualTokens: 300 } } })).rejects.toThrowError(/leaves no room in the model's context/);

    const wrongTensors: Array<[string, Uint8Array, RegExp]> = [
      ['not safetensors', new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]), /adapter state/],
      ['a missing tensor', rewrite(state.weights, (t) => t.delete('prompt_encoder.mlp_head.4.bias')), /has no "prompt_encoder.mlp_head.4.bias"/],
      ['a tensor of another shape', rewrite(state.weights, (t) => t.set('prompt_encoder.mlp_head.0.bias', { data: new Float32Array(31), shape: [31] })), /"prompt_encoder.mlp_head.0.bias" is \[31\]; this P-tuning adapter needs \[32\]/],
      ['a tensor it does not have', rewrite(state.weights, (t) => t.set(PROMPT_EMBEDDINGS, { data: new Float32Array(5 * 64), shape: [5, 64] })), /does not have: prompt_embeddings/],
      ['a spec of another method', state.weights, /has no "prompt_embeddings"/],
    ];
    for (const [what, weights, message] of wrongTensors) {
      const spec = what === 'a spec of another method' ? { method: 'prompt-tuning' as const, config: { numVirtualTokens: 5, init: 'random' } } : state.spec;
      const error = await session.importAdapterState({ spec, weights }).catch((e: unknown) => e);
      expect(error, what).toBeInstanceOf(ModelFormatError);
      expect((error as Error).message, what).toMatch(message);
    }
    expect((await session.exportAdapterState()).weights).toEqual(state.weights);
  });

  it('createTrainer\'s facade has both (the bytes go across as they came)', async () => {
    const trainer = await createTrainer({ inline: true, gpu: await createNodeGpu() });
    try {
      await trainer.loadModel(nodeDirectorySource(`${FIXTURES}models/tiny-llama`));
      await trainer.importAdapterState({ spec: state.spec, weights: state.weights.slice() });
      const back = await trainer.exportAdapterState();
      expect(back).toEqual({ spec: state.spec, architecture: 'llama', weights: state.weights });
    } finally {
      await trainer.dispose();
    }
  });
});
