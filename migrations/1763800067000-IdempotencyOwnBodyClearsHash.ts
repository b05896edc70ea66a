import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A record's own body, written by a statement that leaves its `response_body_hash` as it was,
 * clears that hash: the body is the newer answer. The build before IdempotencyBodies (5596e1a9 and
 * older), still serving beside this one during a rolling deploy, a canary or after a rollback
 * without `migration:revert`, knows no hash: taking over an expired record, its begin sets
 * `response_body = NULL` and its finish writes its own answer there, and both leave the hash of
 * the answer the record held before — which this build's readers (IdempotencyRepository.find,
 * `idempotency_claim`) read in preference: a payment start's retry was replayed a checkout's order
 * (rolling-deploy review). A reader preferring the record's own body would not do: an answer
 * without a body (the storage webhook's 204) leaves it NULL, and the stale hash would be read.
 *
 * This build's own writes never call the trigger's function: its begin names `response_body` but
 * sets the hash NULL itself, and its inline finish follows that begin (the hash already NULL); its
 * finish by hash does not name `response_body`; its completes are INSERTs, the claim function and
 * the purges DELETEs — on the checkout's path the trigger is not even looked at.
 *
 * Records an old build rewrote before this migration are repaired where they can be told apart:
 * this build never leaves a hash on a record in progress, nor a hash beside its own body, so such
 * a record's body is an old build's (and newer than the hash). A completed record with a hash and
 * no body of its own is what this build stores for every large answer; an old build's answer
 * without a body over one (only the storage webhook's, whose caller — an `ip:` principal — gets
 * no answer over 2 KB to store by hash) is not told apart: left as it is.
 *
 * Outside a transaction (`transaction = false`): the repair reads the whole table (no index has
 * the hash), and in the trigger's transaction it would hold the trigger's lock — every keyed
 * write waiting — for that long. The trigger commits first, so a record an old build rewrites
 * after it is mended as it is written, and one rewritten before is in the repair's snapshot. Run
 * again after a failure, each statement does the same.
 */
export class IdempotencyOwnBodyClearsHash1763800067000 implements MigrationInterface {
  name = 'IdempotencyOwnBodyClearsHash1763800067000';
  transaction = false;

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE OR REPLACE FUNCTION idempotency_keys_own_body_clears_hash() RETURNS trigger
      LANGUAGE plpgsql AS $$
      BEGIN
        NEW.response_body_hash := NULL;
        RETURN NEW;
      END $$`);
    await q.query(
      `DROP TRIGGER IF EXISTS idempotency_keys_own_body_clears_hash ON idempotency_keys`,
    );
    await q.query(`
      CREATE TRIGGER idempotency_keys_own_body_clears_hash
        BEFORE UPDATE OF response_body ON idempotency_keys
        FOR EACH ROW
        WHEN (NEW.response_body_hash IS NOT NULL
              AND NEW.response_body_hash IS NOT DISTINCT FROM OLD.response_body_hash)
        EXECUTE FUNCTION idempotency_keys_own_body_clears_hash()`);
    // the records an old build took over (in progress) or completed (its body) before the trigger
    await q.query(`
      UPDATE idempotency_keys SET response_body_hash = NULL
       WHERE response_body_hash IS NOT NULL
         AND (state = 'in_progress' OR response_body IS NOT NULL)`);
  }

  async down(q: QueryRunner): Promise<void> {
    // (a revert runs in a transaction whatever the migration says: TypeORM's undoLastMigration)
    await q.query(
      `DROP TRIGGER IF EXISTS idempotency_keys_own_body_clears_hash ON idempotency_keys`,
    );
    await q.query(`DROP FUNCTION IF EXISTS idempotency_keys_own_body_clears_hash()`);
  }
}
