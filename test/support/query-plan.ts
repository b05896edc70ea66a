import type { PoolClient } from 'pg';
import type { TestDatabase } from './test-database';

/**
 * The plan PostgreSQL picks for `sql` (EXPLAIN, values bound as node-postgres binds them), in a
 * transaction that `prepare` may first fill or tune (rows, ANALYZE, `SET LOCAL …`) and that is
 * rolled back afterwards: the database is left as it was. `options`: EXPLAIN's own (e.g.
 * `ANALYZE, BUFFERS`: the statement is run, and the plan says what it read).
 */
export async function queryPlan(
  db: TestDatabase,
  sql: string,
  params: unknown[],
  prepare?: (client: PoolClient) => Promise<unknown>,
  options?: string,
): Promise<string> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await prepare?.(client);
    const rows = (
      await client.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN ${options ? `(${options}) ` : ''}${sql}`,
        params,
      )
    ).rows;
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}
