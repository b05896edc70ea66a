import { IdempotencyService } from '../../src/idempotency/idempotency.service';
import { TestApp, bootTestApp } from '../support/test-app';
import { holdIdempotencyKey } from '../support/idempotency-keys';

/**
 * In-progress records left behind by requests that are gone (their clean-up failed with the
 * database, or their process died) block nobody — a retry takes them over — and the maintenance
 * purge drops them, so the table never shows a key "in progress" that nothing runs. A record
 * whose key is still held belongs to a running request and stays.
 */
describe('the idempotency purge and in-progress records', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  const record = (key: string, age: string) =>
    t.db.pool.query(
      `INSERT INTO idempotency_keys (principal, key, method, route, fingerprint, state, created_at, expires_at)
       VALUES ('user:orphans', $1, 'POST', '/v1/x', 'f', 'in_progress', now() - $2::interval, now() + interval '1 day')`,
      [key, age],
    );

  it('drops old in-progress records nobody holds; keeps held and recent ones', async () => {
    await record('orphan', '1 hour');
    await record('running', '1 hour');
    await record('recent', '5 seconds');
    // the key's lock, as the running request's process holds it
    const holder = await holdIdempotencyKey(t.db.pool, 'user:orphans', 'running');
    try {
      await t.app.get(IdempotencyService).purgeExpired();
      const left = await t.db.pool.query(
        `SELECT key FROM idempotency_keys WHERE principal = 'user:orphans' ORDER BY key`,
      );
      expect(left.rows.map((r) => r.key)).toEqual(['recent', 'running']);
    } finally {
      await holder.release();
    }
  });
});
