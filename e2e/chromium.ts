/**
 * How the browser lane launches Chromium: Debian's /usr/bin/chromium (Playwright's own browser
 * download does not work offline), SwiftShader WebGPU, and no background networking.
 */
import { existsSync } from 'node:fs';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function chromiumLaunchOptions() {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}. On Debian: sudo scripts/install-system-deps.sh (apt-get install chromium), ` +
        'or set CHROMIUM_PATH to a Chromium/Chrome binary with WebGPU.',
    );
  }
  return {
    executablePath: CHROMIUM_PATH,
    args: [
      '--enable-unsafe-webgpu',
      '--use-webgpu-adapter=swiftshader',
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      '--no-first-run',
    ],
  };
}
