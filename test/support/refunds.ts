import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';

export interface RefundRow {
  orderId: string;
  amount: number;
  status: 'pending' | 'succeeded' | 'failed';
  reason?: 'requested' | 'paid_after_cancel' | 'external';
  failure?: string | null;
  daysAgo?: number;
  id?: string;
}

/**
 * Writes a refund of an order's payment as RefundRepository does: a pending or succeeded one
 * raises the payment's `refund_reserved` in the same statement, as the database checks at COMMIT
 * (migrations/1763800058000-RefundsOfTheirPayment.ts). Answers the refund's id.
 */
export async function insertRefund(pool: Pool, r: RefundRow): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    `WITH p AS (SELECT id, currency FROM payments WHERE order_id = $2),
     r AS (
       INSERT INTO refunds (id, order_id, payment_id, amount, currency, status, reason, actor, failure, created_at, updated_at)
       SELECT $1, $2, p.id, $3, p.currency, $4, $5, 'test', $6, now() - $7 * interval '1 day', now() FROM p
       RETURNING id, payment_id, amount, status),
     raised AS (
       UPDATE payments SET refund_reserved = payments.refund_reserved + r.amount
         FROM r WHERE payments.id = r.payment_id AND r.status <> 'failed')
     SELECT id FROM r`,
    [
      r.id ?? randomUUID(),
      r.orderId,
      r.amount,
      r.status,
      r.reason ?? 'requested',
      r.failure ?? null,
      r.daysAgo ?? 0,
    ],
  );
  if (rows.length !== 1) throw new Error(`order ${r.orderId} has no payment to refund`);
  return rows[0].id;
}
