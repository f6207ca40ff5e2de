/**
 * One Vite config for the demo app (dev server, build, preview) and the Vitest projects:
 *   demo: index.html + demo-app/src, static files (the bundled model, icons) from demo-app/public;
 *         the build adds a Workbox service worker (vite-plugin-pwa) that precaches the app shell
 *         and the bundled model, so the demo opens and loads its model offline after one visit
 *   unit: Node, no GPU (formats, CPU references, errors)
 *   gpu:  Node + Dawn (the `webgpu` package) on whatever Vulkan adapter is present; lavapipe in CI
 * The browser lane is Playwright (e2e/playwright.config.ts), which serves e2e/pages through this config.
 */
import { defineConfig } from 'vitest/config';
import { VitePWA } from 'vite-plugin-pwa';

export default defineConfig({
  root: '.',
  publicDir: 'demo-app/public',
  server: { port: 5173, strictPort: false, fs: { allow: ['.'] } },
  preview: { port: 4173 },
  build: {
    outDir: 'dist/demo-app',
    rollupOptions: { input: { main: 'index.html' } },
  },
  worker: { format: 'es' },
  plugins: [
    VitePWA({
      // main.ts registers the worker itself (virtual:pwa-register) to say when the app works offline.
      injectRegister: false,
      registerType: 'autoUpdate',
      manifest: {
        name: 'webtune: fine-tune a language model in your browser',
        short_name: 'webtune',
        description: 'Fine-tune a small language model with LoRA on your own text, on WebGPU, without the text leaving the device.',
        start_url: '.',
        display: 'standalone',
        background_color: '#f8fafc',
        theme_color: '#1e3a8a',
        icons: [
          { src: 'icons/icon-192.png', sizes: '192x192', type: 'image/png' },
          { src: 'icons/icon-512.png', sizes: '512x512', type: 'image/png' },
          { src: 'icons/icon-512.png', sizes: '512x512', type: 'image/png', purpose: 'maskable' },
          { src: 'icons/icon.svg', sizes: 'any', type: 'image/svg+xml' },
        ],
      },
      workbox: {
        // The app shell (HTML, JS, CSS, the sample text) and the bundled model's files. The model
        // is what "works offline" is for, so it is precached on install rather than on first use.
        globPatterns: ['**/*.{html,js,css,txt,svg,png,json,safetensors,onnx}'],
        maximumFileSizeToCacheInBytes: 16 * 2 ** 20,
        navigateFallback: 'index.html',
        cleanupOutdatedCaches: true,
      },
    }),
  ],
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
