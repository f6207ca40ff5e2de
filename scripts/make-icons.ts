#!/usr/bin/env node
// Renders the demo's icon (demo-app/public/icons/icon.svg) to the PNG sizes a web app manifest
// needs (192 and 512, plus 180 for iOS' apple-touch-icon) with Debian's Chromium through
// Playwright, so the PNGs always match the SVG. Run: node scripts/run-ts.mjs scripts/make-icons.ts
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from '@playwright/test';
import { chromiumLaunchOptions } from '../e2e/chromium.js';

const dir = join(process.cwd(), 'demo-app/public/icons'); // run-ts runs from the repo root
const svg = readFileSync(join(dir, 'icon.svg'), 'utf8');
const browser = await chromium.launch(chromiumLaunchOptions());
for (const size of [180, 192, 512]) {
  const page = await browser.newPage({ viewport: { width: size, height: size } });
  await page.setContent(`<body style="margin:0">${svg.replace('<svg ', `<svg width="${size}" height="${size}" `)}</body>`);
  await page.screenshot({ path: join(dir, `icon-${size}.png`), omitBackground: true });
  await page.close();
}
await browser.close();
