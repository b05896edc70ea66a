import type { PoolClient } from 'pg';
import type { TestDatabase } from './test-database';

/**
 * The plan PostgreSQL picks for `sql` (EXPLAIN, values bound as node-postgres binds them), in a
 * transaction that `prepare` may first fill or tune (rows, ANALYZE, `SET LOCAL …`) and that is
 * rolled back afterwards: the database is left as it was.
 */
export async function queryPlan(
  db: TestDatabase,
  sql: string,
  params: unknown[],
  prepare?: (client: PoolClient) => Promise<unknown>,
): Promise<string> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await prepare?.(client);
    const rows = (await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, params)).rows;
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}
