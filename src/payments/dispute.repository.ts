import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import { DISPUTE_FINAL_SQL, PaymentDisputeEntity } from './entities/payment-dispute.entity';
import type { GatewayDispute } from './payment-gateway';

/** A dispute as the provider reports it, for one of our payments. */
export type ReportedDispute = GatewayDispute & { paymentId: string };

/** What recording a report did: the dispute's first report, or a change of its status. */
export interface RecordedDispute {
  first: boolean;
  status: string;
}

/** A dispute not final yet, due to be read from the provider again, with its payment's names. */
export interface DisputeToRecheck {
  id: string;
  paymentId: string;
  intentId: string;
  orderId: string;
}

/** The `payment_disputes` table: one row per provider dispute of a payment. */
@Injectable()
export class DisputeRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Records a report of the dispute, under the payment's row lock (FOR NO KEY UPDATE): a fulfil
   * takes that row FOR SHARE before it judges the disputes (OrderRepository#transition), so it
   * either runs first or sees this one. Null when the report changes nothing: the same status
   * again, or any status after a final one (it still counts as news: `checked_at`). Inside a
   * transaction only.
   */
  async record(d: ReportedDispute, at: Date): Promise<RecordedDispute | null> {
    return this.tx.withManager(async (m) => {
      await m.query(`SELECT 1 FROM payments WHERE id = $1 FOR NO KEY UPDATE`, [d.paymentId]);
      const rows = await m.query<RecordedDispute[]>(
        `INSERT INTO payment_disputes AS d
           (id, payment_id, status, amount, currency, reason, opened_at, updated_at, checked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7)
         ON CONFLICT (id) DO UPDATE
           SET status = EXCLUDED.status, amount = EXCLUDED.amount, reason = EXCLUDED.reason,
               updated_at = EXCLUDED.updated_at, checked_at = EXCLUDED.checked_at
         WHERE d.payment_id = EXCLUDED.payment_id AND d.status NOT IN ${DISPUTE_FINAL_SQL}
           AND d.status <> EXCLUDED.status
         RETURNING (xmax = 0) AS first, status`,
        [d.id, d.paymentId, d.status, d.amount, d.currency, d.reason, at],
      );
      if (rows[0]) return rows[0];
      await this.noteChecked(d.id, at);
      return null;
    });
  }

  /** The provider was asked about the dispute (or told us) at `at`: it goes to the back of the line. */
  async noteChecked(id: string, at: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m.getRepository(PaymentDisputeEntity).update({ id }, { checkedAt: at }),
    );
  }

  /** Disputes not final whose provider was last heard from before `before`, least recently first. */
  findToRecheck(before: Date, limit: number): Promise<DisputeToRecheck[]> {
    return this.tx.withManager((m) =>
      m
        .getRepository(PaymentDisputeEntity)
        .createQueryBuilder('d')
        .innerJoin('d.payment', 'p')
        .select(['d.id AS id', 'd.payment_id AS "paymentId"'])
        .addSelect(['p.intent_id AS "intentId"', 'p.order_id AS "orderId"'])
        .where(`d.status NOT IN ${DISPUTE_FINAL_SQL}`)
        .andWhere('d.checked_at < :before', { before })
        .orderBy('d.checked_at', 'ASC')
        .limit(limit)
        .getRawMany<DisputeToRecheck>(),
    );
  }
}
