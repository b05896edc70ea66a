import { setTimeout as delay } from 'node:timers/promises';
import { MigrationInterface, QueryRunner } from 'typeorm';

/** Families a backfill statement covers (by id, through the primary key). */
const BACKFILL_BATCH = 5000;

/**
 * How long the column's and the trigger's statements wait for their table's lock at a time
 * (lock_timeout), how often they ask, and the pause between: ~18 s in all, then the run fails as
 * any other that cannot have its lock (run it again later).
 */
const TABLE_LOCK_WAIT_MS = 200;
const TABLE_LOCK_TRIES = 15;
const TABLE_LOCK_PAUSE_MS = 1000;

/**
 * Runs `sql` in a transaction of its own that waits TABLE_LOCK_WAIT_MS at most for a lock, asked
 * again after a pause while the lock is not to be had (55P03). A statement waiting for a table's
 * lock queues every later one on that table behind it: waiting the run's whole lock_timeout
 * (MIGRATION_LOCK_TIMEOUT_MS, 5 s) for a long transaction to end held every sign-in and refresh
 * that long. (`SET LOCAL`, in the transaction opened for it: outside one — `transaction = false`,
 * each statement its own — it is ignored with a warning.)
 */
async function withShortLockWait(q: QueryRunner, sql: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await q.startTransaction();
    try {
      await q.query(`SET LOCAL lock_timeout = ${TABLE_LOCK_WAIT_MS}`);
      await q.query(sql);
      await q.commitTransaction();
      return;
    } catch (err) {
      await q.rollbackTransaction();
      if ((err as { code?: unknown }).code !== '55P03' || attempt >= TABLE_LOCK_TRIES) throw err;
    }
    await delay(TABLE_LOCK_PAUSE_MS);
  }
}

/**
 * What a family keeps of its tokens' latest idle expiry `latest` (SQL): the next whole hour (UTC)
 * after it — a bound, later by an hour at most. Kept exact, every refresh wrote a new version of
 * its family's row, never HOT (the column is indexed); kept as this bound, a session's row is
 * written when its newest token's idle expiry passes the hour it holds: about once an hour, however
 * often it is refreshed.
 */
const idleBound = (latest: string) => `(date_trunc('hour', ${latest}, 'UTC') + interval '1 hour')`;

/**
 * The hourly purge of ended sessions (RefreshTokenRepository#purgeEnded) reached the families to
 * delete through no index: `refresh_token_families` had none on `expires_at` nor on when a session
 * went idle, so each batch of 500 read the whole table, and for every family opened before the
 * cut-off walked its tokens through `refresh_tokens_family_idx (family_id)` until one still usable
 * then — a session refreshed every 15 min holds thousands (measured on 1.0 M sessions and 200 such
 * app sessions: 1.8-2.0 s and ~348k buffers a batch, and one more such batch finding nothing at
 * the end of every run).
 *
 * A session ends at the earliest of its lifetime (`expires_at`), its revocation (`revoked_at`)
 * and its newest token's idle expiry. That last one is now kept on the family, rounded up:
 * `idle_expires_at`, the whole hour (UTC) after the latest `idle_expires_at` of its tokens
 * (idleBound; NULL: none yet), written by the database itself — a trigger on `refresh_tokens`, so
 * every writer keeps it (the build before this one, serving beside it during a rolling deploy,
 * too): raised by a token inserted (a rotation) whose idle expiry passes the hour it holds,
 * recomputed when a token's idle expiry or family is changed in place (nothing here does; an
 * operator's or a test's UPDATE). The purge finds its candidates by index on each of the three
 * (UNION ALL), and still checks a candidate's tokens (one probe of `refresh_tokens_family_idle_idx
 * (family_id, idle_expires_at)`), so a family is never purged on the strength of this column
 * alone; a session left idle is found up to an hour later than its tokens alone would say (it
 * is kept 30 days after it ended, then goes at an hourly purge: one more at most).
 *
 * Rounded up to the hour, the family's row is written about once an hour of a session's use, not
 * at each refresh: each such write is a new version of the row, never HOT (the column is indexed:
 * an entry in each of its indexes), and a dead row for vacuum. Measured over 2,000 rotations
 * (PostgreSQL 15; a rotation without the trigger writes ~1,060 B of WAL): refreshed every 15 min,
 * kept exact 2,000 new versions of the family's row and ~1,500 B of WAL a rotation (+42%), rounded
 * 500 and ~1,180 B (+11%); refreshed seconds apart (an app's burst), exact 2,000 and ~1,500 B,
 * rounded 1 and ~1,050 B (none).
 *
 * Outside a transaction (`transaction = false`): the backfill reads every family and its tokens,
 * in batches by id so no statement locks more than BACKFILL_BATCH families (a rotation or a
 * revocation of one waits that long at most), and the indexes are built CONCURRENTLY, the tables
 * being written by every sign-in and refresh. The trigger is in place before the backfill reads:
 * a token inserted after it raises its family's value, one inserted before is in the backfill's
 * snapshot (CREATE TRIGGER waits for the transactions writing `refresh_tokens`). The column's
 * ALTER TABLE and CREATE TRIGGER wait for their locks 200 ms at a time, asking again a second
 * later (withShortLockWait): behind a long transaction, every refresh queued behind them waits
 * that long at most, not the run's 5 s. Run again after a failure, each step does the same (an
 * INVALID index a failed build left is dropped first), and one done is not asked for again: the
 * column is looked for first, the trigger too (no table lock taken for either).
 * `refresh_tokens_family_idx (family_id)` goes once the composite index, which serves every
 * lookup by family, is built: one index fewer written by every refresh.
 */
export class SessionPurgeIndexes1763800068000 implements MigrationInterface {
  name = 'SessionPurgeIndexes1763800068000';
  transaction = false;

  /**
   * One batch of the backfill: the families with ids in ($1, $2], from their tokens. The range is
   * said of both tables: said of the tokens alone, the families were joined by a hash join over a
   * sequential scan of the whole table, every batch — quadratic (review, 800k families: 161
   * batches, 0.5-1.4 s each, 98 s; ~55 min projected at 5 M, and a batch's row locks held past
   * the app's 5 s LOCK_WAIT_MS beyond ~7 M); with it, the primary key's range (859 ms a batch,
   * now 109 ms, whatever the table's size). Its plan: test/schema/session-purge-plan.test.ts.
   */
  static readonly BACKFILL_SQL = `
    UPDATE refresh_token_families f SET idle_expires_at = t.bound
      FROM (SELECT family_id, ${idleBound('max(idle_expires_at)')} AS bound FROM refresh_tokens
             WHERE family_id > $1::uuid AND family_id <= $2::uuid GROUP BY family_id) t
     WHERE f.id > $1::uuid AND f.id <= $2::uuid
       AND f.id = t.family_id AND (f.idle_expires_at IS NULL OR f.idle_expires_at < t.bound)`;

  async up(q: QueryRunner): Promise<void> {
    // asked first: ALTER TABLE … ADD COLUMN IF NOT EXISTS takes its ACCESS EXCLUSIVE lock before
    // it finds the column there, and a run again waited for every reader of the table
    const column = (await q.query(
      `SELECT 1 FROM pg_attribute
        WHERE attrelid = 'refresh_token_families'::regclass AND attname = 'idle_expires_at'
          AND NOT attisdropped`,
    )) as unknown[];
    if (column.length === 0)
      await withShortLockWait(
        q,
        `ALTER TABLE refresh_token_families ADD COLUMN IF NOT EXISTS idle_expires_at timestamptz`,
      );
    await q.query(`
      CREATE OR REPLACE FUNCTION refresh_family_idle_expiry() RETURNS trigger
      LANGUAGE plpgsql
      -- (its UPDATEs planned once per connection, as the stock and order functions': a refresh's
      -- path)
      SET plan_cache_mode = force_generic_plan
      AS $$
      BEGIN
        IF TG_OP = 'INSERT' THEN
          -- written only when the bound rises (a new hour): most refreshes write nothing here
          UPDATE refresh_token_families SET idle_expires_at = ${idleBound('NEW.idle_expires_at')}
           WHERE id = NEW.family_id
             AND (idle_expires_at IS NULL
                  OR idle_expires_at < ${idleBound('NEW.idle_expires_at')});
        ELSE
          UPDATE refresh_token_families f
             SET idle_expires_at = (SELECT ${idleBound('max(t.idle_expires_at)')}
                                      FROM refresh_tokens t WHERE t.family_id = f.id)
           WHERE f.id IN (OLD.family_id, NEW.family_id);
        END IF;
        RETURN NULL;
      END $$`);
    // one statement, so that a second run never leaves a moment without the trigger; CREATE
    // TRIGGER's SHARE ROW EXCLUSIVE lock waits for every transaction writing refresh_tokens
    await withShortLockWait(
      q,
      `
      DO $$
      BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger
                        WHERE tgname = 'refresh_family_idle_expiry'
                          AND tgrelid = 'refresh_tokens'::regclass) THEN
          CREATE TRIGGER refresh_family_idle_expiry
            AFTER INSERT OR UPDATE OF idle_expires_at, family_id ON refresh_tokens
            FOR EACH ROW EXECUTE FUNCTION refresh_family_idle_expiry();
        END IF;
      END $$`,
    );

    for (let after = '00000000-0000-0000-0000-000000000000'; ; ) {
      const [batch] = (await q.query(
        `SELECT id::text AS last FROM (SELECT id FROM refresh_token_families
                                         WHERE id > $1::uuid ORDER BY id LIMIT $2) b
          ORDER BY id DESC LIMIT 1`,
        [after, BACKFILL_BATCH],
      )) as { last: string }[];
      if (!batch) break;
      await q.query(SessionPurgeIndexes1763800068000.BACKFILL_SQL, [after, batch.last]);
      after = batch.last;
    }

    const indexes: [name: string, definition: string][] = [
      ['refresh_token_families_expires_idx', 'refresh_token_families (expires_at)'],
      ['refresh_token_families_idle_idx', 'refresh_token_families (idle_expires_at)'],
      ['refresh_tokens_family_idle_idx', 'refresh_tokens (family_id, idle_expires_at)'],
    ];
    for (const [name, definition] of indexes) {
      const valid = (await q.query(
        `SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE c.relname = $1 AND i.indisvalid`,
        [name],
      )) as unknown[];
      if (valid.length > 0) continue; // built by a run that failed after it
      await q.query(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
      await q.query(`CREATE INDEX CONCURRENTLY ${name} ON ${definition}`);
    }
    await q.query(`DROP INDEX CONCURRENTLY IF EXISTS refresh_tokens_family_idx`);
  }

  async down(q: QueryRunner): Promise<void> {
    // A revert runs in a transaction whatever the migration says (TypeORM's undoLastMigration
    // opens one), so this index cannot be built CONCURRENTLY here: the build holds a SHARE lock on
    // refresh_tokens, every sign-in and refresh waiting for it (giving up after LOCK_WAIT_MS, 5 s),
    // and the DROPs below take ACCESS EXCLUSIVE locks on both tables. Revert in a quiet window, or
    // build the index first by hand, `CREATE INDEX CONCURRENTLY refresh_tokens_family_idx ON
    // refresh_tokens (family_id)`: IF NOT EXISTS then finds it.
    await q.query(`CREATE INDEX IF NOT EXISTS refresh_tokens_family_idx ON refresh_tokens (family_id)`);
    await q.query(`DROP INDEX IF EXISTS refresh_tokens_family_idle_idx`);
    await q.query(`DROP INDEX IF EXISTS refresh_token_families_idle_idx`);
    await q.query(`DROP INDEX IF EXISTS refresh_token_families_expires_idx`);
    await q.query(`DROP TRIGGER IF EXISTS refresh_family_idle_expiry ON refresh_tokens`);
    await q.query(`DROP FUNCTION IF EXISTS refresh_family_idle_expiry()`);
    await q.query(`ALTER TABLE refresh_token_families DROP COLUMN IF EXISTS idle_expires_at`);
  }
}
