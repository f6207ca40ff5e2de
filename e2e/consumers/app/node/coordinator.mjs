// The coordinator from its tarball (`webtune-coordinator`, the package's bin) and the federated
// client from `webtune/federated`, in plain Node: a wrong enrolment secret is a FederatedError,
// the right one registers. Usage: node node/coordinator.mjs INITIAL_ADAPTER_DIR STATE_DIR
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { FederatedError } from 'webtune';
import { FederatedClient, MemoryRoundStore } from 'webtune/federated';

const [adapterDir, stateDir] = process.argv.slice(2);
const server = spawn(process.execPath, [
  join('node_modules', '.bin', 'webtune-coordinator'), '--db', join(stateDir, 'coordinator.sqlite'), '--port', '0',
  '--initial-adapter', join(adapterDir, 'adapter_model.safetensors'),
], { env: { ...process.env, WEBTUNE_ENROLMENT_SECRET: 'consumer-secret' }, stdio: ['ignore', 'pipe', 'inherit'] });
try {
  const url = await new Promise((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    server.once('exit', (code) => reject(new Error(`the coordinator exited (${code}) before listening: ${out}`)));
  });
  // The client needs a trainer for rounds, not to register.
  const trainer = { placeholder: true };
  const wrong = new FederatedClient({ url, enrolmentSecret: 'not-the-secret', trainer, store: new MemoryRoundStore() });
  const rejected = await wrong.register().then(() => undefined, (e) => ({ isFederatedError: e instanceof FederatedError, reason: e.reason, status: e.status }));
  const right = new FederatedClient({ url, enrolmentSecret: 'consumer-secret', trainer, store: new MemoryRoundStore() });
  await right.register();
  console.log(JSON.stringify({ url, rejected, clientId: right.clientId }));
} finally {
  server.kill('SIGTERM');
}
