/**
 * One Vite config for the demo app (dev server, build, preview) and the Vitest projects:
 *   demo: index.html + demo-app/src, static files (the bundled model, icons, the web app manifest)
 *         from demo-app/public; the build adds a Workbox service worker (demo-app/src/sw.ts, its
 *         precache list written by demo-app/precache-plugin.ts) so that after one visit the demo
 *         opens and loads its model offline
 *   unit: Node, no GPU (formats, CPU references, errors)
 *   gpu:  Node + Dawn (the `webgpu` package) on whatever Vulkan adapter is present; lavapipe in CI
 * The browser lane is Playwright (e2e/playwright.config.ts), which serves e2e/pages through this config.
 */
import { defineConfig } from 'vitest/config';
import { precacheManifest } from './demo-app/precache-plugin.js';
import { workspaceVitePlugin } from './scripts/workspace.mjs';

export default defineConfig({
  root: '.',
  publicDir: 'demo-app/public',
  server: { port: 5173, strictPort: false, fs: { allow: ['.'] } },
  preview: { port: 4173 },
  build: {
    outDir: 'dist/demo-app',
    rollupOptions: {
      input: { main: 'index.html', sw: 'demo-app/src/sw.ts' },
      // The service worker keeps a fixed name at the root: its URL is its identity.
      output: { entryFileNames: (chunk) => (chunk.name === 'sw' ? 'sw.js' : 'assets/[name]-[hash].js') },
    },
  },
  worker: { format: 'es', plugins: () => [workspaceVitePlugin()] },
  // The packages from their sources, by their public names (scripts/workspace.mjs).
  plugins: [workspaceVitePlugin(), precacheManifest({ serviceWorker: 'sw.js', publicDir: 'demo-app/public', exclude: /README-model\.json$/ })],
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/test/**/*.unit.test.ts'],
          environment: 'node',
        },
      },
      {
        extends: true,
        test: {
          name: 'gpu',
          include: ['packages/*/test/**/*.gpu.test.ts'],
          environment: 'node',
          // One Dawn device per worker file; lavapipe already uses every core.
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
