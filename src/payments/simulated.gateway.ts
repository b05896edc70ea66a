import { Injectable } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { toSafeInt } from '../common/money/safe-int';
import {
  GatewayError,
  GatewayIntent,
  GatewayRefund,
  IntentStatus,
  PaymentGateway,
  RefundStatus,
} from './payment-gateway';

interface RefundRow {
  id: string;
  intent_id: string;
  amount: string;
  status: RefundStatus;
  metadata: { refundId?: string };
}

interface Row {
  id: string;
  order_id: string;
  amount: string;
  currency: string;
  status: IntentStatus;
  last_error: string | null;
}

/**
 * The development gateway (when STRIPE_SECRET_KEY is absent): keeps intents in PostgreSQL and
 * behaves like Stripe for what we use — idempotent creation, retrieve, cancel, settle, refunds
 * that can never exceed the captured amount.
 */
@Injectable()
export class SimulatedGateway implements PaymentGateway {
  readonly provider = 'simulated' as const;

  constructor(
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
  ) {}

  async createIntent(input: { orderId: string; amount: number; currency: string; idempotencyKey: string }): Promise<GatewayIntent> {
    const id = `pi_sim_${randomBytes(12).toString('hex')}`;
    const now = this.clock.now();
    await this.tx.query(
      `INSERT INTO simulated_payment_intents (id, idempotency_key, order_id, amount, currency, status, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, 'requires_payment_method', $6, $6)
       ON CONFLICT (idempotency_key) DO NOTHING`,
      [id, input.idempotencyKey, input.orderId, input.amount, input.currency, now],
    );
    const rows: Row[] = await this.tx.query(
      `SELECT * FROM simulated_payment_intents WHERE idempotency_key = $1`,
      [input.idempotencyKey],
    );
    return this.map(rows[0]);
  }

  async retrieveIntent(id: string): Promise<GatewayIntent> {
    const rows: Row[] = await this.tx.query(`SELECT * FROM simulated_payment_intents WHERE id = $1`, [id]);
    if (!rows[0]) throw new Error(`no such simulated intent ${id}`);
    return this.map(rows[0]);
  }

  async cancelIntent(id: string): Promise<GatewayIntent> {
    await this.tx.query(
      `UPDATE simulated_payment_intents SET status = 'canceled', updated_at = $2
        WHERE id = $1 AND status = 'requires_payment_method'`,
      [id, this.clock.now()],
    );
    return this.retrieveIntent(id);
  }

  /** Idempotent by key; checked against the captured amount under the intent's row lock. */
  createRefund(input: {
    intentId: string;
    amount: number;
    refundId: string;
    idempotencyKey: string;
  }): Promise<GatewayRefund> {
    return this.tx.run(async () => {
      const intents: Row[] = await this.tx.query(
        `SELECT * FROM simulated_payment_intents WHERE id = $1 FOR UPDATE`,
        [input.intentId],
      );
      const replay: RefundRow[] = await this.tx.query(
        `SELECT * FROM simulated_refunds WHERE idempotency_key = $1`,
        [input.idempotencyKey],
      );
      if (replay[0]) return this.mapRefund(replay[0]);
      const intent = intents[0];
      if (!intent || intent.status !== 'succeeded') {
        throw new GatewayError('rejected', 'charge_not_refundable', 'The intent has no successful charge.');
      }
      const [{ refunded }]: { refunded: string }[] = await this.tx.query(
        `SELECT coalesce(sum(amount), 0) AS refunded FROM simulated_refunds
          WHERE intent_id = $1 AND status = 'succeeded'`,
        [input.intentId],
      );
      if (toSafeInt(refunded) + input.amount > toSafeInt(intent.amount)) {
        throw new GatewayError('rejected', 'amount_too_large', 'Refund exceeds the unrefunded amount.');
      }
      const rows: RefundRow[] = await this.tx.query(
        `INSERT INTO simulated_refunds (id, idempotency_key, intent_id, amount, status, metadata, created_at)
         VALUES ($1, $2, $3, $4, 'succeeded', $5, $6) RETURNING *`,
        [
          `re_sim_${randomBytes(12).toString('hex')}`,
          input.idempotencyKey,
          input.intentId,
          input.amount,
          JSON.stringify({ refundId: input.refundId }),
          this.clock.now(),
        ],
      );
      return this.mapRefund(rows[0]);
    });
  }

  async listRefunds(intentId: string): Promise<GatewayRefund[]> {
    const rows: RefundRow[] = await this.tx.query(
      `SELECT * FROM simulated_refunds WHERE intent_id = $1 ORDER BY created_at DESC`,
      [intentId],
    );
    return rows.map((r) => this.mapRefund(r));
  }

  /** What a customer's payment app does: pay (or fail to pay) the intent. Guarded: settles once. */
  async settle(id: string, outcome: 'succeeded' | 'failed'): Promise<GatewayIntent | null> {
    const rows: Row[] = await this.tx.query(
      outcome === 'succeeded'
        ? `UPDATE simulated_payment_intents SET status = 'succeeded', last_error = NULL, updated_at = $2
            WHERE id = $1 AND status = 'requires_payment_method' RETURNING *`
        : `UPDATE simulated_payment_intents SET status = 'canceled', last_error = 'card_declined', updated_at = $2
            WHERE id = $1 AND status = 'requires_payment_method' RETURNING *`,
      [id, this.clock.now()],
    );
    return rows[0] ? this.map(rows[0]) : null;
  }

  private mapRefund(r: RefundRow): GatewayRefund {
    return {
      id: r.id,
      intentId: r.intent_id,
      amount: toSafeInt(r.amount),
      status: r.status,
      refundId: r.metadata.refundId,
    };
  }

  private map(r: Row): GatewayIntent {
    return {
      id: r.id,
      clientSecret: `${r.id}_secret_sim`,
      status: r.status,
      amount: toSafeInt(r.amount),
      currency: r.currency.trim(),
      orderId: r.order_id,
      lastError: r.last_error ?? undefined,
    };
  }
}
