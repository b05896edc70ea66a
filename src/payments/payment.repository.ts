import { Injectable } from '@nestjs/common';
import { EntityManager, FindOptionsWhere } from 'typeorm';
import { TransactionHost } from '../database/transaction-host';
import type { OrderStatus } from '../orders/order-state-machine';
import { OrderRepository } from '../orders/order.repository';
import { PaymentEntity } from './entities/payment.entity';
import type { GatewayIntent, IntentStatus } from './payment-gateway';

export interface Payment {
  id: string;
  orderId: string;
  provider: 'stripe' | 'simulated';
  intentId: string;
  clientSecret: string;
  amount: number;
  currency: string;
  status: IntentStatus;
}

/** Intent statuses a payment never leaves once recorded. */
const FINAL_STATUSES: IntentStatus[] = ['succeeded', 'canceled'];

const toPayment = (e: PaymentEntity): Payment => ({
  id: e.id,
  orderId: e.orderId,
  provider: e.provider,
  intentId: e.intentId,
  clientSecret: e.clientSecret,
  amount: e.amount,
  currency: e.currency,
  status: e.status,
});

/** Payments: one per order, the provider's intent as last seen. */
@Injectable()
export class PaymentRepository {
  constructor(
    private readonly tx: TransactionHost,
    private readonly orders: OrderRepository,
  ) {}

  private find(where: FindOptionsWhere<PaymentEntity>): Promise<Payment | null> {
    return this.tx.withManager(async (m) => {
      const found = await m.getRepository(PaymentEntity).findOneBy(where);
      return found ? toPayment(found) : null;
    });
  }

  findByOrder(orderId: string): Promise<Payment | null> {
    return this.find({ orderId });
  }

  findById(id: string): Promise<Payment | null> {
    return this.find({ id });
  }

  findByIntent(intentId: string): Promise<Payment | null> {
    return this.find({ intentId });
  }

  /**
   * Records the gateway's intent as the order's payment unless the order has one already
   * (payments_one_per_order decides, also between a payment call and a webhook adopting the same
   * intent: the second insert does nothing); returns the payment that stands.
   */
  async recordIntent(
    id: string,
    provider: Payment['provider'],
    intent: GatewayIntent,
    at: Date,
  ): Promise<Payment> {
    return this.tx.withManager(async (m: EntityManager) => {
      await m
        .createQueryBuilder()
        .insert()
        .into(PaymentEntity)
        .values({
          id,
          orderId: intent.orderId,
          provider,
          intentId: intent.id,
          clientSecret: intent.clientSecret,
          amount: intent.amount,
          currency: intent.currency,
          status: intent.status,
          createdAt: at,
          updatedAt: at,
        })
        .orIgnore()
        .execute();
      const standing = await m.getRepository(PaymentEntity).findOneBy({ orderId: intent.orderId });
      if (!standing)
        throw new Error(`payment of order ${intent.orderId} neither inserted nor found`);
      return toPayment(standing);
    });
  }

  /**
   * Payments of orders still PAYMENT_PENDING whose row has not changed since `before`, oldest
   * first — one statement; which orders are pending is OrderRepository's subquery.
   */
  findStalePending(before: Date, limit = 100): Promise<Payment[]> {
    return this.unchangedSince(before, limit, ['PAYMENT_PENDING']);
  }

  /**
   * Payments still open at the gateway (neither succeeded nor canceled) of CANCELLED orders,
   * unchanged since `before`, oldest first: their intent-cancel job gave up or was lost, so the
   * intent may still be paid.
   */
  findOpenOfCancelled(before: Date, limit = 100): Promise<Payment[]> {
    return this.unchangedSince(before, limit, ['CANCELLED'], { openOnly: true });
  }

  /**
   * Succeeded payments whose refunds are watched at `now` (`refunds_watched_until` ahead of it:
   * payments_refunds_watched) and not asked about since `checkedBefore`, least recently asked first.
   */
  findRefundsToRecheck(now: Date, checkedBefore: Date, limit: number): Promise<Payment[]> {
    return this.tx.withManager(async (m) => {
      const found = await m
        .getRepository(PaymentEntity)
        .createQueryBuilder('p')
        .where('p.refundsWatchedUntil > :now', { now })
        .andWhere('p.status = :succeeded', { succeeded: 'succeeded' satisfies IntentStatus })
        .andWhere('(p.refundsCheckedAt IS NULL OR p.refundsCheckedAt < :checkedBefore)', {
          checkedBefore,
        })
        .orderBy('p.refundsCheckedAt', 'ASC', 'NULLS FIRST')
        .limit(limit)
        .getMany();
      return found.map(toPayment);
    });
  }

  /**
   * The provider was asked about the payment's refunds at `at`; `watchUntil` extends how long
   * they are watched (never shortens it). Touches nothing else (not `updated_at`, the sweeps' order).
   */
  async noteRefundsChecked(paymentId: string, at: Date, watchUntil?: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .update(PaymentEntity)
        .set({
          refundsCheckedAt: at,
          ...(watchUntil
            ? {
                refundsWatchedUntil: () =>
                  'GREATEST(refunds_watched_until, CAST(:watchUntil AS timestamptz))',
              }
            : {}),
        })
        .where('id = :paymentId', { paymentId, watchUntil })
        .execute(),
    );
  }

  /** The database's clock: what a list read from the provider is stamped with (noteProviderPending). */
  databaseNow(): Promise<Date> {
    return this.tx.databaseNow();
  }

  /**
   * What refunds made at the provider and still pending there would return, as a list read at
   * `listedAt` (the database's clock, databaseNow: one clock for the API and the workers, whose
   * own may differ) says — written only over a figure from a list read no later (two syncs at once
   * finish in any order: the older list must not undo the newer).
   */
  async noteProviderPending(paymentId: string, listedAt: Date, pending: number): Promise<void> {
    await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .update(PaymentEntity)
        .set({ providerRefundsPending: pending, providerRefundsListedAt: listedAt })
        .where('id = :paymentId', { paymentId })
        .andWhere(
          '(provider_refunds_listed_at IS NULL OR provider_refunds_listed_at <= :listedAt)',
          { listedAt },
        )
        .execute(),
    );
  }

  /** Payments of orders in `orderStatuses` (optionally only those not final) unchanged since `before`. */
  private unchangedSince(
    before: Date,
    limit: number,
    orderStatuses: OrderStatus[],
    opts: { openOnly?: boolean } = {},
  ): Promise<Payment[]> {
    return this.tx.withManager(async (m) => {
      const orders = this.orders.idsInStatusQuery(m, orderStatuses);
      const query = m
        .getRepository(PaymentEntity)
        .createQueryBuilder('p')
        .where(`p.order_id IN (${orders.getQuery()})`)
        .andWhere('p.updatedAt < :before', { before })
        .setParameters(orders.getParameters());
      if (opts.openOnly) query.andWhere('p.status NOT IN (:...final)', { final: FINAL_STATUSES });
      const found = await query.orderBy('p.updatedAt', 'ASC').limit(limit).getMany();
      return found.map(toPayment);
    });
  }

  /**
   * Records the intent's status as last seen. Never out of a final state: a worker that read
   * `processing` just before another one saw `succeeded` cannot write it back.
   */
  /**
   * What the provider really took, when it differs from what the intent was made for (changed at
   * the provider): refunds are sized, and capped by the CHECK, from it.
   */
  async setCaptured(id: string, amount: number, currency: string, at: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m.getRepository(PaymentEntity).update({ id }, { amount, currency, updatedAt: at }),
    );
  }

  /**
   * The provider's status as the payment's, unless ours is final already — but for a success over
   * a `canceled` we only assumed (an intent the provider did not know for a day past the order's
   * deadline, PaymentFinalizer#cancelIntentOf: a wrong key deployed): the provider's word wins, so
   * the cancelled order's payment is refunded (a refund is reserved only of a succeeded payment)
   * rather than kept with a warning. A cancelled intent never succeeds at the provider, so no
   * other `canceled` is ever overwritten.
   */
  async setStatus(id: string, status: IntentStatus, at: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .update(PaymentEntity)
        .set({ status, updatedAt: at })
        .where(
          `id = :id AND (status NOT IN (:...final) OR status = :status
                         OR (status = 'canceled' AND :status = 'succeeded'))`,
          { id, status, final: FINAL_STATUSES },
        )
        .execute(),
    );
  }
}
