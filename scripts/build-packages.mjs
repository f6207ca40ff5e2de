#!/usr/bin/env node
// `npm run build:packages`: compiles every package's src/ to dist/ (ES modules + .d.ts, tsc with
// project references, tsconfig.build.json), then writes the shaders as modules next to the compiled
// kernels: packages/gpu/src/shaders/X.wgsl -> packages/gpu/dist/shaders/X.wgsl.js, `export default`
// the file's text, which is what the kernels import. The result runs in Node and in any bundler with
// no plugin. Each dist/ is emptied first, so a removed source leaves no stale module behind.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { root, workspacePackages } from './workspace.mjs';

for (const pkg of workspacePackages()) rmSync(join(pkg.dir, 'dist'), { recursive: true, force: true });

const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-b', 'tsconfig.build.json', '--force'], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);

const shaders = join(root, 'packages/gpu/src/shaders');
const out = join(root, 'packages/gpu/dist/shaders');
let count = 0;
for (const entry of readdirSync(shaders, { recursive: true })) {
  if (!entry.endsWith('.wgsl')) continue;
  const target = join(out, `${entry}.js`);
  mkdirSync(dirname(target), { recursive: true });
  const text = readFileSync(join(shaders, entry), 'utf8');
  writeFileSync(target, `// Generated from src/shaders/${entry} by the package build.\nexport default ${JSON.stringify(text)};\n`);
  count++;
}
console.log(`build:packages: ${workspacePackages().length} packages compiled, ${count} shaders written to ${relative(root, out)}`);
