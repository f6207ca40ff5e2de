#!/usr/bin/env node
// `npm start`: the demo (Vite) and a local federated coordinator, side by side on localhost.
// The coordinator's global adapter (LoRA r8 on q_proj/v_proj, PEFT init) is made for the bundled
// demo model (or the tiny test model when the demo model has not been generated) on first start;
// its SQLite file and the adapter live in node_modules/.cache/webtune-start/.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomFillSync } from 'node:crypto';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const state = join(root, 'node_modules/.cache/webtune-start');
mkdirSync(state, { recursive: true });
const demoPort = Number(process.env.PORT ?? 5173);
const coordinatorPort = Number(process.env.COORDINATOR_PORT ?? 8787);
const secret = process.env.WEBTUNE_ENROLMENT_SECRET ?? 'demo';

const demoModel = join(root, 'demo-app/public/models/webtune-demo');
const modelDir = existsSync(join(demoModel, 'config.json')) ? demoModel : join(root, 'packages/model/test/fixtures/models/tiny-llama');
const config = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8'));

/** PEFT's init for q_proj / v_proj: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0, as safetensors bytes. */
function initialAdapter(rank) {
  const hidden = config.hidden_size;
  const heads = config.num_attention_heads;
  const headDim = config.head_dim ?? hidden / heads;
  const kv = (config.num_key_value_heads ?? heads) * headDim;
  const tensors = [];
  const random = new Uint32Array(1);
  const uniform = () => (randomFillSync(random), random[0] / 4294967296);
  for (let l = 0; l < config.num_hidden_layers; l++) {
    for (const [m, out] of [['q_proj', heads * headDim], ['v_proj', kv]]) {
      const base = `base_model.model.model.layers.${l}.self_attn.${m}`;
      const bound = 1 / Math.sqrt(hidden);
      tensors.push([`${base}.lora_A.weight`, [rank, hidden], Float32Array.from({ length: rank * hidden }, () => (uniform() * 2 - 1) * bound)]);
      tensors.push([`${base}.lora_B.weight`, [out, rank], new Float32Array(out * rank)]);
    }
  }
  const header = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape, data] of tensors) {
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  let at = 8 + json.length;
  for (const [, , data] of tensors) {
    out.set(new Uint8Array(data.buffer), at);
    at += data.byteLength;
  }
  return out;
}

const db = join(state, 'coordinator.sqlite');
const adapterFile = join(state, 'adapter_model.safetensors');
if (!existsSync(db) || !existsSync(adapterFile)) {
  writeFileSync(adapterFile, initialAdapter(8));
  writeFileSync(join(state, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: ['q_proj', 'v_proj'], bias: 'none', fan_in_fan_out: false,
  }));
  writeFileSync(join(state, 'round-config.json'), JSON.stringify({
    minClients: 1, maxClients: 4, roundDurationMs: 120000, deadlineAction: 'extend',
    round: { steps: 10, batchSize: 2, learningRate: 0.005, seqLen: 64, clipNorm: 1, dp: { mode: 'local', noiseMultiplier: 0.5, delta: 1e-5 } },
  }));
}

const children = [];
const run = (args, name) => {
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  child.on('exit', (code) => {
    console.log(`${name} exited (${code}); stopping.`);
    for (const c of children) c.kill('SIGTERM');
    process.exit(code ?? 0);
  });
  children.push(child);
};
run([
  'packages/coordinator/bin/coordinator.mjs', '--db', db, '--port', String(coordinatorPort), '--initial-adapter', adapterFile,
  '--enrolment-secret', secret, '--config', join(state, 'round-config.json'), '--allow-origin', `http://localhost:${demoPort}`,
], 'coordinator');
run([join(root, 'node_modules/vite/bin/vite.js'), '--config', 'vite.config.ts', '--port', String(demoPort), '--strictPort'], 'vite');
console.log(`\nwebtune demo: http://localhost:${demoPort}/   coordinator: http://127.0.0.1:${coordinatorPort} (enrolment secret "${secret}")\n`);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => {
  for (const c of children) c.kill('SIGTERM');
  process.exit(0);
});
