import { MigrationInterface, QueryRunner } from 'typeorm';

/** Families a backfill statement covers (by id, through the primary key). */
const BACKFILL_BATCH = 5000;

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
 * and its newest token's idle expiry. That last one is now kept on the family:
 * `idle_expires_at`, the latest `idle_expires_at` of its tokens (NULL: none yet), written by the
 * database itself — a trigger on `refresh_tokens`, so every writer keeps it (the build before
 * this one, serving beside it during a rolling deploy, too): raised by each token inserted (a
 * rotation), recomputed when a token's idle expiry or family is changed in place (nothing here
 * does; an operator's or a test's UPDATE). The purge finds its candidates by index on each of
 * the three (UNION ALL), and still checks a candidate's tokens (one probe of
 * `refresh_tokens_family_idle_idx (family_id, idle_expires_at)`), so a family is never purged on
 * the strength of this column alone.
 *
 * Outside a transaction (`transaction = false`): the backfill reads every family and its tokens,
 * in batches by id so no statement locks more than BACKFILL_BATCH families (a rotation or a
 * revocation of one waits that long at most), and the indexes are built CONCURRENTLY, the tables
 * being written by every sign-in and refresh. The trigger is in place before the backfill reads:
 * a token inserted after it raises its family's value, one inserted before is in the backfill's
 * snapshot (CREATE TRIGGER waits for the transactions writing `refresh_tokens`). Run again after a
 * failure, each step does the same (an INVALID index a failed build left is dropped first).
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
    UPDATE refresh_token_families f SET idle_expires_at = t.latest
      FROM (SELECT family_id, max(idle_expires_at) AS latest FROM refresh_tokens
             WHERE family_id > $1::uuid AND family_id <= $2::uuid GROUP BY family_id) t
     WHERE f.id > $1::uuid AND f.id <= $2::uuid
       AND f.id = t.family_id AND (f.idle_expires_at IS NULL OR f.idle_expires_at < t.latest)`;

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE refresh_token_families ADD COLUMN IF NOT EXISTS idle_expires_at timestamptz`,
    );
    await q.query(`
      CREATE OR REPLACE FUNCTION refresh_family_idle_expiry() RETURNS trigger
      LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP = 'INSERT' THEN
          UPDATE refresh_token_families SET idle_expires_at = NEW.idle_expires_at
           WHERE id = NEW.family_id
             AND (idle_expires_at IS NULL OR idle_expires_at < NEW.idle_expires_at);
        ELSE
          UPDATE refresh_token_families f
             SET idle_expires_at = (SELECT max(t.idle_expires_at) FROM refresh_tokens t
                                     WHERE t.family_id = f.id)
           WHERE f.id IN (OLD.family_id, NEW.family_id);
        END IF;
        RETURN NULL;
      END $$`);
    // one statement, so that a second run never leaves a moment without the trigger
    await q.query(`
      DO $$
      BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger
                        WHERE tgname = 'refresh_family_idle_expiry'
                          AND tgrelid = 'refresh_tokens'::regclass) THEN
          CREATE TRIGGER refresh_family_idle_expiry
            AFTER INSERT OR UPDATE OF idle_expires_at, family_id ON refresh_tokens
            FOR EACH ROW EXECUTE FUNCTION refresh_family_idle_expiry();
        END IF;
      END $$`);

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
    // (a revert runs in a transaction whatever the migration says: TypeORM's undoLastMigration)
    await q.query(`CREATE INDEX IF NOT EXISTS refresh_tokens_family_idx ON refresh_tokens (family_id)`);
    await q.query(`DROP INDEX IF EXISTS refresh_tokens_family_idle_idx`);
    await q.query(`DROP INDEX IF EXISTS refresh_token_families_idle_idx`);
    await q.query(`DROP INDEX IF EXISTS refresh_token_families_expires_idx`);
    await q.query(`DROP TRIGGER IF EXISTS refresh_family_idle_expiry ON refresh_tokens`);
    await q.query(`DROP FUNCTION IF EXISTS refresh_family_idle_expiry()`);
    await q.query(`ALTER TABLE refresh_token_families DROP COLUMN IF EXISTS idle_expires_at`);
  }
}
