// Builds one Vite app per import pattern (sizes/*.ts) and measures what each ships: what the page
// loads at once (its entry chunk and the chunks that imports statically, from Vite's manifest), the
// worker chunk(s), and lazy chunks (loaded only in inline mode), raw and gzipped, with markers for
// protobufjs (the ONNX reader) and WGSL (every compute shader has `@compute`).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'vite';

const here = import.meta.dirname;
const result = {};
for (const name of ['trainer-only', 'trainer-onnx', 'trainer-federated']) {
  const outDir = join(here, 'dist-sizes', name);
  await build({
    root: join(here, 'sizes'), base: './', logLevel: 'warn', configFile: false,
    build: { outDir, emptyOutDir: true, manifest: true, rollupOptions: { input: join(here, 'sizes', `${name}.html`) } },
  });
  const manifest = JSON.parse(readFileSync(join(outDir, '.vite/manifest.json'), 'utf8'));
  const eager = new Set();
  const visit = (key) => {
    const chunk = manifest[key];
    if (!chunk || eager.has(chunk.file)) return;
    eager.add(chunk.file);
    for (const k of chunk.imports ?? []) visit(k);
  };
  visit(Object.keys(manifest).find((k) => manifest[k].isEntry));
  const assets = join(outDir, 'assets');
  const chunks = readdirSync(assets).filter((f) => f.endsWith('.js')).map((file) => {
    const bytes = readFileSync(join(assets, file));
    const text = bytes.toString('utf8');
    const kind = /worker/.test(file) ? 'worker' : eager.has(`assets/${file}`) ? 'page' : 'lazy';
    return { file, kind, bytes: bytes.length, gzipBytes: gzipSync(bytes, { level: 9 }).length, protobufjs: text.includes('invalid wire type'), wgsl: text.includes('@compute') };
  });
  result[name] = chunks;
}
writeFileSync(join(here, 'sizes.json'), JSON.stringify(result, null, 2));
