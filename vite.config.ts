/**
 * One Vite config for the demo app (dev server and build) and the Vitest projects:
 *   unit: Node, no GPU (formats, CPU references, errors)
 *   gpu:  Node + Dawn (the `webgpu` package) on whatever Vulkan adapter is present; lavapipe in CI
 * The browser lane is Playwright (e2e/playwright.config.ts), which serves e2e/pages through this config.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: '.',
  server: { port: 5173, strictPort: false, fs: { allow: ['.'] } },
  preview: { port: 4173 },
  build: {
    outDir: 'dist/demo-app',
    rollupOptions: { input: { main: 'index.html' } },
  },
  worker: { format: 'es' },
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
