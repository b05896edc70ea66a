import type { Pool } from 'pg';
import { inTransaction } from './transactions';

/**
 * Runs `sql` (an UPDATE of orders that sets a status outside the state machine's moves: a test
 * placing an order in a state directly, or taking it back to one) as a repair, which the
 * database's transition trigger lets through (migrations/1763800055000-OrderStatusTransitions.ts).
 */
export async function repairOrders(pool: Pool, sql: string, params: unknown[]): Promise<void> {
  await inTransaction(pool, async (client) => {
    await client.query(`SET LOCAL shop.order_status_repair = 'on'`);
    await client.query(sql, params);
  });
}

/** Each order's status, cancellation reason and the actor of its cancellation (null if none), in `ids` order. */
export async function cancellationsOf(
  pool: Pool,
  ids: string[],
): Promise<{ status: string; reason: string | null; actor: string | null }[]> {
  const { rows } = await pool.query<{
    id: string;
    status: string;
    reason: string | null;
    actor: string | null;
  }>(
    `SELECT o.id, o.status, o.cancellation_reason AS reason, h.actor
       FROM orders o LEFT JOIN order_status_history h ON h.order_id = o.id AND h.to_status = 'CANCELLED'
      WHERE o.id = ANY($1::uuid[])`,
    [ids],
  );
  return ids.map((id) => {
    const { status, reason, actor } = rows.find((r) => r.id === id)!;
    return { status, reason, actor };
  });
}
