import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';
import type { PaymentSummary } from '../orders/order.model';
import { DISPUTE_RELEASED, PaymentDisputeEntity } from './entities/payment-dispute.entity';
import { PaymentEntity } from './entities/payment.entity';
import { RefundEntity } from './entities/refund.entity';
import type { RefundStatus } from './payment-gateway';

/** A dispute of a payment, as an admin's view of its order shows it. */
export interface DisputeSummary {
  disputeId: string;
  status: string;
  amount: { amount: number; currency: string };
  reason: string | null;
  evidenceDueBy: string | null;
  openedAt: string;
  updatedAt: string;
}

/** What a refund the provider failed after reporting it succeeded is recorded as failing with. */
export const REVERSED_AT_PROVIDER = 'reversed_at_provider';

/** What a refund email needs from the refund. */
export interface RefundForEmail {
  id: string;
  orderId: string;
  amount: number;
  currency: string;
  status: RefundStatus;
  failure: string | null;
}

/**
 * What other features read of payments and refunds (the order's detail, the refund email),
 * answered by the payments side that owns those tables. Read-only, and free of the payments
 * module's dependencies (its own module, PaymentReaderModule), so that orders — which payments
 * depends on — can use it too.
 */
@Injectable()
export class PaymentReader {
  constructor(private readonly tx: TransactionHost) {}

  /** The order's payment and its refunds (oldest first); null before a payment started. */
  async summaryOf(orderId: string): Promise<PaymentSummary | null> {
    // one statement (payment LEFT JOIN refunds); the payment is unique per order
    const payment = await this.tx.withManager((m) =>
      m
        .getRepository(PaymentEntity)
        .createQueryBuilder('p')
        .leftJoinAndSelect('p.refunds', 'r')
        .where('p.orderId = :orderId', { orderId })
        .orderBy('r.createdAt', 'ASC')
        .addOrderBy('r.id', 'ASC')
        .getOne(),
    );
    if (!payment) return null;
    const refunds = (payment.refunds ?? []).map((r) => ({
      id: r.id,
      amount: r.amount,
      status: r.status,
      reason: r.reason,
      createdAt: r.createdAt,
    }));
    return {
      provider: payment.provider,
      paymentIntentId: payment.intentId,
      status: payment.status,
      amount: payment.amount,
      currency: payment.currency,
      refundedAmount: refunds
        .filter((r) => r.status === 'succeeded')
        .reduce((sum, r) => sum + r.amount, 0),
      refunds,
    };
  }

  /** The status of the latest dispute of the order's payment that holds its fulfilment (open or lost), if any. */
  async holdingDispute(orderId: string): Promise<string | null> {
    const holding = (await this.disputesOf(orderId)).filter(
      (d) => !DISPUTE_RELEASED.includes(d.status),
    );
    return holding.at(-1)?.status ?? null;
  }

  /** The disputes of the order's payment, oldest first (an admin's view of the order). */
  async disputesOf(orderId: string): Promise<DisputeSummary[]> {
    const rows = await this.tx.withManager((m) =>
      m
        .getRepository(PaymentDisputeEntity)
        .createQueryBuilder('d')
        .innerJoin(PaymentEntity, 'p', 'p.id = d.paymentId')
        .where('p.orderId = :orderId', { orderId })
        .orderBy('d.openedAt', 'ASC')
        .addOrderBy('d.id', 'ASC')
        .getMany(),
    );
    return rows.map((d) => ({
      disputeId: d.id,
      status: d.status,
      amount: { amount: d.amount, currency: d.currency },
      reason: d.reason,
      evidenceDueBy: d.evidenceDueBy?.toISOString() ?? null,
      openedAt: d.openedAt.toISOString(),
      updatedAt: d.updatedAt.toISOString(),
    }));
  }

  async findRefund(refundId: string): Promise<RefundForEmail | null> {
    return this.tx.withManager((m) =>
      m.getRepository(RefundEntity).findOne({
        select: {
          id: true,
          orderId: true,
          amount: true,
          currency: true,
          status: true,
          failure: true,
        },
        where: { id: refundId },
      }),
    );
  }
}
