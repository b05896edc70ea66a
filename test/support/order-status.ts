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
