import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { SessionPurgeIndexes1763800068000 } from '../../migrations/1763800068000-SessionPurgeIndexes';
import { dataSourceOptions } from '../../src/database/data-source-options';
import { migrateUpTo } from '../support/partial-migrations';
import { TestDatabase, createEmptyDatabase, createTestDatabase } from '../support/test-database';

/** A session of its own on `url` (the app's pools and an operator's psql alike). */
async function session(url: string): Promise<Client> {
  const client = new Client({ connectionString: url });
  await client.connect();
  return client;
}

/**
 * Migration 1763800068000 adds a column to `refresh_token_families` and a trigger to
 * `refresh_tokens`, both read and written by every sign-in and refresh. A table's lock that a
 * statement waits for queues every later statement on that table behind it: a migration waiting
 * its whole MIGRATION_LOCK_TIMEOUT_MS (5 s) for a long transaction to end held every refresh that
 * long (review). It waits 200 ms at a time instead, and asks again; run again, it takes no such
 * lock at all.
 */
describe('migration 1763800068000 and the tables every refresh uses', () => {
  it('run again, takes no lock a reader holds up (the column there: no ALTER TABLE)', async () => {
    const db = await createTestDatabase();
    const source = new DataSource({
      ...dataSourceOptions(db.url, { withMigrations: true }),
      logging: false,
    });
    const reader = await session(db.url);
    try {
      await source.initialize();
      // a long report, a pg_dump: its ACCESS SHARE lock held until it ends
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM refresh_token_families');
      const runner = source.createQueryRunner();
      try {
        const started = Date.now();
        await new SessionPurgeIndexes1763800068000().up(runner);
        // (before: ALTER TABLE … ADD COLUMN IF NOT EXISTS queued for ACCESS EXCLUSIVE, the
        // reader's to end, and gave up after 5 s: 55P03)
        expect(Date.now() - started).toBeLessThan(2000);
      } finally {
        await runner.release();
      }
    } finally {
      await reader.query('ROLLBACK').catch(() => undefined);
      await reader.end();
      if (source.isInitialized) await source.destroy();
      await db.drop();
    }
  });

  it('behind transactions open for 3 s (on both tables) and 6 s (on refresh_tokens), holds a refresh up 200 ms at a time at most, and asks again until it has its locks', async () => {
    const db: TestDatabase = await createEmptyDatabase();
    const holder = await session(db.url);
    const spender = await session(db.url);
    const app = await session(db.url);
    try {
      await migrateUpTo(db.url, 1763800067000);
      const [a, b] = (
        await db.pool.query<{ id: string }>(
          `WITH u AS (INSERT INTO users (email, name, password_hash)
                      VALUES ('locks@example.test', 'l', 'h') RETURNING id)
           INSERT INTO refresh_token_families (user_id, created_at, expires_at)
           SELECT u.id, now(), now() + interval '30 days' FROM u, generate_series(1, 2)
           RETURNING id`,
        )
      ).rows.map((r) => r.id);
      await db.pool.query(
        `INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at)
         VALUES ('seed', $1, now(), now() + interval '7 days')`,
        [a],
      );
      // a rotation of family a whose transaction stays open 3 s (its INSERT's ROW EXCLUSIVE on
      // refresh_tokens, its foreign key's ROW SHARE on refresh_token_families)
      await holder.query('BEGIN');
      await holder.query(
        `INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at)
         VALUES ('held', $1, now(), now() + interval '7 days')`,
        [a],
      );
      // and one spending a token of it, open 6 s (ROW EXCLUSIVE on refresh_tokens alone: the
      // column's ALTER TABLE has its lock, CREATE TRIGGER waits for this one)
      await spender.query('BEGIN');
      await spender.query(`UPDATE refresh_tokens SET spent_at = now() WHERE token_hash = 'seed'`);
      const held = Promise.all([
        new Promise((resolve) => setTimeout(resolve, 3000)).then(() => holder.query('COMMIT')),
        new Promise((resolve) => setTimeout(resolve, 6000)).then(() => spender.query('COMMIT')),
      ]);

      let migrating = true;
      const migrated = migrateUpTo(db.url, 1763800068000).finally(() => {
        migrating = false;
      });
      // family b's refreshes meanwhile, one every 50 ms, each timed by the server: from its
      // transaction's start (the statement's Parse, where it queues for the table's lock) to its
      // row written — not by this test process's clock, to which a loaded machine's event loop
      // added enough to fail the bound (1,111 ms once, in a full run beside other work)
      const waits: number[] = [];
      for (let i = 0; migrating || waits.length < 20; i++) {
        const { rows } = await app.query<{ waited: number }>(
          `INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at)
           VALUES ($1, $2, now(), now() + interval '7 days')
           RETURNING (extract(epoch FROM clock_timestamp() - transaction_timestamp()) * 1000)::float8
                     AS waited`,
          [`refresh-${i}`, b],
        );
        waits.push(rows[0].waited);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await held;
      await migrated;

      // (before: queued behind the ALTER TABLE, itself behind the first transaction, ~3 s, and
      // then behind CREATE TRIGGER, behind the second, ~2 s)
      expect(Math.max(...waits)).toBeLessThan(1000);
      const { rows } = await db.pool.query<{ column: boolean; trigger: boolean; idle: Date }>(
        `SELECT EXISTS (SELECT 1 FROM pg_attribute
                         WHERE attrelid = 'refresh_token_families'::regclass
                           AND attname = 'idle_expires_at' AND NOT attisdropped) AS column,
                EXISTS (SELECT 1 FROM pg_trigger
                         WHERE tgname = 'refresh_family_idle_expiry') AS trigger,
                (SELECT idle_expires_at FROM refresh_token_families WHERE id = $1) AS idle`,
        [a],
      );
      // and the held rotation's token, committed before the trigger was in place, backfilled
      expect(rows[0]).toMatchObject({ column: true, trigger: true });
      expect(rows[0].idle).not.toBeNull();
    } finally {
      await holder.end().catch(() => undefined);
      await spender.end().catch(() => undefined);
      await app.end().catch(() => undefined);
      await db.drop();
    }
  });
});
