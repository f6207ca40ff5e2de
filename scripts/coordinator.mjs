#!/usr/bin/env node
// Starts the webtune coordinator from the repository's sources: bundles packages/coordinator/src/cli.ts
// with esbuild (as scripts/run-ts.mjs does; better-sqlite3 stays external) into node_modules/.cache
// and runs it in this process, so this process is the server (signals, kill -9 and exit codes reach
// it directly). The published package's bin (packages/coordinator/bin) runs the built dist/cli.js.
// Usage: node scripts/coordinator.mjs --db ./coordinator.sqlite --port 8787 \
//          --initial-adapter adapter.safetensors --enrolment-secret S [--config round-config.json] \
//          [--adapter-config adapter_config.json|spec.json] [--architecture llama|gpt2]
// (prompt tuning, P-tuning and prefix tuning need --adapter-config and the architecture; --help lists the rest)
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { root, workspaceEsbuildPlugin } from './workspace.mjs';

const pkg = join(root, 'packages/coordinator');
const cache = join(root, 'node_modules/.cache/webtune-coordinator');
mkdirSync(cache, { recursive: true });
const result = await build({
  entryPoints: [join(pkg, 'src/cli.ts')], bundle: true, platform: 'node', format: 'esm', write: false,
  outfile: join(cache, 'coordinator.mjs'), external: ['better-sqlite3', 'webgpu'], plugins: [workspaceEsbuildPlugin()], logLevel: 'warning',
  banner: { js: "import { createRequire as __webtuneRequire } from 'node:module'; const require = __webtuneRequire(import.meta.url);" },
});
// Written under a per-process name and renamed: launchers starting side by side never see half a file.
const out = join(cache, 'coordinator.mjs');
const tmp = `${out}.${process.pid}.tmp`;
writeFileSync(tmp, result.outputFiles[0].contents);
renameSync(tmp, out);
await import(`${pathToFileURL(out).href}?v=${process.pid}`);
