import type { Pool } from 'pg';
import { waitFor } from './wait-for';

/**
 * Waits until exactly `count` backends of the pool's database wait on a lock (a checkout blocked on
 * the inventory row a test holds) and returns their pids. `matching` narrows them by their query.
 */
export function untilWaitingOnLocks(
  pool: Pool,
  what: string,
  { count = 1, matching = '%' }: { count?: number; matching?: string } = {},
): Promise<number[]> {
  return waitFor(
    what,
    async () =>
      (
        await pool.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
              AND pid <> pg_backend_pid() AND query LIKE $1`,
          [matching],
        )
      ).rows.map((r) => r.pid),
    { until: (pids) => pids.length === count, timeoutMs: 15_000, intervalMs: 10 },
  );
}
