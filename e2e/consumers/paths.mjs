// Where the consumer projects live: outside the repository (the system's temp folder), so nothing
// in them can resolve a workspace link, a path alias or a file of this repo.
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CONSUMERS_DIR = process.env.WEBTUNE_CONSUMERS_DIR ?? join(tmpdir(), 'webtune-consumers');
export const APP_DIR = join(CONSUMERS_DIR, 'app');
export const REPORT = join(CONSUMERS_DIR, 'report.json');
export const VITE_APP_PORT = Number(process.env.WEBTUNE_CONSUMER_VITE_PORT ?? 5196);
export const WEBPACK_APP_PORT = Number(process.env.WEBTUNE_CONSUMER_WEBPACK_PORT ?? 5197);
export const ESBUILD_APP_PORT = Number(process.env.WEBTUNE_CONSUMER_ESBUILD_PORT ?? 5195);
