// Runs every ONNX fixture written by scripts/make_onnx_fixtures.py through onnxruntime-web (wasm backend,
// one thread, in Node) and compares its logits with the PyTorch goldens in
// packages/model/test/fixtures/onnx/goldens/*.json: (1) the whole prompt with an empty past
// ([batch, kv_heads, 0, head_dim]), (2) the with-past pair (prompt[:, :pastSplit] with an empty past, then
// prompt[:, pastSplit:] fed that call's present.* as past_key_values). Prints the max abs diff per
// model/variant and exits 1 if any exceeds the golden's tolerance (f32/fp16 1e-4, q4 1e-3).
// Usage: node scripts/check_onnx_fixtures.mjs
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-web';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const GOLDENS = join(ROOT, 'packages/model/test/fixtures/onnx/goldens');

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

function decodeF32(t) {
  const buf = Buffer.from(t.b64, 'base64');
  return { shape: t.shape, data: new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4) };
}

const i64 = (rows) => new ort.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length]);
const slice2d = (rows, a, b) => rows.map((r) => r.slice(a, b));

function maxAbsDiff(got, want) {
  if (got.dims.join() !== want.shape.join()) throw new Error(`shape ${got.dims} != ${want.shape}`);
  let m = 0;
  for (let i = 0; i < want.data.length; i++) {
    const d = Math.abs(got.data[i] - want.data[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

async function run(session, g, ids, start, past) {
  const b = ids.length;
  const s = ids[0].length;
  const feeds = {
    input_ids: i64(ids),
    attention_mask: i64(ids.map(() => Array(start + s).fill(1))),
    position_ids: i64(ids.map(() => Array.from({ length: s }, (_, j) => start + j))),
  };
  for (let i = 0; i < g.numLayers; i++) {
    for (const t of ['key', 'value']) {
      feeds[`past_key_values.${i}.${t}`] = past
        ? past[`present.${i}.${t}`]
        : new ort.Tensor('float32', new Float32Array(0), [b, g.kvHeads, 0, g.headDim]);
    }
  }
  return session.run(feeds);
}

async function check(g, label, modelPath, variant, externalData) {
  const opts = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
  if (externalData) opts.externalData = externalData;
  const session = await ort.InferenceSession.create(readFileSync(modelPath), opts);
  const full = await run(session, g, g.inputIds, 0, null);
  const d1 = maxAbsDiff(full.logits, decodeF32(variant.logits));
  const first = await run(session, g, slice2d(g.inputIds, 0, g.pastSplit), 0, null);
  const second = await run(session, g, slice2d(g.inputIds, g.pastSplit, g.inputIds[0].length), g.pastSplit, first);
  const d2 = maxAbsDiff(second.logits, decodeF32(variant.logitsWithPast));
  await session.release();
  return { label, d1, d2 };
}

const results = [];
for (const fn of readdirSync(GOLDENS).filter((f) => f.endsWith('.json')).sort()) {
  const g = JSON.parse(readFileSync(join(GOLDENS, fn), 'utf8'));
  for (const [name, variant] of Object.entries(g.variants)) {
    const tol = g.tolerance[name];
    const jobs = [[`${g.model}/${variant.file}`, join(ROOT, g.modelDir, variant.file), null]];
    if (name === 'f32' && g.externalDataDir) {
      const dir = join(ROOT, g.externalDataDir, 'onnx');
      jobs.push([`${g.model}-external/onnx/model.onnx`, join(dir, 'model.onnx'),
        [{ path: 'model.onnx_data', data: new Uint8Array(readFileSync(join(dir, 'model.onnx_data'))) }]]);
    }
    for (const [label, path, ext] of jobs) {
      try {
        const r = await check(g, label, path, variant, ext);
        const ok = r.d1 <= tol && r.d2 <= tol;
        results.push(ok);
        console.log(`${ok ? 'ok  ' : 'FAIL'} ${label.padEnd(42)} max|dlogits| no-past ${r.d1.toExponential(2)}  with-past ${r.d2.toExponential(2)}  (tol ${tol})`);
      } catch (e) {
        results.push(false);
        console.log(`FAIL ${label}: ${e.message ?? e}`);
      }
    }
  }
}
const failed = results.filter((x) => !x).length;
console.log(failed ? `${failed} of ${results.length} failed` : `all ${results.length} ONNX fixtures match their goldens`);
process.exit(failed ? 1 : 0);
