#!/usr/bin/env node
// `npm start`: builds the demo (vite build: the app, its service worker and the bundled model in
// dist/demo-app), serves the build (vite preview) and starts a local federated coordinator beside
// it, both on localhost. The coordinator's global adapter (LoRA r8 on q_proj/v_proj, PEFT init) is
// made for the bundled demo model on first start; its SQLite file and the adapter live in
// node_modules/.cache/webtune-start/. `npm run dev` is the same with Vite's dev server (hot reload,
// no service worker) instead of the build.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomFillSync } from 'node:crypto';
import { initialLoraAdapter } from './initial-adapter.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const state = join(root, 'node_modules/.cache/webtune-start');
mkdirSync(state, { recursive: true });
const demoPort = Number(process.env.PORT ?? 5173);
const coordinatorPort = Number(process.env.COORDINATOR_PORT ?? 8787);
const secret = process.env.WEBTUNE_ENROLMENT_SECRET ?? 'demo';

const dev = process.argv.includes('--dev');
const config = JSON.parse(readFileSync(join(root, 'demo-app/public/models/webtune-demo/config.json'), 'utf8'));

const db = join(state, 'coordinator.sqlite');
const adapterFile = join(state, 'adapter_model.safetensors');
if (!existsSync(db) || !existsSync(adapterFile)) {
  const random = new Uint32Array(1);
  const uniform = () => (randomFillSync(random), random[0] / 4294967296);
  const { weights, adapterConfig } = initialLoraAdapter(config, { rank: 8, alpha: 16, uniform });
  writeFileSync(adapterFile, weights);
  writeFileSync(join(state, 'adapter_config.json'), JSON.stringify(adapterConfig));
  writeFileSync(join(state, 'round-config.json'), JSON.stringify({
    minClients: 1, maxClients: 4, roundDurationMs: 120000, deadlineAction: 'extend',
    round: { steps: 10, batchSize: 2, learningRate: 0.005, seqLen: 64, clipNorm: 1, dp: { mode: 'local', noiseMultiplier: 0.5, delta: 1e-5 } },
  }));
}

const children = [];
const run = (args, name, env = {}) => {
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...env } });
  child.on('exit', (code) => {
    console.log(`${name} exited (${code}); stopping.`);
    for (const c of children) c.kill('SIGTERM');
    process.exit(code ?? 0);
  });
  children.push(child);
};
run([
  'scripts/coordinator.mjs', '--db', db, '--port', String(coordinatorPort), '--initial-adapter', adapterFile,
  '--config', join(state, 'round-config.json'), '--allow-origin', `http://localhost:${demoPort}`,
], 'coordinator', { WEBTUNE_ENROLMENT_SECRET: secret });
const vite = join(root, 'node_modules/vite/bin/vite.js');
if (dev) {
  run([vite, '--config', 'vite.config.ts', '--port', String(demoPort), '--strictPort'], 'vite');
} else {
  console.log('Building the demo (vite build)…');
  const build = spawnSync(process.execPath, [vite, 'build', '--config', 'vite.config.ts', '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) {
    for (const c of children) c.kill('SIGTERM');
    console.error('The demo build failed; see above.');
    process.exit(build.status ?? 1);
  }
  run([vite, 'preview', '--config', 'vite.config.ts', '--port', String(demoPort), '--strictPort'], 'vite preview');
}
console.log(`\nwebtune demo: http://localhost:${demoPort}/   coordinator: http://127.0.0.1:${coordinatorPort} (enrolment secret "${secret}")\n`);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => {
  for (const c of children) c.kill('SIGTERM');
  process.exit(0);
});
