import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import { toSafeInt } from '../common/money/safe-int';
import type { EmailKind } from './email-job';

export interface EmailDelivery {
  id: string;
  orderId: string;
  kind: EmailKind;
  ref: string;
  recipient: string;
  status: 'sending' | 'sent';
  attempts: number;
  messageId: string;
  claimedAt: Date | null;
  sentAt: Date | null;
  lastError: string | null;
}

export interface DeliveryClaim {
  id: string;
  orderId: string;
  kind: EmailKind;
  ref: string;
  recipient: string;
  messageId: string;
  now: Date;
}

/** What a refund email needs from the refund (the `refunds` table belongs to payments). */
export interface RefundForEmail {
  id: string;
  orderId: string;
  amount: number;
  currency: string;
  status: string;
}

const COLUMNS = `id, order_id AS "orderId", kind, ref, recipient, status, attempts,
  message_id AS "messageId", claimed_at AS "claimedAt", sent_at AS "sentAt", last_error AS "lastError"`;

/** The only place that builds SQL for email deliveries. */
@Injectable()
export class EmailDeliveryRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Insert-or-claim in one statement; the caller holds the delivery's lock (EmailDeliveryLocks).
   * Inserts the delivery as 'sending' claimed now, or — when it exists and is still 'sending' —
   * takes it over: under the lock, a 'sending' row is abandoned (a failed attempt released it,
   * or its worker died and PostgreSQL released that worker's lock).
   * Returns the claim's attempt number (its token), or null when the delivery was already sent.
   */
  async claim(c: DeliveryClaim): Promise<{ id: string; attempt: number } | null> {
    const rows = await this.tx.query<{ id: string; attempts: number }>(
      `INSERT INTO email_deliveries AS d
              (id, order_id, kind, ref, recipient, status, attempts, message_id, claimed_at,
               created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, 'sending', 1, $6, $7, $7, $7)
       ON CONFLICT (order_id, kind, ref) DO UPDATE
          SET attempts = d.attempts + 1,
              claimed_at = EXCLUDED.claimed_at,
              recipient = EXCLUDED.recipient,
              updated_at = EXCLUDED.updated_at
        WHERE d.status = 'sending'
       RETURNING d.id, d.attempts`,
      [c.id, c.orderId, c.kind, c.ref, c.recipient, c.messageId, c.now],
    );
    const row = rows[0];
    return row ? { id: row.id, attempt: row.attempts } : null;
  }

  async find(orderId: string, kind: EmailKind, ref: string): Promise<EmailDelivery | null> {
    const rows = await this.tx.query<EmailDelivery>(
      `SELECT ${COLUMNS} FROM email_deliveries WHERE order_id = $1 AND kind = $2 AND ref = $3`,
      [orderId, kind, ref],
    );
    return rows[0] ?? null;
  }

  /** Final: a sent delivery is never claimed again. */
  async markSent(id: string, at: Date): Promise<void> {
    await this.tx.query(
      `UPDATE email_deliveries
          SET status = 'sent', sent_at = $2, claimed_at = NULL, updated_at = $2
        WHERE id = $1 AND status = 'sending'`,
      [id, at],
    );
  }

  /**
   * After a failed send: records the error and frees the claim for the next attempt — only if
   * it is still this attempt's claim (a slow attempt must not free a newer claimer's).
   */
  async release(id: string, attempt: number, error: string, at: Date): Promise<void> {
    await this.tx.query(
      `UPDATE email_deliveries
          SET claimed_at = NULL, last_error = left($3, 2000), updated_at = $4
        WHERE id = $1 AND attempts = $2 AND status = 'sending'`,
      [id, attempt, error, at],
    );
  }

  async findRefund(refundId: string): Promise<RefundForEmail | null> {
    const rows = await this.tx.query<{
      id: string;
      order_id: string;
      amount: string;
      currency: string;
      status: string;
    }>(`SELECT id, order_id, amount, currency, status FROM refunds WHERE id = $1`, [refundId]);
    const r = rows[0];
    if (!r) return null;
    return {
      id: r.id,
      orderId: r.order_id,
      amount: toSafeInt(r.amount),
      currency: r.currency.trim(),
      status: r.status,
    };
  }
}
