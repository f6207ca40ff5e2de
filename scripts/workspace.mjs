// The workspace's packages as the repository's own tools see them. Published packages resolve to
// built JavaScript (package.json `exports`, dist/); inside the repository the demo, tests, benches
// and scripts use the TypeScript sources instead, through the aliases made here from the same
// `exports` maps (./dist/X.js -> ./src/X.ts), and the shaders through the WGSL plugins (a
// '<name>.wgsl.js' import is the text of '<name>.wgsl', as the package build writes it).
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Every workspace package: { dir, name, version, manifest }. */
export function workspacePackages() {
  const dir = join(root, 'packages');
  return readdirSync(dir)
    .filter((d) => existsSync(join(dir, d, 'package.json')))
    .map((d) => {
      const manifest = JSON.parse(readFileSync(join(dir, d, 'package.json'), 'utf8'));
      return { dir: join(dir, d), name: manifest.name, version: manifest.version, manifest };
    });
}

/** Import specifier -> absolute path of its TypeScript source, for every package export. */
export function sourceAliases() {
  const aliases = {};
  for (const pkg of workspacePackages()) {
    for (const [subpath, target] of Object.entries(pkg.manifest.exports ?? {})) {
      const file = typeof target === 'string' ? target : target.default;
      const source = join(pkg.dir, file.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts'));
      aliases[subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`] = source;
    }
  }
  return aliases;
}

const wgslSource = (jsPath) => jsPath.replace(/\.wgsl\.js$/, '.wgsl');

/** Vite plugin: the source aliases, and '*.wgsl.js' as the text of '*.wgsl'. */
export function workspaceVitePlugin() {
  const aliases = sourceAliases();
  return {
    name: 'webtune-workspace',
    enforce: 'pre',
    resolveId(source, importer) {
      if (Object.hasOwn(aliases, source)) return aliases[source];
      if (source.endsWith('.wgsl.js') && importer) return wgslSource(join(dirname(importer), source));
      // `new URL('./worker.js', import.meta.url)` in a package's source names the built file; the
      // source beside it is worker.ts.
      if (source.startsWith('.') && source.endsWith('.js') && importer?.startsWith(join(root, 'packages'))) {
        const ts = join(dirname(importer), source).replace(/\.js$/, '.ts');
        if (existsSync(ts)) return ts;
      }
      return null;
    },
    load(id) {
      if (!id.endsWith('.wgsl')) return null;
      return `export default ${JSON.stringify(readFileSync(id, 'utf8'))};`;
    },
  };
}

/** The same for esbuild (scripts/run-ts.mjs and the in-repo coordinator launcher). */
export function workspaceEsbuildPlugin() {
  const aliases = sourceAliases();
  return {
    name: 'webtune-workspace',
    setup(b) {
      b.onResolve({ filter: /^(@webtune\/|webtune($|\/))/ }, (args) => (Object.hasOwn(aliases, args.path) ? { path: aliases[args.path] } : undefined));
      b.onResolve({ filter: /\.wgsl\.js$/ }, (args) => ({ path: wgslSource(join(args.resolveDir, args.path)) }));
      b.onLoad({ filter: /\.wgsl$/ }, (args) => ({ contents: readFileSync(args.path, 'utf8'), loader: 'text' }));
    },
  };
}
