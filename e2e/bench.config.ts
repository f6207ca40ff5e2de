/** Playwright config for the browser benchmark (npm run bench), not part of npm test. */
import { defineConfig } from '@playwright/test';
import base from './playwright.config.js';

export default defineConfig({ ...base, testMatch: '*.bench.ts', timeout: 1_800_000, reporter: 'list' });
