#!/usr/bin/env node
// `npm test`: checks that the machine can run every lane, installs what is missing when it can
// (root on Debian), then runs typecheck (with the API reference's doc check), unit, gpu (Node +
// Dawn), browser (Playwright + Chromium) and consumers (the packed tarballs installed in projects
// outside the repo: Vite, webpack 5, plain Node, strict tsc) lanes. Every lane must find a WebGPU
// adapter: none is ever skipped.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const isDebian = existsSync('/etc/debian_version');

function fail(message) {
  console.error(`\nnpm test: ${message}`);
  process.exit(1);
}

async function dawnAdapter() {
  // A child process: Dawn prints to stdout and must not share this process's exit path.
  const probe = spawnSync(process.execPath, ['-e', `
    const { create, globals } = require('webgpu');
    Object.assign(globalThis, globals);
    create([]).requestAdapter().then((a) => { console.log('ADAPTER=' + (a ? a.info.description || a.info.vendor : 'none')); process.exit(0); },
      (e) => { console.log('ADAPTER=none ' + e.message); process.exit(0); });`], { cwd: root, encoding: 'utf8' });
  const match = /ADAPTER=(.*)/.exec(probe.stdout ?? '');
  return match && !match[1].startsWith('none') ? match[1] : undefined;
}

function installSystemDeps() {
  console.log('npm test: installing system packages (scripts/install-system-deps.sh)…');
  const r = spawnSync('bash', [join(root, 'scripts/install-system-deps.sh')], { stdio: 'inherit' });
  if (r.status !== 0) fail('scripts/install-system-deps.sh failed; see its output above.');
}

async function preflight() {
  if (!existsSync(join(root, 'node_modules/webgpu'))) fail('dependencies are missing: run `npm install` (or `npm ci`) first.');
  let adapter = await dawnAdapter();
  const needChromium = !existsSync(chromium);
  if ((needChromium || !adapter) && isRoot && isDebian) {
    installSystemDeps();
    adapter = await dawnAdapter();
  }
  if (!existsSync(chromium)) {
    fail(`Chromium is needed for the browser lane and was not found at ${chromium}.\n` +
      '  Debian/Ubuntu: sudo apt-get install chromium (or run sudo scripts/install-system-deps.sh)\n' +
      '  Elsewhere: set CHROMIUM_PATH to a Chromium or Chrome binary.');
  }
  if (!adapter) {
    fail('Dawn (the `webgpu` package) found no WebGPU adapter for the gpu lane.\n' +
      '  Without a GPU it needs Mesa >= 24 lavapipe. Debian 12: sudo scripts/install-system-deps.sh\n' +
      '  (mesa-vulkan-drivers from bookworm-backports). Other distributions: install Mesa\'s Vulkan drivers >= 24.');
  }
  console.log(`npm test: gpu lane adapter: ${adapter}; browser lane: ${chromium}`);
}

function run(name, command, args) {
  console.log(`\n=== ${name}: ${command} ${args.join(' ')}`);
  const r = spawnSync(command, args, { cwd: root, stdio: 'inherit', env: process.env });
  return { name, ok: r.status === 0 };
}

/** Commands in order, stopping at the first failure, as one lane. */
function runAll(name, commands) {
  for (const [command, args] of commands) {
    if (!run(name, command, args).ok) return { name, ok: false };
  }
  return { name, ok: true };
}

await preflight();
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';
const results = [
  runAll('typecheck', [
    [npx, ['tsc', '-p', 'tsconfig.json', '--noEmit']],
    // The API reference (docs/api, `npm run docs`): fails on an exported symbol without a doc comment.
    [npx, ['typedoc', '--emit', 'none']],
  ]),
  run('unit', npx, ['vitest', 'run', '--project', 'unit']),
  run('gpu', npx, ['vitest', 'run', '--project', 'gpu']),
  run('browser', npx, ['playwright', 'test', '-c', 'e2e/playwright.config.ts']),
  runAll('consumers', [
    [process.execPath, ['e2e/consumers/setup.mjs']],
    [npx, ['playwright', 'test', '-c', 'e2e/consumers/playwright.config.ts']],
  ]),
];
const failed = results.filter((r) => !r.ok);
console.log(`\n${results.map((r) => `${r.name} ${r.ok ? 'ok' : 'FAILED'}`).join(', ')}`);
console.log(`lanes: ${results.length - failed.length} passed, ${failed.length} failed`);
process.exit(failed.length ? 1 : 0);
