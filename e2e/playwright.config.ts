import { defineConfig } from '@playwright/test';
import { chromiumLaunchOptions } from './chromium.js';
import { DEMO_PORT, DEMO_URL, DEV_PORT, DEV_URL } from './servers.js';

export default defineConfig({
  testDir: '.',
  testMatch: '*.spec.ts',
  testIgnore: 'consumers/**',  // the consumer lane has its own config (e2e/consumers)
  timeout: 300_000,
  workers: 1,
  reporter: process.env.CI ? [['list'], ['html', { open: 'never', outputFolder: '../playwright-report' }]] : 'list',
  outputDir: '../test-results',
  use: {
    baseURL: DEV_URL,
    launchOptions: chromiumLaunchOptions(),
    screenshot: 'only-on-failure',
  },
  webServer: [
    {
      command: `npx vite --config vite.config.ts --port ${DEV_PORT} --strictPort`,
      cwd: '..',
      url: `${DEV_URL}/`,
      reuseExistingServer: !process.env.CI,
      timeout: 60_000,
    },
    {
      command: `npx vite build --config vite.config.ts --logLevel warn && npx vite preview --config vite.config.ts --port ${DEMO_PORT} --strictPort`,
      cwd: '..',
      url: `${DEMO_URL}/`,
      reuseExistingServer: !process.env.CI,
      timeout: 120_000,
    },
  ],
});
