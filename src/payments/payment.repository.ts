import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import { toSafeInt } from '../common/money/safe-int';
import type { OrderStatus } from '../orders/order-state-machine';
import type { GatewayIntent } from './payment-gateway';

export interface Payment {
  id: string;
  orderId: string;
  provider: string;
  intentId: string;
  clientSecret: string;
  amount: number;
  currency: string;
  status: string;
}

interface Row {
  id: string;
  order_id: string;
  provider: string;
  intent_id: string;
  client_secret: string;
  amount: string;
  currency: string;
  status: string;
}

const map = (r: Row): Payment => ({
  id: r.id,
  orderId: r.order_id,
  provider: r.provider,
  intentId: r.intent_id,
  clientSecret: r.client_secret,
  amount: toSafeInt(r.amount),
  currency: r.currency.trim(),
  status: r.status,
});

/** SQL for payments (one per order) and the webhook inbox. */
@Injectable()
export class PaymentRepository {
  constructor(private readonly tx: TransactionHost) {}

  async findByOrder(orderId: string): Promise<Payment | null> {
    const rows: Row[] = await this.tx.query(`SELECT * FROM payments WHERE order_id = $1`, [orderId]);
    return rows[0] ? map(rows[0]) : null;
  }

  async orderExists(orderId: string): Promise<boolean> {
    const rows = await this.tx.query(`SELECT 1 FROM orders WHERE id = $1`, [orderId]);
    return rows.length > 0;
  }

  async findById(id: string): Promise<Payment | null> {
    const rows: Row[] = await this.tx.query(`SELECT * FROM payments WHERE id = $1`, [id]);
    return rows[0] ? map(rows[0]) : null;
  }

  async findByIntent(intentId: string): Promise<Payment | null> {
    const rows: Row[] = await this.tx.query(`SELECT * FROM payments WHERE intent_id = $1`, [intentId]);
    return rows[0] ? map(rows[0]) : null;
  }

  /** Records the order's payment unless one exists (unique per order); returns the one that stands. */
  async insertOnce(p: Payment, at: Date): Promise<Payment> {
    await this.tx.query(
      `INSERT INTO payments (id, order_id, provider, intent_id, client_secret, amount, currency, status, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT (order_id) DO NOTHING`,
      [p.id, p.orderId, p.provider, p.intentId, p.clientSecret, p.amount, p.currency, p.status, at],
    );
    return (await this.findByOrder(p.orderId))!;
  }

  /** Records the gateway's intent as the order's payment (see insertOnce). */
  recordIntent(id: string, provider: string, intent: GatewayIntent, at: Date): Promise<Payment> {
    return this.insertOnce(
      {
        id,
        orderId: intent.orderId,
        provider,
        intentId: intent.id,
        clientSecret: intent.clientSecret,
        amount: intent.amount,
        currency: intent.currency,
        status: intent.status,
      },
      at,
    );
  }

  /** Payments of orders still PAYMENT_PENDING whose payment row has not changed since `before`. */
  async findStalePending(before: Date, limit = 100): Promise<Payment[]> {
    const rows: Row[] = await this.tx.query(
      `SELECT p.* FROM payments p JOIN orders o ON o.id = p.order_id
        WHERE o.status = $3 AND p.updated_at < $1
        ORDER BY p.updated_at LIMIT $2`,
      [before, limit, 'PAYMENT_PENDING' satisfies OrderStatus],
    );
    return rows.map(map);
  }

  /**
   * Records the intent's status as last seen. Never out of a final state: a worker that read
   * `processing` just before another one saw `succeeded` cannot write it back.
   */
  async setStatus(id: string, status: string, at: Date): Promise<void> {
    await this.tx.query(
      `UPDATE payments SET status = $2, updated_at = $3
        WHERE id = $1 AND (status NOT IN ('succeeded', 'canceled') OR status = $2)`,
      [id, status, at],
    );
  }

  /** Stores a verified event once; false for a duplicate id. */
  async recordEvent(e: { id: string; type: string; intentId: string | null; payload: unknown; at: Date }): Promise<boolean> {
    const rows = await this.tx.query(
      `INSERT INTO webhook_events (id, type, intent_id, payload, received_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (id) DO NOTHING RETURNING id`,
      [e.id, e.type, e.intentId, JSON.stringify(e.payload), e.at],
    );
    return rows.length > 0;
  }

  async findEvent(id: string): Promise<{ id: string; type: string; intentId: string | null; processedAt: Date | null } | null> {
    const rows: { id: string; type: string; intentId: string | null; processedAt: Date | null }[] = await this.tx.query(
      `SELECT id, type, intent_id AS "intentId", processed_at AS "processedAt" FROM webhook_events WHERE id = $1`,
      [id],
    );
    return rows[0] ?? null;
  }

  async markEventProcessed(id: string, at: Date): Promise<void> {
    await this.tx.query(`UPDATE webhook_events SET processed_at = coalesce(processed_at, $2) WHERE id = $1`, [id, at]);
  }
}
