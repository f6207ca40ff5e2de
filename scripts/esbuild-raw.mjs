// esbuild plugin for Vite's `?raw` imports (the WGSL shaders), shared by the scripts that bundle
// TypeScript to run it under plain Node.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const rawText = {
  name: 'raw-text',
  setup(b) {
    b.onResolve({ filter: /\?raw$/ }, (args) => ({ path: join(args.resolveDir, args.path.replace(/\?raw$/, '')), namespace: 'raw' }));
    b.onLoad({ filter: /.*/, namespace: 'raw' }, (args) => ({ contents: readFileSync(args.path, 'utf8'), loader: 'text' }));
  },
};
