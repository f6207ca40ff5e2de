/**
 * Starts the reference coordinator through the repository's launcher (scripts/coordinator.mjs) on a free
 * port, with SQLite and the initial adapter in a temp folder, for a browser test to join.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initialLoraAdapter } from '../scripts/initial-adapter.mjs';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface TestCoordinator {
  url: string;
  /** Registers a fresh client and GETs `path` (e.g. /v1/rounds/1) with its token. */
  get(path: string): Promise<Response>;
  stop(): void;
}

export async function startCoordinator(options: {
  /** The model's config.json, relative to the repo root (the global adapter is made for it). */
  modelConfig: string;
  rank: number;
  alpha: number;
  /** The coordinator's --config JSON (round settings). */
  config: object;
  secret: string;
  allowOrigin: string;
}): Promise<TestCoordinator> {
  const dir = mkdtempSync(join(tmpdir(), 'webtune-e2e-coordinator-'));
  let seed = 5;
  const uniform = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const model = JSON.parse(readFileSync(join(ROOT, options.modelConfig), 'utf8'));
  const { weights, adapterConfig } = initialLoraAdapter(model, { rank: options.rank, alpha: options.alpha, uniform });
  writeFileSync(join(dir, 'adapter_model.safetensors'), weights);
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(adapterConfig));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(options.config));
  const child: ChildProcess = spawn(process.execPath, [
    'scripts/coordinator.mjs', '--db', join(dir, 'state.sqlite'), '--port', '0',
    '--initial-adapter', join(dir, 'adapter_model.safetensors'),
    '--config', join(dir, 'config.json'), '--allow-origin', options.allowOrigin,
  ], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, WEBTUNE_ENROLMENT_SECRET: options.secret } });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`coordinator exited with ${code}: ${out}`)));
  });
  return {
    url,
    async get(path) {
      const register = await fetch(`${url}/v1/register`, { method: 'POST', body: JSON.stringify({ enrolmentSecret: options.secret }) });
      const { token } = (await register.json()) as { token: string };
      return fetch(`${url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
    },
    stop() {
      child.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
