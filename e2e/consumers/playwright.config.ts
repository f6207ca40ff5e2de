/**
 * The consumer lane's browser half: the Vite, webpack and esbuild apps that e2e/consumers/setup.mjs built from
 * the packed tarballs, each served by the consumer project's own Vite (`vite preview` of the built
 * folder, so no bundler runs at serve time, with the README's Content-Security-Policy), driven in Debian's Chromium with SwiftShader WebGPU.
 */
import { defineConfig } from '@playwright/test';
import { chromiumLaunchOptions } from '../chromium.js';
import { APP_DIR, ESBUILD_APP_PORT, VITE_APP_PORT, WEBPACK_APP_PORT } from './paths.mjs';

const preview = (outDir: string, port: number) => ({
  command: `node node_modules/vite/bin/vite.js preview --outDir ${outDir} --port ${port} --strictPort`,
  cwd: APP_DIR,
  url: `http://localhost:${port}/`,
  reuseExistingServer: !process.env.CI,
  timeout: 60_000,
});

export default defineConfig({
  testDir: '.',
  testMatch: 'consumers.spec.ts',
  timeout: 300_000,
  workers: 1,
  reporter: 'list',
  outputDir: '../../test-results/consumers',
  use: { launchOptions: chromiumLaunchOptions(), screenshot: 'only-on-failure' },
  webServer: [preview('dist-vite', VITE_APP_PORT), preview('dist-webpack', WEBPACK_APP_PORT), preview('dist-esbuild', ESBUILD_APP_PORT)],
});
