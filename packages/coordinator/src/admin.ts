/**
 * The operator's commands on a coordinator's database (`webtune-coordinator invite`, `clients list`,
 * `clients revoke`). They work on the SQLite file directly, also while the server runs (WAL).
 */
import { createHash, randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';

/** A new invitation code that registers at most `uses` clients, until `expires` (ms since the epoch). Only its SHA-256 is stored. */
export function createInvite(db: Database.Database, uses: number, expires: number | null, now = Date.now()): string {
  if (!(Number.isInteger(uses) && uses >= 1)) throw new Error(`an invitation needs --uses >= 1, got ${uses}`);
  const code = `inv_${randomBytes(18).toString('base64url')}`;
  db.prepare('INSERT INTO invites (code_hash, max_uses, created, expires) VALUES (?, ?, ?, ?)').run(createHash('sha256').update(code).digest('hex'), uses, now, expires);
  return code;
}

/** Revokes a client: its token stops working at once (401 revoked). Returns false for an unknown id. */
export function revokeClient(db: Database.Database, clientId: string, now = Date.now()): boolean {
  return db.prepare('UPDATE clients SET revoked = ? WHERE id = ? AND revoked IS NULL').run(now, clientId).changes === 1;
}

/** Every client: id, name, when it registered and with what, whether it was revoked, and its updates. */
export function listClients(db: Database.Database): Array<{ id: string; name: string | null; created: number; credential: string | null; revoked: number | null; updates: number }> {
  return db
    .prepare('SELECT c.id, c.name, c.created, c.credential, c.revoked, (SELECT COUNT(*) FROM updates u WHERE u.client_id = c.id) AS updates FROM clients c ORDER BY c.created')
    .all() as Array<{ id: string; name: string | null; created: number; credential: string | null; revoked: number | null; updates: number }>;
}
