import type { Pool, PoolClient } from 'pg';

/** `work` in a transaction of its own on one of `pool`'s connections: committed, or rolled back and thrown. */
export async function inTransaction<T>(
  pool: Pool,
  work: (c: PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
