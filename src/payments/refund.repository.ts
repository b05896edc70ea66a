import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import { toSafeInt } from '../common/money/safe-int';
import type { RefundStatus } from './payment-gateway';

export type RefundReason = 'requested' | 'paid_after_cancel' | 'external';

export interface Refund {
  id: string;
  orderId: string;
  paymentId: string;
  amount: number;
  currency: string;
  status: RefundStatus;
  reason: RefundReason;
  providerRefundId: string | null;
  failure: string | null;
  actor: string;
  createdAt: Date;
  updatedAt: Date;
}

interface Row {
  id: string;
  order_id: string;
  payment_id: string;
  amount: string;
  currency: string;
  status: RefundStatus;
  reason: RefundReason;
  provider_refund_id: string | null;
  failure: string | null;
  actor: string;
  created_at: Date;
  updated_at: Date;
}

const map = (r: Row): Refund => ({
  id: r.id,
  orderId: r.order_id,
  paymentId: r.payment_id,
  amount: toSafeInt(r.amount),
  currency: r.currency.trim(),
  status: r.status,
  reason: r.reason,
  providerRefundId: r.provider_refund_id,
  failure: r.failure,
  actor: r.actor,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export interface NewRefund {
  id: string;
  orderId: string;
  paymentId: string;
  currency: string;
  reason: RefundReason;
  actor: string;
  providerRefundId?: string;
}

/**
 * SQL for refunds and the payment's refund reservation. `payments.refund_reserved` (pending +
 * succeeded refunds) is raised by one guarded UPDATE on the payment row, under a CHECK that it
 * never exceeds the captured amount: two concurrent refunds serialize on that row and the second
 * sees the first one's reservation.
 */
@Injectable()
export class RefundRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Reserves `amount` (or, when null, all that remains) of a succeeded payment and records the
   * refund as pending, in one statement. Null when nothing (or not that much) remains refundable.
   */
  async reserve(r: NewRefund, amount: number | null, at: Date): Promise<Refund | null> {
    const rows: Row[] = await this.tx.query(
      `WITH want AS (
         SELECT p.id, coalesce($2::bigint, p.amount - p.refund_reserved) AS amount
           FROM payments p WHERE p.id = $1 AND p.status = 'succeeded'
       ), reserved AS (
         UPDATE payments p SET refund_reserved = p.refund_reserved + want.amount, updated_at = $3
           FROM want
          WHERE p.id = want.id AND want.amount > 0 AND p.refund_reserved + want.amount <= p.amount
         RETURNING want.amount
       )
       INSERT INTO refunds (id, order_id, payment_id, amount, currency, status, reason,
                            provider_refund_id, actor, created_at, updated_at)
       SELECT $4, $5, $1, reserved.amount, $6, $7, $8, $9, $10, $3, $3 FROM reserved
       RETURNING *`,
      [
        r.paymentId,
        amount,
        at,
        r.id,
        r.orderId,
        r.currency,
        r.providerRefundId ? 'succeeded' : 'pending',
        r.reason,
        r.providerRefundId ?? null,
        r.actor,
      ],
    );
    return rows[0] ? map(rows[0]) : null;
  }

  /**
   * Locks the payment row for the rest of the transaction: refunds that must be recorded at most
   * once (automatic, or seen at the provider) check for themselves under this lock.
   */
  async lockPayment(paymentId: string): Promise<void> {
    await this.tx.query(`SELECT 1 FROM payments WHERE id = $1 FOR UPDATE`, [paymentId]);
  }

  async findByProviderId(providerRefundId: string): Promise<Refund | null> {
    const rows: Row[] = await this.tx.query(`SELECT * FROM refunds WHERE provider_refund_id = $1`, [
      providerRefundId,
    ]);
    return rows[0] ? map(rows[0]) : null;
  }

  /** pending → succeeded or failed, once; a failed refund gives its reservation back. */
  async settle(
    id: string,
    to: 'succeeded' | 'failed',
    detail: { providerRefundId?: string; failure?: string },
    at: Date,
  ): Promise<Refund | null> {
    const rows: Row[] = await this.tx.query(
      `UPDATE refunds SET status = $2, provider_refund_id = coalesce($3, provider_refund_id),
              failure = $4, updated_at = $5
        WHERE id = $1 AND status = 'pending'
       RETURNING *`,
      [id, to, detail.providerRefundId ?? null, detail.failure ?? null, at],
    );
    const refund = rows[0] ? map(rows[0]) : null;
    if (refund && to === 'failed') {
      await this.tx.query(
        `UPDATE payments SET refund_reserved = refund_reserved - $2, updated_at = $3 WHERE id = $1`,
        [refund.paymentId, refund.amount, at],
      );
    }
    return refund;
  }

  /**
   * Records the provider's id on a still-pending refund (its outcome is not known yet) and
   * marks it as just checked, so the stale-refund pass comes back to it later.
   */
  async attachProviderId(id: string, providerRefundId: string, at: Date): Promise<void> {
    await this.tx.query(
      `UPDATE refunds SET provider_refund_id = coalesce(provider_refund_id, $2), updated_at = $3
        WHERE id = $1 AND status = 'pending'`,
      [id, providerRefundId, at],
    );
  }

  /**
   * failed → succeeded: the provider did refund after all (we had classified an answer as a
   * refusal). Takes the amount back into the reservation; the CHECK still caps it at the capture.
   */
  async reinstate(id: string, providerRefundId: string, at: Date): Promise<Refund | null> {
    const rows: Row[] = await this.tx.query(
      `WITH r AS (
         UPDATE refunds SET status = 'succeeded', provider_refund_id = $2, failure = NULL, updated_at = $3
          WHERE id = $1 AND status = 'failed'
         RETURNING *
       ), p AS (
         UPDATE payments SET refund_reserved = payments.refund_reserved + r.amount, updated_at = $3
           FROM r WHERE payments.id = r.payment_id
       )
       SELECT * FROM r`,
      [id, providerRefundId, at],
    );
    return rows[0] ? map(rows[0]) : null;
  }

  /** Marks a pending refund as just attempted (so the stale-refund retry waits its turn). */
  async touch(id: string, at: Date): Promise<void> {
    await this.tx.query(`UPDATE refunds SET updated_at = $2 WHERE id = $1 AND status = 'pending'`, [id, at]);
  }

  async findById(id: string): Promise<Refund | null> {
    const rows: Row[] = await this.tx.query(`SELECT * FROM refunds WHERE id = $1`, [id]);
    return rows[0] ? map(rows[0]) : null;
  }

  async findAutomatic(paymentId: string): Promise<Refund | null> {
    const rows: Row[] = await this.tx.query(
      `SELECT * FROM refunds WHERE payment_id = $1 AND reason = 'paid_after_cancel'`,
      [paymentId],
    );
    return rows[0] ? map(rows[0]) : null;
  }

  async findByPayment(paymentId: string): Promise<Refund[]> {
    const rows: Row[] = await this.tx.query(
      `SELECT * FROM refunds WHERE payment_id = $1 ORDER BY created_at, id`,
      [paymentId],
    );
    return rows.map(map);
  }

  /** Pending refunds not touched since `before`: their provider call may never have happened. */
  async findStalePending(before: Date, limit = 100): Promise<Refund[]> {
    const rows: Row[] = await this.tx.query(
      `SELECT * FROM refunds WHERE status = 'pending' AND updated_at < $1 ORDER BY updated_at LIMIT $2`,
      [before, limit],
    );
    return rows.map(map);
  }
}
