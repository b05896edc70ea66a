import { Injectable } from '@nestjs/common';
import { EntityManager, FindOptionsWhere, LessThan } from 'typeorm';
import { TransactionHost } from '../database/transaction-host';
import { PaymentEntity } from './entities/payment.entity';
import { RefundEntity, RefundReason } from './entities/refund.entity';
import type { RefundStatus } from './payment-gateway';

export interface Refund {
  id: string;
  orderId: string;
  paymentId: string;
  amount: number;
  currency: string;
  status: RefundStatus;
  reason: RefundReason;
  /** What its caller asked for: the rest (true), an amount (false); null if nobody asked. */
  requestedRest: boolean | null;
  providerRefundId: string | null;
  failure: string | null;
  actor: string;
  /** The Idempotency-Key it was requested under (null: the system's, or made before the column). */
  requestKey: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface NewRefund {
  id: string;
  orderId: string;
  paymentId: string;
  currency: string;
  reason: RefundReason;
  actor: string;
  providerRefundId?: string;
  requestKey?: string;
}

const toRefund = (e: RefundEntity): Refund => ({
  id: e.id,
  orderId: e.orderId,
  paymentId: e.paymentId,
  amount: e.amount,
  currency: e.currency,
  status: e.status,
  reason: e.reason,
  requestedRest: e.requestedRest,
  providerRefundId: e.providerRefundId,
  failure: e.failure,
  requestKey: e.requestKey,
  actor: e.actor,
  createdAt: e.createdAt,
  updatedAt: e.updatedAt,
});

/**
 * How long after its last refund (or the last sync that found one) a payment's refunds are asked
 * of the provider again: a card refund can be failed by the customer's bank weeks after it was
 * reported succeeded.
 */
export const REFUND_WATCH_MS = 30 * 24 * 3600_000;

/**
 * Refunds and the payment's refund reservation. `payments.refund_reserved` (pending + succeeded
 * refunds) is raised under the payment row's lock by a guarded UPDATE, under a CHECK that it
 * never exceeds the captured amount: two concurrent refunds serialize on that row and the second
 * sees the first one's reservation.
 */
@Injectable()
export class RefundRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Reserves `amount` (or, when null, all that remains) of a succeeded payment and records the
   * refund — pending, or succeeded when it was made at the provider already (`providerRefundId`).
   * Null when nothing (or not that much) remains refundable. The payment row stays locked from
   * the read of what remains until the (caller's) transaction commits.
   */
  async reserve(r: NewRefund, amount: number | null, at: Date): Promise<Refund | null> {
    return this.inTransaction(async (m) => {
      const payment = await this.lockedPayment(m, r.paymentId);
      if (!payment || payment.status !== 'succeeded') return null;
      const want = amount ?? payment.amount - payment.refundReserved;
      if (want <= 0) return null;
      const reserved = await m
        .createQueryBuilder()
        .update(PaymentEntity)
        // a refund may still change at the provider for weeks: watched from now (REFUND_WATCH_MS)
        .set({
          refundReserved: () => 'refund_reserved + :want',
          updatedAt: at,
          refundsWatchedUntil: new Date(at.getTime() + REFUND_WATCH_MS),
          refundsCheckedAt: at,
        })
        .where('id = :id AND refund_reserved + :want <= amount', { id: r.paymentId, want })
        .execute();
      if (!reserved.affected) return null;
      const refund = m.getRepository(RefundEntity).create({
        id: r.id,
        orderId: r.orderId,
        paymentId: r.paymentId,
        amount: want,
        currency: r.currency,
        status: r.providerRefundId ? 'succeeded' : 'pending',
        reason: r.reason,
        requestedRest: r.reason === 'requested' ? amount === null : null,
        providerRefundId: r.providerRefundId ?? null,
        failure: null,
        actor: r.actor,
        requestKey: r.requestKey ?? null,
        createdAt: at,
        updatedAt: at,
      });
      await m.getRepository(RefundEntity).insert(refund);
      return toRefund(refund);
    });
  }

  /**
   * Locks the payment row for the rest of the caller's transaction: refunds that must be recorded
   * at most once (automatic, or seen at the provider) check for themselves under this lock.
   * Answers what the payment holds then: its status, captured amount and what is reserved for refunds.
   */
  async lockPayment(
    paymentId: string,
  ): Promise<{ status: PaymentEntity['status']; amount: number; refundReserved: number } | null> {
    const p = await this.inTransaction((m) => this.lockedPayment(m, paymentId));
    return p && { status: p.status, amount: p.amount, refundReserved: p.refundReserved };
  }

  /**
   * succeeded → failed, once: the provider reversed a refund it had reported as succeeded (the
   * bank returned it), so the customer has not been refunded and that amount is refundable again
   * (as it is at the provider): the reservation gives it back, as for a refund that failed while
   * pending. The refund as reversed, or null when it was no longer recorded as succeeded.
   */
  async reverse(id: string, failure: string, at: Date): Promise<Refund | null> {
    return this.inTransaction(async (m) => {
      const reversed = await m
        .createQueryBuilder()
        .update(RefundEntity)
        .set({ status: 'failed', failure, updatedAt: at })
        .where(`id = :id AND status = 'succeeded'`, { id })
        .execute();
      if (!reversed.affected) return null;
      const refund = await m.getRepository(RefundEntity).findOneByOrFail({ id });
      await this.addReserved(m, refund.paymentId, -refund.amount, at);
      return toRefund(refund);
    });
  }

  findByProviderId(providerRefundId: string): Promise<Refund | null> {
    return this.findOne({ providerRefundId });
  }

  findById(id: string): Promise<Refund | null> {
    return this.findOne({ id });
  }

  /** One of the payment's refunds still waiting for the provider's answer, if any. */
  findPending(paymentId: string): Promise<Refund | null> {
    return this.findOne({ paymentId, status: 'pending' });
  }

  /** The payment's failed refunds by `actor`. */
  findFailedBy(paymentId: string, actor: string): Promise<Refund[]> {
    return this.tx.withManager(async (m) =>
      (await m.getRepository(RefundEntity).findBy({ paymentId, actor, status: 'failed' })).map(
        toRefund,
      ),
    );
  }

  findAutomatic(paymentId: string): Promise<Refund | null> {
    return this.findOne({ paymentId, reason: 'paid_after_cancel' });
  }

  /** Pending refunds not touched since `before`: their provider call may never have happened. */
  async findStalePending(before: Date, limit = 100): Promise<Refund[]> {
    return this.tx.withManager(async (m) => {
      const found = await m.getRepository(RefundEntity).find({
        where: { status: 'pending', updatedAt: LessThan(before) },
        order: { updatedAt: 'ASC' },
        take: limit,
      });
      return found.map(toRefund);
    });
  }

  /**
   * pending → succeeded or failed, once (the guard on `pending` decides between concurrent
   * settlers); a failed refund gives its reservation back. The refund as settled, or null when
   * it was no longer pending.
   */
  async settle(
    id: string,
    to: 'succeeded' | 'failed',
    detail: { providerRefundId?: string; failure?: string },
    at: Date,
  ): Promise<Refund | null> {
    return this.inTransaction(async (m) => {
      const settled = await m
        .createQueryBuilder()
        .update(RefundEntity)
        .set({
          status: to,
          ...(detail.providerRefundId ? { providerRefundId: detail.providerRefundId } : {}),
          failure: detail.failure ?? null,
          updatedAt: at,
        })
        .where(`id = :id AND status = 'pending'`, { id })
        .execute();
      if (!settled.affected) return null;
      const refund = await m.getRepository(RefundEntity).findOneByOrFail({ id });
      if (to === 'failed') await this.addReserved(m, refund.paymentId, -refund.amount, at);
      return toRefund(refund);
    });
  }

  /**
   * Records the provider's id on a still-pending refund (its outcome is not known yet) and
   * marks it as just checked, so the stale-refund pass comes back to it later.
   */
  async attachProviderId(id: string, providerRefundId: string, at: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .update(RefundEntity)
        .set({
          providerRefundId: () => 'coalesce(provider_refund_id, :providerRefundId)',
          updatedAt: at,
        })
        .where(`id = :id AND status = 'pending'`, { id, providerRefundId })
        .execute(),
    );
  }

  /**
   * failed → succeeded: the provider did refund after all (we had classified an answer as a
   * refusal). Takes the amount back into the reservation; the CHECK still caps it at the capture.
   * Never one whose failure is among `final` (the provider's own: a list read before it
   * committed says succeeded, and is stale).
   */
  async reinstate(
    id: string,
    providerRefundId: string,
    final: string[],
    at: Date,
  ): Promise<Refund | null> {
    return this.inTransaction(async (m) => {
      const back = await m
        .createQueryBuilder()
        .update(RefundEntity)
        .set({ status: 'succeeded', providerRefundId, failure: null, updatedAt: at })
        .where(`id = :id AND status = 'failed' AND (failure IS NULL OR failure <> ALL(:final))`, {
          id,
          final,
        })
        .execute();
      if (!back.affected) return null;
      const refund = await m.getRepository(RefundEntity).findOneByOrFail({ id });
      await this.addReserved(m, refund.paymentId, refund.amount, at);
      return toRefund(refund);
    });
  }

  /** Marks a pending refund as just attempted (so the stale-refund retry waits its turn). */
  async touch(id: string, at: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m.getRepository(RefundEntity).update({ id, status: 'pending' }, { updatedAt: at }),
    );
  }

  private findOne(where: FindOptionsWhere<RefundEntity>): Promise<Refund | null> {
    return this.tx.withManager(async (m) => {
      const found = await m.getRepository(RefundEntity).findOneBy(where);
      return found ? toRefund(found) : null;
    });
  }

  private async lockedPayment(m: EntityManager, paymentId: string): Promise<PaymentEntity | null> {
    return m
      .getRepository(PaymentEntity)
      .createQueryBuilder('p')
      .setLock('pessimistic_write')
      .where('p.id = :paymentId', { paymentId })
      .getOne();
  }

  private async addReserved(
    m: EntityManager,
    paymentId: string,
    delta: number,
    at: Date,
  ): Promise<void> {
    await m
      .createQueryBuilder()
      .update(PaymentEntity)
      .set({ refundReserved: () => 'refund_reserved + :delta', updatedAt: at })
      .where('id = :paymentId', { paymentId, delta })
      .execute();
  }

  /** Statements that must commit together: in the caller's transaction, or one of their own. */
  private inTransaction<T>(work: (m: EntityManager) => Promise<T>): Promise<T> {
    return this.tx.run(() => this.tx.withManager(work));
  }
}
