import { IdempotencyRepository } from '../../src/idempotency/idempotency.repository';
import { IdempotencyService } from '../../src/idempotency/idempotency.service';
import { TestApp, bootTestApp } from '../support/test-app';
import { holdIdempotencyKey } from '../support/idempotency-keys';
import { untilWaitingOnLocks } from '../support/lock-waiters';

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

  /**
   * A record past its expiry that a request takes over (begin(): the same row, a new version —
   * in progress, with a fresh expiry) while the purge's batch is deleting it: the purge judged the
   * old version, and its DELETE (by ctid, from a sub-select) followed the row to the new one and
   * deleted it too — the request's claim gone, its answer never stored, its retry run again.
   */
  it('leaves a record that a request took over while the purge was deleting it', async () => {
    // a table of a shop's size: the DELETE then finds its rows by ctid (a Tid Scan), whose recheck
    // on a row updated meanwhile looks at nothing (PostgreSQL's TidRecheck) — a small table's join
    // filter would have compared the new version's ctid and spared it
    await t.db.pool.query(
      `INSERT INTO idempotency_keys (principal, key, method, route, fingerprint, state, response_status, response_body, created_at, expires_at)
       SELECT 'user:busy', 'k' || g, 'POST', '/v1/x', 'f', 'completed', 201, '{}', now(), now() + interval '1 day'
         FROM generate_series(1, 20000) g`,
    );
    await t.db.pool.query('ANALYZE idempotency_keys');
    await t.db.pool.query(
      `INSERT INTO idempotency_keys (principal, key, method, route, fingerprint, state, response_status, response_body, created_at, expires_at)
       VALUES ('user:orphans', 'reused', 'POST', '/v1/x', 'f', 'completed', 201, '{}', now() - interval '2 days', now() - interval '1 day')`,
    );
    const taker = await t.db.pool.connect();
    try {
      // the takeover, committed only once the purge's DELETE waits on the row it locked
      await taker.query('BEGIN');
      await taker.query(
        `UPDATE idempotency_keys SET state = 'in_progress', response_status = NULL, response_body = NULL,
                created_at = now(), expires_at = now() + interval '1 day'
          WHERE principal = 'user:orphans' AND key = 'reused'`,
      );
      const purge = t.app.get(IdempotencyRepository).purgeExpired(new Date());
      await untilWaitingOnLocks(t.db.pool, 'the purge to wait on the taken-over row', {
        matching: 'DELETE FROM%',
      });
      await taker.query('COMMIT');
      await purge;
    } finally {
      taker.release();
    }
    const left = await t.db.pool.query(
      `SELECT state FROM idempotency_keys WHERE principal = 'user:orphans' AND key = 'reused'`,
    );
    expect(left.rows).toEqual([{ state: 'in_progress' }]);
  });
});
