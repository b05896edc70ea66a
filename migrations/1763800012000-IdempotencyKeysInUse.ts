import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `idempotency_keys_in_use`: which of some (principal, key) pairs a request must not be answered
 * for without the normal path — the checkout's sold-out fast path asks before it refuses
 * (IdempotencyRepository.keysInUse). A key is in use when a request holding it is running right
 * now (its advisory lock — the one both claim modes take, see KEY_LOCK_ID — is held by a
 * transaction or a session), or when it has a live record (a completed response to replay, on
 * any route, or a request in progress outside one transaction).
 *
 * A function, not one statement, for the order of the two reads: a VOLATILE PL/pgSQL function
 * takes a fresh snapshot for each statement, so the records are read under a snapshot taken
 * after the locks were tried — a request that commits between the two is seen by one or the
 * other (its record is visible before its lock is released). The locks taken here are the
 * calling statement's, released when it ends (the caller runs it outside any transaction).
 */
export class IdempotencyKeysInUse1763800012000 implements MigrationInterface {
  name = 'IdempotencyKeysInUse1763800012000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION idempotency_keys_in_use(p_principals text[], p_keys text[], p_now timestamptz)
      RETURNS TABLE (principal text, key text)
      LANGUAGE plpgsql VOLATILE AS $$
      #variable_conflict use_column
      BEGIN
        RETURN QUERY
          SELECT k.p, k.k FROM unnest(p_principals, p_keys) AS k(p, k)
           WHERE NOT pg_try_advisory_xact_lock(hashtextextended(k.p || E'\\n' || k.k, 7));
        RETURN QUERY
          SELECT i.principal, i.key
            FROM idempotency_keys i
            JOIN unnest(p_principals, p_keys) AS k(p, k) ON i.principal = k.p AND i.key = k.k
           WHERE i.expires_at > p_now;
      END
      $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION idempotency_keys_in_use(text[], text[], timestamptz)`);
  }
}
