// The esbuild app. esbuild does not bundle `new Worker(new URL(...))` by itself, so webtune's worker
// entry is a second entry point, named `worker`, in the same folder as the app's chunks: that is
// where createTrainer() looks for it (new URL('./worker.js', import.meta.url)). The README's recipe.
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

const here = import.meta.dirname;
const outdir = join(here, 'dist-esbuild');
await build({
  entryPoints: [{ in: 'src/main.ts', out: 'main' }, { in: 'webtune/worker', out: 'worker' }],
  bundle: true, format: 'esm', splitting: true, minify: true, outdir, absWorkingDir: here, logLevel: 'warning',
});
writeFileSync(join(outdir, 'index.html'), readFileSync(join(here, 'index.html'), 'utf8').replace('./src/main.ts', './main.js'));
cpSync(join(here, 'public'), outdir, { recursive: true });
console.log('esbuild: main.js, worker.js');
