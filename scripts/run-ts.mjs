#!/usr/bin/env node
// Runs a TypeScript file of this repo under Node: bundles it with esbuild (the packages from their
// sources and the shaders as text, scripts/workspace.mjs; the native packages and Playwright left external) and runs the bundle with the remaining arguments.
// Usage: node scripts/run-ts.mjs scripts/export_webtune_adapters.ts [args...]
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { workspaceEsbuildPlugin } from './workspace.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [entry, ...args] = process.argv.slice(2);
if (!entry) {
  console.error('usage: node scripts/run-ts.mjs FILE.ts [args...]');
  process.exit(2);
}
const cache = join(root, 'node_modules/.cache/webtune-scripts');
mkdirSync(cache, { recursive: true });
const out = join(cache, `${basename(entry, '.ts')}.mjs`);
await build({
  entryPoints: [resolve(entry)], bundle: true, platform: 'node', format: 'esm', outfile: out,
  external: ['webgpu', 'better-sqlite3', '@playwright/test', 'playwright-core'], plugins: [workspaceEsbuildPlugin()], logLevel: 'warning',
  banner: { js: "import { createRequire as __webtuneRequire } from 'node:module'; const require = __webtuneRequire(import.meta.url);" },
});
const r = spawnSync(process.execPath, [out, ...args], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
