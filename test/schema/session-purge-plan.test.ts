import { SessionPurgeIndexes1763800068000 } from '../../migrations/1763800068000-SessionPurgeIndexes';
import { RefreshTokenRepository } from '../../src/auth/refresh-token.repository';
import { migrate } from '../support/databases';
import { migrateUpTo } from '../support/partial-migrations';
import { queryPlan } from '../support/query-plan';
import { TestDatabase, createEmptyDatabase, createTestDatabase } from '../support/test-database';

/** The statement the purge chose its families by before migration 1763800068000: one condition. */
const ENDED_ONE_CONDITION = `
  SELECT f.id FROM refresh_token_families f
   WHERE f.expires_at < $1 OR f.revoked_at < $1
      OR (f.created_at < $1
          AND NOT EXISTS (SELECT 1 FROM refresh_tokens t
                           WHERE t.family_id = f.id AND t.idle_expires_at >= $1))
   LIMIT $2`;

/**
 * The hourly purge of ended sessions reaches what it deletes by index, each way a session ends
 * (lifetime, revocation, idle) by its own, and asks a candidate's tokens in one probe: it read
 * every family each batch before, and walked the tokens of each one opened before the cut-off
 * (measured on 1.0 M sessions: 1.8-2.0 s and ~348k buffers a batch, finding 234).
 */
describe('the purge of ended sessions', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    await db.pool.query(
      `INSERT INTO users (email, name, password_hash)
       SELECT 'purge-' || g || '@example.test', 'p', 'h' FROM generate_series(1, 100) g`,
    );
    // (kind, created days ago, lifetime days, revoked days ago, tokens, their first's idle
    // expiry days ago — the next ones an hour later each). Inserted with the family trigger off,
    // then given their idle expiry by the migration's own backfill: the trigger, fired for each of
    // the 120,000 tokens, wrote a family row version at each (each token a new hour) — over 60 s
    // of the suite's hook on a loaded machine (CI, 2026-12-06); what it keeps is tested below
    const seed = await db.pool.connect();
    try {
      await seed.query('BEGIN');
      await seed.query('ALTER TABLE refresh_tokens DISABLE TRIGGER refresh_family_idle_expiry');
      await seed.query(
        `WITH kinds (kind, n, created, lifetime, revoked, tokens, idle) AS (VALUES
         -- opened in the last 30 days, live or ended: not yet the purge's
         ('recent', 20000, 15, 30, NULL, 2, -7),
         -- ended in the last 30 days (lifetime, logout, idle), kept for investigations
         ('kept', 20000, 45, 30, NULL, 2, -1),
         -- app sessions refreshed for 45 days (a 90-day lifetime), still in use
         ('app', 20, 45, 90, NULL, 2000, 38),
         -- ended before the cut-off: past their lifetime, logged out, left idle
         ('expired', 40, 70, 30, NULL, 2, 55),
         ('revoked', 30, 40, 90, 35, 2, 30),
         ('idle', 30, 50, 90, NULL, 3, 40)),
       owners AS (SELECT id, row_number() OVER (ORDER BY id) % 100 AS n FROM users),
       made AS (
         INSERT INTO refresh_token_families (user_id, created_at, expires_at, revoked_at, revoked_reason, client_key)
         SELECT o.id,
                now() - k.created * interval '1 day',
                now() - (k.created - k.lifetime) * interval '1 day',
                now() - k.revoked * interval '1 day',
                CASE WHEN k.revoked IS NOT NULL THEN 'logout' END,
                k.kind || ':' || k.tokens || ':' || k.idle
           FROM kinds k CROSS JOIN LATERAL generate_series(1, k.n) g JOIN owners o ON o.n = g % 100
         RETURNING id, client_key)
       INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at)
       SELECT md5(m.id::text || i), m.id,
              now() - (split_part(m.client_key, ':', 3)::int + 7) * interval '1 day' + i * interval '1 hour',
              now() - split_part(m.client_key, ':', 3)::int * interval '1 day' + i * interval '1 hour'
         FROM made m CROSS JOIN LATERAL generate_series(0, split_part(m.client_key, ':', 2)::int - 1) i`,
      );
      await seed.query('ALTER TABLE refresh_tokens ENABLE TRIGGER refresh_family_idle_expiry');
      await seed.query('COMMIT');
    } finally {
      seed.release();
    }
    await db.pool.query(SessionPurgeIndexes1763800068000.BACKFILL_SQL, [
      '00000000-0000-0000-0000-000000000000',
      'ffffffff-ffff-ffff-ffff-ffffffffffff',
    ]);
    await db.pool.query(
      `UPDATE refresh_token_families SET client_key = split_part(client_key, ':', 1)`,
    );
    // as the tables are between purges: the rows' earlier versions (each rotation writes its
    // family's) vacuumed away
    await db.pool.query('VACUUM ANALYZE refresh_token_families, refresh_tokens');
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('reads about what it finds (100 ended among 40,000 sessions and 20 app sessions of 2,000 tokens), the same families as before', async () => {
    const before = new Date(Date.now() - 30 * 86_400_000);
    let found: string[] = [];
    let foundBefore: string[] = [];
    let ended: string[] = [];
    const plan = await queryPlan(
      db,
      RefreshTokenRepository.ENDED_SQL,
      [before, 500],
      async (client) => {
        ended = (
          await client.query<{ id: string }>(
            `SELECT id FROM refresh_token_families WHERE client_key IN ('expired', 'revoked', 'idle')`,
          )
        ).rows.map((r) => r.id);
        const ids = async (sql: string) =>
          (await client.query<{ id: string }>(sql, [before, 500])).rows.map((r) => r.id).sort();
        found = await ids(RefreshTokenRepository.ENDED_SQL);
        foundBefore = await ids(ENDED_ONE_CONDITION);
      },
      'ANALYZE, BUFFERS, COSTS OFF, TIMING OFF',
    );
    expect(ended).toHaveLength(100);
    expect(found).toEqual([...ended].sort());
    expect(found).toEqual(foundBefore);
    expect(plan).not.toMatch(/Seq Scan on refresh_token/);
    for (const index of [
      'refresh_token_families_expires_idx',
      'refresh_token_families_revoked_idx',
      'refresh_token_families_idle_idx',
      'refresh_tokens_family_idle_idx',
    ])
      expect(plan).toContain(index);
    // the whole statement's buffers (its top node's): a few a family found, whatever the 40,000
    // others and their 80,000 tokens (the one condition, a sequential scan of both, ~3,700 here)
    const buffers = /Buffers: shared hit=(\d+)(?: read=(\d+))?/.exec(plan);
    expect(buffers).not.toBeNull();
    expect(Number(buffers?.[1]) + Number(buffers?.[2] ?? 0)).toBeLessThan(2000);
  });

  const idleOf = async (family: string) =>
    (
      await db.pool.query<{ at: Date | null }>(
        `SELECT idle_expires_at AS at FROM refresh_token_families WHERE id = $1`,
        [family],
      )
    ).rows[0].at?.toISOString() ?? null;
  const newFamily = async () =>
    (
      await db.pool.query<{ id: string }>(
        `INSERT INTO refresh_token_families (user_id, created_at, expires_at)
         SELECT id, now(), now() + interval '30 days' FROM users LIMIT 1 RETURNING id`,
      )
    ).rows[0].id;

  it("keeps the whole hour after each family's latest token idle expiry: raised by a token added, never lowered by an older one, recomputed when one is changed in place", async () => {
    const addToken = (family: string, hash: string, idle: string) =>
      db.pool.query(
        `INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at)
         VALUES ($1, $2, now(), $3)`,
        [hash, family, idle],
      );
    const family = await newFamily();
    expect(await idleOf(family)).toBeNull();
    await addToken(family, 'idle-a', '2030-01-08T00:00:00Z');
    expect(await idleOf(family)).toBe('2030-01-08T01:00:00.000Z');
    await addToken(family, 'idle-b', '2030-01-15T00:20:00Z');
    expect(await idleOf(family)).toBe('2030-01-15T01:00:00.000Z');
    // one issued on a host whose clock runs behind
    await addToken(family, 'idle-c', '2030-01-14T23:59:59Z');
    expect(await idleOf(family)).toBe('2030-01-15T01:00:00.000Z');
    await db.pool.query(
      `UPDATE refresh_tokens SET idle_expires_at = '2029-12-01T00:00:00Z' WHERE token_hash = 'idle-b'`,
    );
    expect(await idleOf(family)).toBe('2030-01-15T00:00:00.000Z');
    // a rotation (the spend) changes nothing of it
    await db.pool.query(`UPDATE refresh_tokens SET spent_at = now() WHERE token_hash = 'idle-c'`);
    expect(await idleOf(family)).toBe('2030-01-15T00:00:00.000Z');
  });

  it("writes a family's row about once an hour of refreshes, not at each (a day refreshed every 15 min: 24 writes, not 96; a burst of 20: 1)", async () => {
    const family = await newFamily();
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      // this transaction's updates of the table's rows so far (the trigger's among them)
      const updates = async () =>
        Number(
          (
            await client.query<{ n: string }>(
              `SELECT pg_stat_get_xact_tuples_updated('refresh_token_families'::regclass) AS n`,
            )
          ).rows[0].n,
        );
      const refreshes = async (times: number, from: string, every: string) => {
        const before = await updates();
        await client.query(
          `INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at)
           SELECT md5($1 || $2 || i), $1::uuid, now(), $2::timestamptz + i * $4::interval
             FROM generate_series(0, $3::int - 1) i`,
          [family, from, times, every],
        );
        return (await updates()) - before;
      };
      expect(await refreshes(96, '2030-02-01T00:00:00Z', '15 minutes')).toBe(24);
      expect(await refreshes(20, '2030-02-02T00:00:00Z', '10 seconds')).toBe(1);
      expect(await idleOf(family)).toBeNull(); // (not yet committed, seen from another session)
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  it("backfills a batch of 5,000 families through the primary key's range, not by reading all 40,000", async () => {
    // the bounds of the backfill's first batch
    const { rows } = await db.pool.query<{ last: string }>(
      `SELECT id::text AS last FROM refresh_token_families ORDER BY id OFFSET 4999 LIMIT 1`,
    );
    const plan = await queryPlan(db, SessionPurgeIndexes1763800068000.BACKFILL_SQL, [
      '00000000-0000-0000-0000-000000000000',
      rows[0].last,
    ]);
    expect(plan).not.toMatch(/Seq Scan on refresh_token_families/);
    expect(plan).toContain('refresh_token_families_pkey');
  });

  it('gives the sessions on record before the migration the whole hour after their latest token idle expiry (in batches: 12,001 families)', async () => {
    const fresh = await createEmptyDatabase();
    try {
      await migrateUpTo(fresh.url, 1763800067000);
      await fresh.pool.query(
        `INSERT INTO users (email, name, password_hash) VALUES ('old@example.test', 'o', 'h')`,
      );
      // 12,001 families of none to three tokens
      await fresh.pool.query(
        `WITH made AS (
           INSERT INTO refresh_token_families (user_id, created_at, expires_at)
           SELECT u.id, now(), now() + interval '30 days'
             FROM users u CROSS JOIN generate_series(1, 12001)
           RETURNING id)
         INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at)
         SELECT md5(m.id::text || i), m.id, now(), now() + (i + ascii(m.id::text)) * interval '1 hour'
           FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM made) m
          CROSS JOIN LATERAL generate_series(1, (m.n % 4)::int) i`,
      );
      migrate(fresh.url); // this migration, through the real CLI
      const wrong = await fresh.pool.query<{ n: number; none: number }>(
        `SELECT count(*) FILTER (WHERE f.idle_expires_at IS DISTINCT FROM
                                 (SELECT date_trunc('hour', max(t.idle_expires_at), 'UTC') + interval '1 hour'
                                    FROM refresh_tokens t WHERE t.family_id = f.id))::int AS n,
                count(*) FILTER (WHERE f.idle_expires_at IS NULL)::int AS none
           FROM refresh_token_families f`,
      );
      expect(wrong.rows[0]).toEqual({ n: 0, none: 3000 });
    } finally {
      await fresh.drop();
    }
  });
});
