#!/usr/bin/env node
// Prints the README's tarball and bundle-size tables from the consumer lane's report.json
// (run `npm run test:consumers`, or `node e2e/consumers/setup.mjs`, first).
import { readFileSync } from 'node:fs';
import { REPORT } from './paths.mjs';

const report = JSON.parse(readFileSync(REPORT, 'utf8'));
const kb = (n) => `${(n / 1000).toFixed(1)} kB`;

console.log('| package | tarball | unpacked | files |\n|---|---|---|---|');
for (const [name, t] of Object.entries(report.tarballs)) console.log(`| \`${name}\` | ${kb(t.packedBytes)} | ${kb(t.unpackedBytes)} | ${t.files} |`);

console.log('\n| app imports | page (loaded at once) | worker | lazy (inline mode only) |\n|---|---|---|---|');
const what = { 'trainer-only': '`createTrainer` from `webtune`', 'trainer-onnx': '`createOnnxTrainer` from `webtune/onnx`', 'trainer-federated': '`createTrainer` + `FederatedClient` from `webtune/federated`' };
for (const [app, chunks] of Object.entries(report.sizes)) {
  const sum = (kind) => {
    const c = chunks.filter((x) => x.kind === kind);
    return c.length ? `${kb(c.reduce((a, x) => a + x.bytes, 0))} (${kb(c.reduce((a, x) => a + x.gzipBytes, 0))} gzip)` : '-';
  };
  console.log(`| ${what[app]} | ${sum('page')} | ${sum('worker')} | ${sum('lazy')} |`);
}
