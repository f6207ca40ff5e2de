/**
 * Build-time half of the demo's offline support: lists every file the build emits and every file
 * of the public folder (the bundled model, icons, the manifest) with a content hash, and writes
 * that list into the service worker in place of `self.__WB_MANIFEST` (Workbox's convention; the
 * precaching itself is Workbox's runtime, demo-app/src/sw.ts). Workbox's own build tools would do
 * this too, but they pull in rollup, whose platform packages the registry here does not all have.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Plugin } from 'vite';

const PLACEHOLDER = 'self.__WB_MANIFEST';

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

const revision = (bytes: string | Uint8Array) => createHash('sha256').update(bytes).digest('hex').slice(0, 16);

export function precacheManifest(options: { serviceWorker: string; publicDir: string; exclude?: RegExp }): Plugin {
  return {
    name: 'webtune-precache-manifest',
    apply: 'build',
    enforce: 'post',
    generateBundle(_options, bundle) {
      const sw = bundle[options.serviceWorker];
      if (!sw || sw.type !== 'chunk' || !sw.code.includes(PLACEHOLDER)) {
        this.error(`${options.serviceWorker} is not in the bundle or has no ${PLACEHOLDER} to replace`);
      }
      const entries: Array<{ url: string; revision: string }> = [];
      for (const [file, output] of Object.entries(bundle)) {
        if (file === options.serviceWorker || file.endsWith('.map') || options.exclude?.test(file)) continue;
        entries.push({ url: file, revision: revision(output.type === 'chunk' ? output.code : output.source) });
      }
      for (const path of walk(options.publicDir)) {
        const url = relative(options.publicDir, path).split('\\').join('/');
        if (!options.exclude?.test(url)) entries.push({ url, revision: revision(readFileSync(path)) });
      }
      entries.sort((a, b) => a.url.localeCompare(b.url));
      sw.code = sw.code.replace(PLACEHOLDER, JSON.stringify(entries));
    },
  };
}
