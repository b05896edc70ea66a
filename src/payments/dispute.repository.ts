import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import {
  DISPUTE_AWAITING_SQL,
  DISPUTE_FINAL_SQL,
  PaymentDisputeEntity,
} from './entities/payment-dispute.entity';
import type { GatewayDispute } from './payment-gateway';

/**
 * A dispute as the provider reports it, for one of our payments, and when the provider was asked
 * (the database's clock, taken before the read).
 */
export type ReportedDispute = GatewayDispute & { paymentId: string; readAt: Date };

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

/** A dispute waiting for our answer whose evidence deadline is near, with its payment's names. */
export interface DisputeDeadline {
  id: string;
  status: string;
  evidenceDueBy: Date;
  intentId: string;
  orderId: string;
}

/**
 * The deadline a report carries (`reported`, SQL), if later than the one known: a provider moves a
 * deadline only later (an extension), and events come late and out of order — an old event's
 * deadline never replaces a newer one. A later deadline clears the reminder, so a person is
 * reminded of it too.
 */
const newDeadline = (reported: string) => `
  evidence_due_by = GREATEST(${reported}, d.evidence_due_by),
  reminded_at = CASE WHEN ${reported} > d.evidence_due_by THEN NULL ELSE d.reminded_at END`;

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
   *
   * Nor does a report read before the one its status comes from (`status_read_at`): two reads of
   * the provider at once — two events of the dispute handled together, or a run whose job lock
   * lapsed beside its rerun — may commit in either order, and the older one moved the dispute
   * back (under review → needs a response: a false "answer it or lose it"; a chargeback → an
   * inquiry under review: the escalation hidden until the next recheck, 6 h later). Ordered by
   * the reads, not by the statuses: the provider may ask for evidence again. A final status is
   * recorded whenever it was read: the provider never moves a dispute out of one.
   */
  async record(d: ReportedDispute, at: Date): Promise<RecordedDispute | null> {
    return this.tx.withManager(async (m) => {
      await m.query(`SELECT 1 FROM payments WHERE id = $1 FOR NO KEY UPDATE`, [d.paymentId]);
      const rows = await m.query<RecordedDispute[]>(
        `INSERT INTO payment_disputes AS d (id, payment_id, status, amount, currency, reason,
           evidence_due_by, opened_at, updated_at, checked_at, status_read_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8, $9)
         ON CONFLICT (id) DO UPDATE
           SET status = EXCLUDED.status, amount = EXCLUDED.amount, reason = EXCLUDED.reason,
               ${newDeadline('EXCLUDED.evidence_due_by')},
               updated_at = EXCLUDED.updated_at, checked_at = EXCLUDED.checked_at,
               status_read_at = EXCLUDED.status_read_at
         WHERE d.payment_id = EXCLUDED.payment_id AND d.status NOT IN ${DISPUTE_FINAL_SQL}
           AND d.status <> EXCLUDED.status
           AND (d.status_read_at IS NULL OR d.status_read_at <= EXCLUDED.status_read_at
                OR EXCLUDED.status IN ${DISPUTE_FINAL_SQL})
         RETURNING (xmax = 0) AS first, status`,
        [
          d.id,
          d.paymentId,
          d.status,
          d.amount,
          d.currency,
          d.reason,
          d.evidenceDueBy,
          at,
          d.readAt,
        ],
      );
      if (rows[0]) return rows[0];
      await this.noteChecked(d.id, at, d.evidenceDueBy, d);
      return null;
    });
  }

  /** Whether the dispute is recorded (for any payment). */
  exists(id: string): Promise<boolean> {
    return this.tx.withManager((m) => m.getRepository(PaymentDisputeEntity).existsBy({ id }));
  }

  /**
   * The provider was asked about the dispute (or told us) at `at`: it goes to the back of the
   * line; with the evidence deadline it reported, if any (a new one is reminded of again). A
   * `report` of the recorded status, for the recorded payment, read later than the one it came
   * from, is now the one it comes from: a read of another status from before it is older.
   */
  async noteChecked(
    id: string,
    at: Date,
    evidenceDueBy: Date | null = null,
    report?: Pick<ReportedDispute, 'status' | 'paymentId' | 'readAt'>,
  ): Promise<void> {
    await this.tx.withManager((m) =>
      m.query(
        `UPDATE payment_disputes AS d
            SET checked_at = $2, ${newDeadline('$3::timestamptz')},
                status_read_at = CASE WHEN d.status = $5 AND d.payment_id = $6
                                      THEN GREATEST(d.status_read_at, $4::timestamptz)
                                      ELSE d.status_read_at END
          WHERE id = $1`,
        [
          id,
          at,
          evidenceDueBy,
          report?.readAt ?? null,
          report?.status ?? null,
          report?.paymentId ?? null,
        ],
      ),
    );
  }

  /**
   * Claims (marks reminded at `at`) up to `limit` disputes still waiting for our answer whose
   * evidence deadline is before `dueBefore` and that no one was reminded of yet: each is
   * reminded of once, by whichever reconciliation claims it.
   */
  claimDeadlinesNear(dueBefore: Date, at: Date, limit: number): Promise<DisputeDeadline[]> {
    return this.tx.withManager(async (m) => {
      const [rows] = await m.query<[DisputeDeadline[], number]>(
        `UPDATE payment_disputes AS d SET reminded_at = $2
           FROM payments p
          WHERE p.id = d.payment_id AND d.id IN (
                  SELECT id FROM payment_disputes
                   WHERE status IN ${DISPUTE_AWAITING_SQL} AND reminded_at IS NULL
                     AND evidence_due_by < $1
                   ORDER BY evidence_due_by LIMIT $3
                     FOR UPDATE SKIP LOCKED)
          RETURNING d.id, d.status, d.evidence_due_by AS "evidenceDueBy",
                    p.intent_id AS "intentId", p.order_id AS "orderId"`,
        [dueBefore, at, limit],
      );
      return rows;
    });
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
