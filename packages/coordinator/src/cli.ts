/**
 * webtune-coordinator (in this repository: node scripts/coordinator.mjs) --db ./coordinator.sqlite --port 8787 \
 *   --initial-adapter adapter.safetensors --enrolment-secret-file secret.txt [--config round-config.json] [--host 0.0.0.0]
 *   [--adapter-config adapter_config.json | adapter-spec.json] [--architecture llama|gpt2]
 * Prompt tuning, P-tuning and prefix tuning adapters need --adapter-config (adapter_config.json as
 * exportAdapter() writes it, or a webtune spec JSON { "method", "config", "architecture" }) and the
 * architecture (--architecture, or in the spec JSON): their tensors name neither. UniPELT's keys say
 * all but alpha and the non-linearity (its adapter_config.json, else 2 x rank and relu).
 * The enrolment secret comes from a file (--enrolment-secret-file), the WEBTUNE_ENROLMENT_SECRET
 * environment variable, or --enrolment-secret (accepted with a warning: other users see it in `ps`).
 *
 * Operator commands on the same database (also while the server runs):
 *   webtune-coordinator invite --db FILE --uses N [--days D]   prints a new invitation code
 *   webtune-coordinator clients list --db FILE                  one JSON line per client
 *   webtune-coordinator clients revoke --db FILE CLIENT_ID      the client's token stops working
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Architecture } from '@webtune/model';
import { createInvite, listClients, revokeClient } from './admin.js';
import { startCoordinator } from './server.js';
import { openDatabase } from './store.js';

const USAGE =
  'usage: coordinator --db FILE.sqlite [--port 8787] [--host 127.0.0.1] [--initial-adapter adapter.safetensors] ' +
  '[--adapter-config adapter_config.json|spec.json] [--architecture llama|gpt2] (--enrolment-secret-file FILE | WEBTUNE_ENROLMENT_SECRET=S) [--config round-config.json] [--tick-ms 1000] ' +
  '[--allow-origin https://app.example (repeatable; * for any)]';

/** `invite` and `clients list|revoke`: true when argv was one of them (and it ran). */
function operatorCommand(argv: string[]): boolean {
  const [command, sub] = argv;
  if (command !== 'invite' && command !== 'clients') return false;
  const rest = argv.slice(command === 'clients' ? 2 : 1);
  const { values, positionals } = parseArgs({
    args: rest, allowPositionals: true,
    options: { db: { type: 'string' }, uses: { type: 'string' }, days: { type: 'string' } },
  });
  if (!values.db) throw new Error(`${command}: --db FILE.sqlite is required`);
  const db = openDatabase(values.db);
  try {
    if (command === 'invite') {
      const days = values.days === undefined ? null : Number(values.days);
      if (days !== null && !(days > 0)) throw new Error(`invite: --days must be a positive number, got ${values.days}`);
      console.log(createInvite(db, Number(values.uses ?? '1'), days === null ? null : Date.now() + days * 86_400_000));
    } else if (sub === 'list') {
      for (const c of listClients(db)) console.log(JSON.stringify(c));
    } else if (sub === 'revoke') {
      const id = positionals[0];
      if (!id) throw new Error('clients revoke: give the client id (clients list shows them)');
      if (!revokeClient(db, id)) throw new Error(`clients revoke: no client ${id} that is not already revoked`);
      console.log(`revoked ${id}`);
    } else {
      throw new Error(`clients: unknown command ${JSON.stringify(sub)}; use "clients list" or "clients revoke CLIENT_ID"`);
    }
  } finally {
    db.close();
  }
  return true;
}

async function main(): Promise<void> {
  if (operatorCommand(process.argv.slice(2))) return;
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        db: { type: 'string' },
        port: { type: 'string', default: '8787' },
        host: { type: 'string', default: '127.0.0.1' },
        'initial-adapter': { type: 'string' },
        'adapter-config': { type: 'string' },
        architecture: { type: 'string' },
        'enrolment-secret': { type: 'string' },
        'enrolment-secret-file': { type: 'string' },
        config: { type: 'string' },
        'tick-ms': { type: 'string', default: '1000' },
        'allow-origin': { type: 'string', multiple: true },
        help: { type: 'boolean' },
      },
    }));
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  let secret: string | undefined;
  if (values['enrolment-secret-file']) secret = readFileSync(values['enrolment-secret-file'], 'utf8').trim();
  else if (process.env['WEBTUNE_ENROLMENT_SECRET']) secret = process.env['WEBTUNE_ENROLMENT_SECRET'];
  else if (values['enrolment-secret']) {
    secret = values['enrolment-secret'];
    console.error('coordinator: warning: --enrolment-secret is visible to other users of this machine (ps); use --enrolment-secret-file or WEBTUNE_ENROLMENT_SECRET');
  }
  if (!values.db || !secret) {
    console.error(`--db and an enrolment secret are required\n${USAGE}`);
    process.exit(2);
  }
  const handle = await startCoordinator({
    db: values.db,
    port: Number(values.port),
    host: values.host,
    initialAdapter: values['initial-adapter'],
    adapterConfig: values['adapter-config'] ? readFileSync(values['adapter-config'], 'utf8') : undefined,
    architecture: values.architecture as Architecture | undefined,
    enrolmentSecret: secret,
    config: values.config ? JSON.parse(readFileSync(values.config, 'utf8')) : {},
    tickMs: Number(values['tick-ms']),
    allowOrigins: values['allow-origin']?.includes('*') ? '*' : values['allow-origin'],
  });
  // One line a launcher (or a test) can wait for.
  console.log(`webtune coordinator listening on ${handle.url}`);
  const stop = () => {
    handle.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((e: unknown) => {
  console.error(`coordinator: ${(e as Error).message}`);
  process.exit(1);
});
