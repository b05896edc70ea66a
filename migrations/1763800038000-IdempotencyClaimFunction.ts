import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The transactional idempotency claim (IdempotencyRepository.claimStatements) as one function
 * call: the key's advisory lock, taken without waiting; then — a statement of its own, so a snapshot
 * taken after the lock, which sees every record committed by the key's previous holder — the
 * expired or `in_progress` record dropped (only when the lock is ours); then the live record, if
 * any, read under a snapshot of its own. One row always: `claimed` and the record's columns (NULL
 * without one). It was two statements parsed and planned on every keyed request; the function's
 * plans are made once per connection (`force_generic_plan`, as the stock and order functions).
 */
export class IdempotencyClaimFunction1763800038000 implements MigrationInterface {
  name = 'IdempotencyClaimFunction1763800038000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION idempotency_claim(p_principal text, p_key text, p_now timestamptz)
      RETURNS TABLE (claimed boolean, state text, method text, route text, fingerprint text,
                     status int, body text)
      LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $$
      #variable_conflict use_column
      DECLARE
        -- the lock id both claim modes take (IdempotencyRepository KEY_LOCK_ID)
        v_claimed boolean := pg_try_advisory_xact_lock(hashtextextended(p_principal || E'\\n' || p_key, 7));
      BEGIN
        IF v_claimed THEN
          -- a record past its expiry, or left in progress by a request that is gone (a running
          -- one would hold the lock): dropped, so the key is claimed afresh
          DELETE FROM idempotency_keys k
           WHERE k.principal = p_principal AND k.key = p_key
             AND (k.expires_at <= p_now OR k.state = 'in_progress');
        END IF;
        RETURN QUERY
          SELECT v_claimed, k.state, k.method, k.route, k.fingerprint, k.response_status, k.response_body
            FROM (SELECT 1) one
            LEFT JOIN idempotency_keys k
              ON k.principal = p_principal AND k.key = p_key AND k.expires_at > p_now;
      END
      $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION idempotency_claim(text, text, timestamptz)`);
  }
}
