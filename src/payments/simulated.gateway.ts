import { Injectable } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { toSafeInt } from '../orders/order.model';
import { GatewayIntent, IntentStatus, PaymentGateway } from './payment-gateway';

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
 * behaves like Stripe for what we use — idempotent creation, retrieve, settle.
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
