import type { Pool } from 'pg';

/**
 * Holds an Idempotency-Key's advisory lock as a request that is still running holds it (on its
 * own connection, as the API's key-lock session does); `release()` lets go, as that request's
 * end or death would. The lock id is the one IdempotencyRepository computes.
 */
export async function holdIdempotencyKey(
  pool: Pool,
  principal: string,
  key: string,
): Promise<{ release: () => Promise<void> }> {
  const c = await pool.connect();
  await c.query(`SELECT pg_advisory_lock(hashtextextended($1::text || E'\\n' || $2::text, 7))`, [
    principal,
    key,
  ]);
  return {
    release: async () => {
      await c.query(`SELECT pg_advisory_unlock_all()`);
      c.release();
    },
  };
}
