import { describe, expect, it, vi } from 'vitest';
import { CheckpointCorruptError, CheckpointMismatchError, CheckpointNotFoundError, InvalidArgumentError, ModelFormatError, StorageFullError } from '@webtune/errors';
import { parseSafetensors, serializeSafetensors, type HostTensor, type LoraConfig } from '@webtune/model';
import {
  CHECKPOINT_SCHEMA_VERSION,
  MemoryCheckpointStore,
  checkpointFromFile,
  checkpointId,
  checkpointToFile,
  decodeCheckpoint,
  encodeCheckpoint,
  indexedDbCheckpointStore,
  isQuotaExceededError,
  metaDigest,
  type CheckpointMeta,
  type CheckpointRecord,
  type DataCursor,
  type ModelFingerprint,
} from '../src/index.js';

const MODEL: ModelFingerprint = { modelType: 'llama', hiddenSize: 6, numLayers: 2, numHeads: 2, numKvHeads: 1, intermediateSize: 10, vocabSize: 32 };
const LORA: LoraConfig = { rank: 2, alpha: 4, dropout: 0.05, targets: ['q_proj', 'v_proj'], rslora: false };
const CURSOR: DataCursor = { epoch: 1, index: 12, epochRng: [1, 0xffffffff, 305419896, 7] };
const TRAIN = { steps: 40, batchSize: 2, seqLen: 8, learningRate: 2e-4, schedule: 'cosine', adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 } };

/** Values with edge cases: -0, a subnormal, a huge and a tiny value, and a NaN with a payload. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sin(seed * 31 + i * 1.7) * (i % 3 === 0 ? 1e-3 : 3);
  out[0] = -0;
  if (n > 1) out[1] = 1e-41;
  if (n > 2) out[2] = 3.4e38;
  if (n > 3) new Uint32Array(out.buffer)[3] = 0x7fc01234;
  return out;
}

/** PEFT-named A [r, in] and B [out, r] for q_proj (6 -> 6) and v_proj (6 -> 3, one KV head of 3) of two layers, plus AdamW moments. */
function tensors(rank = LORA.rank) {
  const adapter = new Map<string, HostTensor>();
  const optimizer = new Map<string, HostTensor>();
  let seed = 1;
  for (let layer = 0; layer < MODEL.numLayers; layer++) {
    for (const [name, out] of [['q_proj', 6], ['v_proj', 3]] as const) {
      const base = `base_model.model.model.layers.${layer}.self_attn.${name}`;
      for (const [key, shape] of [[`${base}.lora_A.weight`, [rank, 6]], [`${base}.lora_B.weight`, [out, rank]]] as const) {
        const n = shape[0] * shape[1];
        adapter.set(key, { data: values(n, seed++), shape: [...shape] });
        optimizer.set(`${key}.exp_avg`, { data: values(n, seed++), shape: [...shape] });
        optimizer.set(`${key}.exp_avg_sq`, { data: values(n, seed++).map(Math.abs), shape: [...shape] });
      }
    }
  }
  return { adapter, optimizer };
}

function input(overrides: Partial<Parameters<typeof encodeCheckpoint>[0]> = {}) {
  return { runId: 'run-a', step: 20, totalSteps: 40, model: MODEL, lora: LORA, train: TRAIN, cursor: CURSOR, label: 'data:abc', ...tensors(), ...overrides };
}

const bits = (t: HostTensor) => [...new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length)];

function expectSameTensors(got: ReadonlyMap<string, HostTensor>, want: ReadonlyMap<string, HostTensor>) {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [key, t] of want) {
    expect(got.get(key)!.shape, key).toEqual(t.shape);
    expect(bits(got.get(key)!), key).toEqual(bits(t));
  }
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', new Uint8Array(bytes)));
  return [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The documented digest input: the meta without metaSha256, as JSON with keys sorted at every level. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => k !== 'metaSha256' && o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

const flipByte = (bytes: Uint8Array, at: number) => {
  const out = bytes.slice();
  out[at] = out[at]! ^ 0x10;
  return out;
};

describe('checkpoint encode/decode', () => {
  it('round-trips tensors bit for bit and keeps every meta field', async () => {
    const inp = input({ createdAt: 1_700_000_000_000 });
    const record = await encodeCheckpoint(inp);
    const { meta } = record;
    expect(meta).toMatchObject({
      schema: CHECKPOINT_SCHEMA_VERSION, id: 'run-a@000000020', runId: 'run-a', step: 20, totalSteps: 40, createdAt: 1_700_000_000_000,
      model: MODEL, adapter: { method: 'lora', config: LORA }, train: TRAIN, cursor: CURSOR, label: 'data:abc', byteLength: record.bytes.byteLength,
    });
    expect(meta.sha256).toBe(await sha256(record.bytes));
    // The bytes are plain safetensors with the format metadata PEFT/transformers expect.
    expect(parseSafetensors(record.bytes).metadata).toEqual({ format: 'pt' });

    const decoded = await decodeCheckpoint(record, { model: { ...MODEL }, lora: { ...LORA } });
    expect(decoded.meta).toEqual(meta);
    expect(decoded.metaProtected).toBe(true);
    expect(meta.metaSha256).toMatch(/^[0-9a-f]{64}$/);
    expectSameTensors(decoded.adapter, inp.adapter);
    expectSameTensors(decoded.optimizer, inp.optimizer);
    // Copies: changing the record afterwards does not reach the decoded tensors.
    record.bytes.fill(0);
    expectSameTensors(decoded.adapter, inp.adapter);
  });

  it('ids sort by step and refuse bad input', async () => {
    expect(checkpointId('r', 7)).toBe('r@000000007');
    expect([checkpointId('r', 100), checkpointId('r', 9), checkpointId('r', 20)].sort()).toEqual(['r@000000009', 'r@000000020', 'r@000000100']);
    expect(() => checkpointId('', 1)).toThrowError(InvalidArgumentError);
    expect(() => checkpointId('r', -1)).toThrowError(InvalidArgumentError);
    const { adapter, optimizer } = tensors();
    const stray = new Map(optimizer).set('nothing.lora_A.weight.exp_avg', { data: new Float32Array(2), shape: [2] });
    await expect(encodeCheckpoint(input({ optimizer: stray }))).rejects.toBeInstanceOf(InvalidArgumentError);
    const badShape = new Map(adapter).set('x.lora_A.weight', { data: new Float32Array(3), shape: [2, 2] });
    await expect(encodeCheckpoint(input({ adapter: badShape }))).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('refuses a flipped byte, truncated bytes and a wrong byteLength as corrupt, naming the checkpoint', async () => {
    const record = await encodeCheckpoint(input());
    const id = record.meta.id;
    const last = record.bytes.byteLength - 1;
    for (const at of [last, Math.floor(last / 2), 20]) {
      const p = decodeCheckpoint({ meta: record.meta, bytes: flipByte(record.bytes, at) });
      await expect(p).rejects.toBeInstanceOf(CheckpointCorruptError);
      await expect(decodeCheckpoint({ meta: record.meta, bytes: flipByte(record.bytes, at) })).rejects.toThrow(new RegExp(`${id}.*SHA-256`));
    }
    await expect(decodeCheckpoint({ meta: record.meta, bytes: record.bytes.subarray(0, last - 3) })).rejects.toThrow(/truncated/);
    const longer = new Uint8Array(record.bytes.byteLength + 4);
    longer.set(record.bytes);
    await expect(decodeCheckpoint({ meta: record.meta, bytes: longer })).rejects.toBeInstanceOf(CheckpointCorruptError);
    await expect(decodeCheckpoint({ meta: { ...record.meta, byteLength: record.meta.byteLength + 1 }, bytes: record.bytes })).rejects.toBeInstanceOf(CheckpointCorruptError);
    const e = await decodeCheckpoint({ meta: record.meta, bytes: flipByte(record.bytes, last) }).catch((x: unknown) => x);
    expect((e as CheckpointCorruptError).code).toBe('CHECKPOINT_CORRUPT');
  });

  it('refuses bytes whose checksum matches but that are not a whole safetensors file', async () => {
    const record = await encodeCheckpoint(input());
    const cut = record.bytes.slice(0, record.bytes.byteLength - 8);
    // Resealed: what a writer with a bug (not a damaged store) would produce.
    const reseal = async (m: CheckpointMeta) => ({ ...m, metaSha256: await metaDigest(m) });
    const meta = await reseal({ ...record.meta, byteLength: cut.byteLength, sha256: await sha256(cut) });
    await expect(decodeCheckpoint({ meta, bytes: cut })).rejects.toBeInstanceOf(CheckpointCorruptError);
    await expect(decodeCheckpoint({ meta, bytes: cut })).rejects.toThrow(/not a readable safetensors/);
    // Well-formed safetensors, but a moment without its parameter.
    const odd = serializeSafetensors([{ name: 'a.lora_A.weight.exp_avg', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }, { name: 'b.lora_A.weight', dtype: 'F32', shape: [2, 1], data: new Float32Array([3, 4]) }], { format: 'pt' });
    const oddMeta = await reseal({ ...record.meta, byteLength: odd.byteLength, sha256: await sha256(odd) });
    await expect(decodeCheckpoint({ meta: oddMeta, bytes: odd })).rejects.toThrow(/belongs to no adapter tensor/);
  });

  it('schema 5 carries DP-SGD state (sampler, accountant history) under the checksum; a schema 4 checkpoint loads as before', async () => {
    const privacy = { sampler: [1, 2, 3, 4] as [number, number, number, number], accountant: [{ noiseMultiplier: 1.1, sampleRate: 0.01, steps: 20 }] };
    const record = await encodeCheckpoint(input({ privacy }));
    expect(record.meta.schema).toBe(5);
    const decoded = await decodeCheckpoint(record, { model: MODEL, lora: LORA });
    expect(decoded.meta.privacy).toEqual(privacy);
    // Edited state (the sampler rewound, fewer steps counted) is refused by the metadata checksum.
    await expect(decodeCheckpoint({ meta: { ...record.meta, privacy: { ...privacy, sampler: [9, 2, 3, 4] } } as CheckpointMeta, bytes: record.bytes })).rejects.toThrow(CheckpointCorruptError);
    await expect(decodeCheckpoint({ meta: { ...record.meta, privacy: { ...privacy, accountant: [{ ...privacy.accountant[0]!, steps: 2 }] } } as CheckpointMeta, bytes: record.bytes })).rejects.toThrow(CheckpointCorruptError);
    // Malformed state is corrupt (resealed, as a buggy writer would make it), as is DP state in a schema that had none.
    const long = Array.from({ length: 1001 }, (_, i) => ({ noiseMultiplier: 1 + i, sampleRate: 0.5, steps: 1 }));
    for (const bad of [{ sampler: [1, 2, 3] }, { sampler: [0, 0, 0, 0], accountant: [] }, { sampler: [1, 2, 3, 4], accountant: long }, { sampler: [1, 2, 3, 4], accountant: [{ noiseMultiplier: -1, sampleRate: 0.5, steps: 1 }] }, { sampler: [1, 2, 3, 4], accountant: [{ noiseMultiplier: 1, sampleRate: 2, steps: 1 }] }, 'dp']) {
      const meta = { ...record.meta, privacy: bad } as unknown as CheckpointMeta;
      meta.metaSha256 = await metaDigest(meta);
      await expect(decodeCheckpoint({ meta, bytes: record.bytes }), JSON.stringify(bad)).rejects.toThrow(/field "privacy"/);
    }
    const v4 = { ...record.meta, schema: 4 } as CheckpointMeta;
    v4.metaSha256 = await metaDigest(v4);
    await expect(decodeCheckpoint({ meta: v4, bytes: record.bytes })).rejects.toThrow(/says schema 4, which had none/);
    // A schema 4 checkpoint (no privacy) still loads, keeping its schema.
    const plain = await encodeCheckpoint(input());
    const { metaSha256: _s, ...rest } = plain.meta;
    const old = { ...rest, schema: 4 } as CheckpointMeta;
    old.metaSha256 = await sha256(new TextEncoder().encode(canonical(old)));
    await expect(decodeCheckpoint({ meta: old, bytes: plain.bytes }, { model: MODEL, lora: LORA })).resolves.toMatchObject({ metaProtected: true, meta: { schema: 4 } });
  });

  it('migrates a schema 0 meta (no totalSteps, no label) and refuses a newer schema with a message to update', async () => {
    const inp = input();
    const record = await encodeCheckpoint(inp);
    // v0 as written by the draft layout: no totalSteps, no label.
    const v0 = {
      schema: 0, id: record.meta.id, runId: 'run-a', step: 20, createdAt: record.meta.createdAt, model: { ...MODEL }, lora: { ...LORA },
      train: { ...TRAIN }, cursor: { ...CURSOR }, byteLength: record.meta.byteLength, sha256: record.meta.sha256,
    };
    const decoded = await decodeCheckpoint({ meta: v0 as never, bytes: record.bytes }, { model: MODEL, lora: LORA });
    expect(decoded.meta.schema).toBe(CHECKPOINT_SCHEMA_VERSION);
    expect(decoded.metaProtected).toBe(false); // v0 had no metadata checksum: loadable, and said so
    expect(decoded.meta.totalSteps).toBe(TRAIN.steps);
    expect(decoded.meta.label).toBeUndefined();
    expect(decoded.meta.cursor).toEqual(CURSOR);
    expectSameTensors(decoded.adapter, inp.adapter);
    // Without train.steps, totalSteps falls back to the step reached.
    const noSteps = await decodeCheckpoint({ meta: { ...v0, train: {} } as never, bytes: record.bytes });
    expect(noSteps.meta.totalSteps).toBe(20);

    const future = { ...record.meta, schema: CHECKPOINT_SCHEMA_VERSION + 1 };
    await expect(decodeCheckpoint({ meta: future, bytes: record.bytes })).rejects.toBeInstanceOf(CheckpointCorruptError);
    await expect(decodeCheckpoint({ meta: future, bytes: record.bytes })).rejects.toThrow(/newer webtune.*update webtune/);
    await expect(decodeCheckpoint({ meta: { ...record.meta, cursor: { epoch: 0 } } as never, bytes: record.bytes })).rejects.toThrow(/"cursor"/);
  });

  it('checks the metadata too: every one-digit edit of the meta is refused, in a record and in a portable file', async () => {
    const record = await encodeCheckpoint(input({ createdAt: 1_700_000_000_000 }));
    const text = JSON.stringify(record.meta);
    let edits = 0;
    for (let at = 0; at < text.length; at++) {
      const c = text[at]!;
      if (c < '0' || c > '9') continue;
      const edited = `${text.slice(0, at)}${c === '9' ? '0' : String(Number(c) + 1)}${text.slice(at + 1)}`;
      const meta = JSON.parse(edited) as CheckpointMeta;
      const error = await decodeCheckpoint({ meta, bytes: record.bytes }).then(() => undefined, (e: unknown) => e);
      expect(error, `edit at ${at}: ${edited.slice(Math.max(0, at - 20), at + 10)}`).toBeInstanceOf(CheckpointCorruptError);
      edits++;
    }
    expect(edits).toBeGreaterThan(100);
    // The portable file carries the same checksum.
    const file = checkpointToFile(record);
    const fromFile = checkpointFromFile(file);
    await expect(decodeCheckpoint(fromFile)).resolves.toMatchObject({ metaProtected: true });
    const later = checkpointFromFile(file);
    await expect(decodeCheckpoint({ ...later, meta: { ...later.meta, step: later.meta.step + 1 } })).rejects.toThrow(/metadata .* does not match its SHA-256/);
    // Dropping the checksum while keeping schema 2 is refused; claiming schema 1 with a checksum too.
    const { metaSha256: _dropped, ...bare } = record.meta;
    await expect(decodeCheckpoint({ meta: bare as CheckpointMeta, bytes: record.bytes })).rejects.toThrow(/no checksum/);
    await expect(decodeCheckpoint({ meta: { ...record.meta, schema: 1 }, bytes: record.bytes })).rejects.toBeInstanceOf(CheckpointCorruptError);
  });

  it('schema 3 carries the evaluation history; a schema 2 checkpoint (before it) still loads, protected, and may not claim one', async () => {
    const evaluation = { history: [{ step: 10, loss: 2.5 }, { step: 20, loss: 2.25 }], best: { step: 20, loss: 2.25 }, sinceImprovement: 0 };
    const record = await encodeCheckpoint({ ...input(), evaluation });
    expect(record.meta.schema).toBe(CHECKPOINT_SCHEMA_VERSION);
    expect((await decodeCheckpoint(record)).meta.evaluation).toEqual(evaluation);
    // As webtune 0.2.0 wrote it: schema 2, LoRA settings under `lora`, no evaluation, its checksum over that meta.
    const { evaluation: _e, metaSha256: _s, adapter, ...rest } = record.meta;
    const v2 = { ...rest, lora: adapter.config, schema: 2 } as unknown as CheckpointMeta;
    v2.metaSha256 = await sha256(new TextEncoder().encode(canonical(v2)));
    const decoded = await decodeCheckpoint({ meta: v2, bytes: record.bytes });
    expect(decoded).toMatchObject({ metaProtected: true, meta: { schema: 2, step: 20 } });
    expect(decoded.meta.evaluation).toBeUndefined();
    await expect(decodeCheckpoint({ meta: { ...v2, evaluation }, bytes: record.bytes })).rejects.toThrow(/evaluation history but says schema 2/);
    // A malformed history is refused like any other field.
    await expect(encodeCheckpoint({ ...input(), evaluation: { history: [{ step: 1, loss: Number.NaN }], sinceImprovement: 0 } })).rejects.toThrow(/"evaluation"/);
  });

  it('a schema 1 checkpoint (before the metadata checksum) still loads, marked unprotected', async () => {
    const record = await encodeCheckpoint(input());
    const { metaSha256: _none, adapter, ...v1 } = { ...record.meta, schema: 1, lora: LORA };
    expect(adapter.method).toBe('lora');
    const decoded = await decodeCheckpoint({ meta: v1 as unknown as CheckpointMeta, bytes: record.bytes }, { model: MODEL, lora: LORA });
    expect(decoded.metaProtected).toBe(false);
    expect(decoded.meta.step).toBe(20);
    // Its tensors are still checked.
    await expect(decodeCheckpoint({ meta: v1 as unknown as CheckpointMeta, bytes: flipByte(record.bytes, 30) })).rejects.toThrow(/SHA-256/);
  });

  it('schema 4 and later store the adapter as { method, config }; a schema 3 LoRA checkpoint (as 0.3 wrote it) still loads with its checksum; another method is a mismatch', async () => {
    const ia3 = { method: 'ia3' as const, config: { targets: ['k_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] } };
    const ia3Tensors = new Map<string, HostTensor>([
      ['base_model.model.model.layers.0.self_attn.k_proj.ia3_l', { data: values(2, 1), shape: [2, 1] }],
      ['base_model.model.model.layers.0.mlp.down_proj.ia3_l', { data: values(10, 2), shape: [1, 10] }],
    ]);
    const moments = new Map<string, HostTensor>([...ia3Tensors].flatMap(([k, t]) => [[`${k}.exp_avg`, t], [`${k}.exp_avg_sq`, t]] as [string, HostTensor][]));
    const record = await encodeCheckpoint({ ...input(), lora: undefined, spec: ia3, adapter: ia3Tensors, optimizer: moments });
    expect(record.meta).toMatchObject({ schema: 5, adapter: ia3 });
    expect('lora' in record.meta).toBe(false);
    const decoded = await decodeCheckpoint(record, { model: MODEL, adapter: ia3 });
    expectSameTensors(decoded.adapter, ia3Tensors);
    // Offered to a LoRA run (or an IA3 run with other targets) it is a typed mismatch naming the methods.
    await expect(decodeCheckpoint(record, { model: MODEL, lora: LORA })).rejects.toThrow(CheckpointMismatchError);
    await expect(decodeCheckpoint(record, { model: MODEL, lora: LORA })).rejects.toThrow(/trained IA3 but this run uses LoRA/);
    await expect(decodeCheckpoint(record, { model: MODEL, adapter: { ...ia3, config: { ...ia3.config, targets: ['q_proj'] } } })).rejects.toThrow(/IA3 targets/);
    // A LoRA checkpoint written by schema 3: `lora` in place of `adapter`, checksum over that form.
    const lora = await encodeCheckpoint(input());
    const { metaSha256: _s, adapter, ...rest } = lora.meta;
    const v3 = { ...rest, lora: adapter.config, schema: 3 } as unknown as CheckpointMeta;
    v3.metaSha256 = await sha256(new TextEncoder().encode(canonical(v3)));
    const old = await decodeCheckpoint({ meta: v3, bytes: lora.bytes }, { model: MODEL, lora: LORA });
    expect(old).toMatchObject({ metaProtected: true, meta: { schema: 3, adapter: { method: 'lora', config: LORA } } });
    // Migrated once (as a store or a portable file hands it back) it still loads: migration is idempotent.
    await expect(decodeCheckpoint({ meta: old.meta, bytes: lora.bytes }, { model: MODEL, lora: LORA })).resolves.toMatchObject({ metaProtected: true });
    const store = new MemoryCheckpointStore();
    await store.put({ meta: v3, bytes: lora.bytes }, 3);
    const viaFile = checkpointFromFile(checkpointToFile(await store.get(v3.id)));
    await expect(decodeCheckpoint(viaFile, { model: MODEL, lora: LORA })).resolves.toMatchObject({ meta: { schema: 3, step: 20 } });
    // Both forms at once, the old form in schema 4, or another method in an old schema: edited.
    await expect(decodeCheckpoint({ meta: { ...v3, adapter } as unknown as CheckpointMeta, bytes: lora.bytes })).rejects.toThrow(/both LoRA settings/);
    await expect(decodeCheckpoint({ meta: { ...lora.meta, adapter: undefined, lora: LORA } as unknown as CheckpointMeta, bytes: lora.bytes })).rejects.toThrow(/old place/);
    const { lora: _l, ...v3Rest } = v3 as unknown as Record<string, unknown>;
    await expect(decodeCheckpoint({ meta: { ...v3Rest, adapter: ia3 } as unknown as CheckpointMeta, bytes: lora.bytes })).rejects.toThrow(/LoRA settings, as every checkpoint of schema 3/);
    // An unknown method (prototype names included) or a malformed config is corrupt, not a crash.
    for (const bad of [{ method: 'prefix', config: {} }, { method: 'constructor', config: {} }, { method: 'ia3', config: { targets: ['k_proj'], feedforward: 5 } }, { method: 'bitfit', config: { targets: 7, learningRateScale: 1 } }]) {
      await expect(decodeCheckpoint({ meta: { ...record.meta, adapter: bad } as unknown as CheckpointMeta, bytes: record.bytes }), JSON.stringify(bad)).rejects.toThrow(CheckpointCorruptError);
    }
    await expect(encodeCheckpoint({ ...input(), lora: undefined, spec: { method: 'toString', config: {} } as never })).rejects.toThrow(/toString/);
  });

  it('refuses a checkpoint of another model or LoRA configuration, naming what differs', async () => {
    const record = await encodeCheckpoint(input());
    const mismatch = (expect_: Parameters<typeof decodeCheckpoint>[1]) =>
      decodeCheckpoint(record, expect_).then(
        () => new Error('decoded without a mismatch'),
        (e: unknown) => e as Error,
      );
    const hidden = await mismatch({ model: { ...MODEL, hiddenSize: 8 } });
    expect(hidden).toBeInstanceOf(CheckpointMismatchError);
    expect((hidden as CheckpointMismatchError).code).toBe('CHECKPOINT_MISMATCH');
    expect(hidden.message).toMatch(/hiddenSize is 6 in the checkpoint but 8/);
    expect((await mismatch({ model: { ...MODEL, modelType: 'qwen2' } })).message).toMatch(/modelType/);
    expect((await mismatch({ model: MODEL, lora: { ...LORA, rank: 4 } })).message).toMatch(/rank is 2 in the checkpoint but 4/);
    expect((await mismatch({ model: MODEL, lora: { ...LORA, alpha: 8 } })).message).toMatch(/alpha/);
    expect((await mismatch({ model: MODEL, lora: { ...LORA, rslora: true } })).message).toMatch(/rslora/);
    const targets = await mismatch({ model: MODEL, lora: { ...LORA, targets: ['q_proj'] } });
    expect(targets).toBeInstanceOf(CheckpointMismatchError);
    expect(targets.message).toMatch(/targets/);
    // Target order and dropout do not change the adapter's tensors.
    await expect(decodeCheckpoint(record, { model: MODEL, lora: { ...LORA, dropout: 0, targets: ['v_proj', 'q_proj'] } })).resolves.toBeDefined();
  });
});

describe('checkpoint file', () => {
  it('exports one safetensors file and imports it back exactly', async () => {
    const inp = input();
    const record = await encodeCheckpoint(inp);
    const file = checkpointToFile(record);
    const parsed = parseSafetensors(file);
    expect(parsed.metadata.format).toBe('pt');
    expect(JSON.parse(parsed.metadata['webtune.checkpoint']!)).toEqual(record.meta);
    const imported = checkpointFromFile(file, 'run-a.safetensors');
    expect(imported.meta).toEqual(record.meta);
    expect([...imported.bytes]).toEqual([...record.bytes]);
    const decoded = await decodeCheckpoint(imported, { model: MODEL, lora: LORA });
    expectSameTensors(decoded.adapter, inp.adapter);
    expectSameTensors(decoded.optimizer, inp.optimizer);
  });

  it('refuses a safetensors file that is not a checkpoint, and a damaged export', async () => {
    const peft = serializeSafetensors([{ name: 'base_model.model.x.lora_A.weight', dtype: 'F32', shape: [1, 2], data: new Float32Array([1, 2]) }], { format: 'pt' });
    expect(() => checkpointFromFile(peft, 'adapter_model.safetensors')).toThrowError(ModelFormatError);
    expect(() => checkpointFromFile(peft, 'adapter_model.safetensors')).toThrowError(/adapter_model\.safetensors.*not a webtune checkpoint/);
    expect(() => checkpointFromFile(new TextEncoder().encode('hello, not safetensors'), 'notes.txt')).toThrowError(ModelFormatError);

    const record = await encodeCheckpoint(input());
    const file = checkpointToFile(record);
    // A flipped byte in the last tensor passes the structural import but not decode's checksum.
    const damaged = checkpointFromFile(flipByte(file, file.byteLength - 2));
    await expect(decodeCheckpoint(damaged)).rejects.toBeInstanceOf(CheckpointCorruptError);
    expect(() => checkpointFromFile(file.subarray(0, file.byteLength - 4))).toThrowError(ModelFormatError);
  });
});

describe('MemoryCheckpointStore', () => {
  const save = async (store: MemoryCheckpointStore, runId: string, step: number, keepLast = 10, createdAt = 1000 + step) =>
    store.put(await encodeCheckpoint(input({ runId, step, createdAt })), keepLast);

  it('puts, lists newest first, gets, deletes', async () => {
    const store = new MemoryCheckpointStore();
    await save(store, 'a', 10);
    await save(store, 'a', 30);
    await save(store, 'a', 20);
    await save(store, 'b', 5, 10, 5000);
    expect((await store.list('a')).map((m) => m.step)).toEqual([30, 20, 10]);
    expect((await store.list()).map((m) => m.id)).toEqual(['b@000000005', 'a@000000030', 'a@000000020', 'a@000000010']);
    expect(await store.list('nobody')).toEqual([]);

    const inp = input({ runId: 'a', step: 30 });
    const got = await store.get('a@000000030');
    const decoded = await decodeCheckpoint(got, { model: MODEL, lora: LORA });
    expectSameTensors(decoded.adapter, inp.adapter);
    expectSameTensors(decoded.optimizer, inp.optimizer);
    // What get returns is a copy.
    got.bytes.fill(0);
    await expect(decodeCheckpoint(await store.get('a@000000030'))).resolves.toBeDefined();

    await store.delete('a@000000030');
    await store.delete('a@000000030');
    await expect(store.get('a@000000030')).rejects.toBeInstanceOf(CheckpointNotFoundError);
    expect((await store.list('a')).map((m) => m.step)).toEqual([20, 10]);
    expect((await store.latest('a'))!.record.meta.step).toBe(20);
    expect(await store.latest('nobody')).toBeUndefined();
  });

  it('prunes each run to keepLast, keeping the record just written', async () => {
    const store = new MemoryCheckpointStore();
    for (const step of [10, 20, 30, 40]) await save(store, 'a', step, 2);
    await save(store, 'b', 10, 2);
    expect((await store.list('a')).map((m) => m.step)).toEqual([40, 30]);
    expect((await store.list('b')).map((m) => m.step)).toEqual([10]);
    await save(store, 'a', 5, 2); // a restarted run: its new checkpoint stays, with the newest other
    expect((await store.list('a')).map((m) => m.step)).toEqual([40, 5]);
    await expect(save(store, 'a', 50, 0)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('latest skips a corrupt newer checkpoint and reports it, without deleting it', async () => {
    const store = new MemoryCheckpointStore();
    await save(store, 'a', 10);
    await save(store, 'a', 20);
    const newest = await encodeCheckpoint(input({ runId: 'a', step: 30 }));
    await store.put({ meta: newest.meta, bytes: flipByte(newest.bytes, newest.bytes.byteLength - 5) }, 10);
    const latest = await store.latest('a', { model: MODEL, lora: LORA });
    expect(latest!.record.meta.step).toBe(20);
    expect(latest!.skipped.map((s) => s.id)).toEqual(['a@000000030']);
    expect(latest!.skipped[0]!.error).toBeInstanceOf(CheckpointCorruptError);
    expect((await store.list('a')).map((m) => m.step)).toEqual([30, 20, 10]);
    const decoded = await decodeCheckpoint(latest!.record);
    expectSameTensors(decoded.adapter, input({ runId: 'a', step: 20 }).adapter);

    // Another model's run is a mismatch, not something to skip past.
    await expect(store.latest('a', { model: { ...MODEL, numLayers: 3 } })).rejects.toBeInstanceOf(CheckpointMismatchError);
    // Nothing verifies: an error, not a silent fresh start.
    await store.delete('a@000000020');
    await store.delete('a@000000010');
    await expect(store.latest('a')).rejects.toThrow(/none of run "a"/);
  });

  it('a put over the quota fails with StorageFullError and leaves the earlier checkpoints loadable', async () => {
    const size = (await encodeCheckpoint(input())).bytes.byteLength;
    const store = new MemoryCheckpointStore({ quotaBytes: 2 * size + size / 2 });
    await save(store, 'a', 10, 5);
    await save(store, 'a', 20, 5);
    const error = await save(store, 'a', 30, 5).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StorageFullError);
    expect((error as StorageFullError).code).toBe('STORAGE_FULL');
    expect(((error as StorageFullError).cause as DOMException).name).toBe('QuotaExceededError');
    expect((await store.list('a')).map((m) => m.step)).toEqual([20, 10]);
    await expect(store.get('a@000000030')).rejects.toBeInstanceOf(CheckpointNotFoundError);
    for (const id of ['a@000000020', 'a@000000010']) await expect(decodeCheckpoint(await store.get(id), { model: MODEL, lora: LORA })).resolves.toBeDefined();
    expect((await store.latest('a'))!.record.meta.step).toBe(20);
    // Replacing an existing id only needs the difference.
    await save(store, 'a', 20, 5);
  });

  it('refuses to store a record whose bytes disagree with its meta', async () => {
    const store = new MemoryCheckpointStore();
    const r = await encodeCheckpoint(input());
    await expect(store.put({ meta: r.meta, bytes: r.bytes.subarray(1) } as CheckpointRecord, 3)).rejects.toBeInstanceOf(CheckpointCorruptError);
    expect(await store.list()).toEqual([]);
  });
});

describe('storage errors', () => {
  it('recognises quota errors, including an abort caused by one', () => {
    const quota = new DOMException('full', 'QuotaExceededError');
    expect(isQuotaExceededError(quota)).toBe(true);
    expect(isQuotaExceededError(new DOMException('aborted', 'AbortError'))).toBe(false);
    const abort = Object.assign(new DOMException('aborted', 'AbortError'), { cause: quota });
    expect(isQuotaExceededError(abort)).toBe(true);
    // An IDB abort event: its target (the transaction) carries the error.
    expect(isQuotaExceededError({ type: 'abort', target: { error: quota } })).toBe(true);
    expect(isQuotaExceededError(new Error('disk on fire'))).toBe(false);
    expect(isQuotaExceededError(undefined)).toBe(false);
  });

  it('says that checksums need a secure context where WebCrypto is missing', async () => {
    vi.stubGlobal('crypto', undefined);
    try {
      await expect(encodeCheckpoint(input())).rejects.toThrow(/secure contexts \(https or localhost\)/);
    } finally {
      vi.unstubAllGlobals();
    }
    await expect(encodeCheckpoint(input())).resolves.toBeDefined();
  });

  it('the IndexedDB store says what to use where there is no IndexedDB', () => {
    expect(() => indexedDbCheckpointStore()).toThrowError(/MemoryCheckpointStore/);
  });
});
