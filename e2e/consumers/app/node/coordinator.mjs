// The coordinator from its tarball (`webtune-coordinator`, the package's bin) and the federated
// client from `webtune/federated`, in plain Node: a wrong enrolment secret is a FederatedError,
// the right one registers; then a secure-aggregation round (README "Secure aggregation") of three
// clients, each with its own trainer on Dawn, against a coordinator whose rounds are secure.
// Usage: node node/coordinator.mjs INITIAL_ADAPTER_DIR STATE_DIR MODEL_DIR TEXT_FILE
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTrainer, FederatedError } from 'webtune';
import { FederatedClient, MemoryRoundStore } from 'webtune/federated';
import { createNodeGpu, nodeDirectorySource } from 'webtune/node';

const [adapterDir, stateDir, modelDir, textFile] = process.argv.slice(2);

/** Starts the coordinator's bin; resolves with the process and its URL. */
async function coordinator(db, extra = []) {
  const server = spawn(process.execPath, [
    join('node_modules', '.bin', 'webtune-coordinator'), '--db', join(stateDir, db), '--port', '0',
    '--initial-adapter', join(adapterDir, 'adapter_model.safetensors'), ...extra,
  ], { env: { ...process.env, WEBTUNE_ENROLMENT_SECRET: 'consumer-secret' }, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    server.once('exit', (code) => reject(new Error(`the coordinator exited (${code}) before listening: ${out}`)));
  });
  return { server, url };
}

const servers = [];
try {
  const { server, url } = await coordinator('coordinator.sqlite');
  servers.push(server);
  // The client needs a trainer for rounds, not to register.
  const trainer = { placeholder: true };
  const wrong = new FederatedClient({ url, enrolmentSecret: 'not-the-secret', trainer, store: new MemoryRoundStore() });
  const rejected = await wrong.register().then(() => undefined, (e) => ({ isFederatedError: e instanceof FederatedError, reason: e.reason, status: e.status }));
  const right = new FederatedClient({ url, enrolmentSecret: 'consumer-secret', trainer, store: new MemoryRoundStore() });
  await right.register();

  const config = join(stateDir, 'secure-round.json');
  writeFileSync(config, JSON.stringify({ minClients: 3, maxClients: 3, maxRounds: 1, round: { steps: 1, batchSize: 1, seqLen: 32, secureAggregation: {} } }));
  const secure = await coordinator('secure.sqlite', ['--config', config]);
  servers.push(secure.server);
  const gpu = await createNodeGpu();
  const text = readFileSync(textFile, 'utf8');
  const trainers = [];
  for (let i = 0; i < 3; i++) {
    const t = await createTrainer({ inline: true, gpu });
    await t.loadModel(nodeDirectorySource(modelDir));
    await t.prepareData({ text: text.slice(i * 2000, (i + 1) * 2000) }, { seqLen: 32, heldOut: 0 });
    trainers.push(t);
  }
  const results = await Promise.all(trainers.map((t, i) => new FederatedClient({
    url: secure.url, enrolmentSecret: 'consumer-secret', trainer: t, store: new MemoryRoundStore(), name: `secure-${i}`, secureAggregation: { pollIntervalMs: 100 },
  }).runRound()));
  for (const t of trainers) await t.dispose();
  const round = await (await fetch(`${secure.url}/v1/rounds/1`, { headers: { Authorization: `Bearer ${(await (async () => {
    const r = await fetch(`${secure.url}/v1/register`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ enrolmentSecret: 'consumer-secret' }) });
    return (await r.json()).token;
  })())}` } })).json();
  const secureRound = { results: results.map((r) => ({ status: r.status, survivors: r.secureAggregation?.survivors, resultVersion: r.secureAggregation?.resultVersion })), outcome: round.outcome, resultVersion: round.resultVersion };
  console.log(JSON.stringify({ url, rejected, clientId: right.clientId, secureRound }));
} finally {
  for (const s of servers) s.kill('SIGTERM');
}
process.exit(0); // Dawn keeps its device thread alive
