import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Each distinct response body stored once (content-addressed), not once per key: a cancel of an
 * order already cancelled changes nothing and answers 200 with the whole order, and every fresh
 * Idempotency-Key stored that same body again for 24 h — a 100-line order 10-28 KB a record, one
 * IPv4 address within its rate limits 1-2 GB a day of identical answers, a /48 hundreds of GB.
 *
 * `idempotency_bodies`: a body by the SHA-256 of its text (UTF8), and `expires_at`, the latest
 * expiry of the keys that referenced it (each store raises it, GREATEST): a key never outlives its
 * body, so the purge deletes bodies past their own expiry — in a statement that judges it again on
 * the row it reaches, so a body a store has just re-referenced (its upsert locks and raises the
 * row) stays. A key's `response_body_hash` names its body; `response_body` is kept for the records
 * written before (read where the hash is NULL) until they expire.
 *
 * `idempotency_claim` (migration IdempotencyClaimFunction) reads the body through the key's hash.
 */
export class IdempotencyBodies1763800066000 implements MigrationInterface {
  name = 'IdempotencyBodies1763800066000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE idempotency_bodies (
        hash bytea NOT NULL,
        body text NOT NULL,
        expires_at timestamptz NOT NULL,
        CONSTRAINT idempotency_bodies_pkey PRIMARY KEY (hash)
      )`);
    await q.query(
      `CREATE INDEX idempotency_bodies_expiry_idx ON idempotency_bodies (expires_at)`,
    );
    await q.query(`ALTER TABLE idempotency_keys ADD COLUMN response_body_hash bytea`);
    await q.query(`
      CREATE OR REPLACE FUNCTION idempotency_claim(p_principal text, p_key text, p_now timestamptz)
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
          SELECT v_claimed, k.state, k.method, k.route, k.fingerprint, k.response_status,
                 -- its body by hash; a record written before idempotency_bodies holds its own
                 CASE WHEN k.response_body_hash IS NULL THEN k.response_body ELSE b.body END
            FROM (SELECT 1) one
            LEFT JOIN idempotency_keys k
              ON k.principal = p_principal AND k.key = p_key AND k.expires_at > p_now
            LEFT JOIN idempotency_bodies b ON b.hash = k.response_body_hash;
      END
      $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    // the records stored since keep their bodies: copied back into their rows
    await q.query(`
      UPDATE idempotency_keys k SET response_body = b.body, response_body_hash = NULL
        FROM idempotency_bodies b WHERE b.hash = k.response_body_hash`);
    await q.query(`
      CREATE OR REPLACE FUNCTION idempotency_claim(p_principal text, p_key text, p_now timestamptz)
      RETURNS TABLE (claimed boolean, state text, method text, route text, fingerprint text,
                     status int, body text)
      LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $$
      #variable_conflict use_column
      DECLARE
        v_claimed boolean := pg_try_advisory_xact_lock(hashtextextended(p_principal || E'\\n' || p_key, 7));
      BEGIN
        IF v_claimed THEN
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
    await q.query(`ALTER TABLE idempotency_keys DROP COLUMN response_body_hash`);
    await q.query(`DROP TABLE idempotency_bodies`);
  }
}
