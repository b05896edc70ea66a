import { Injectable } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { EntityManager } from 'typeorm';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { SimulatedPaymentIntentEntity } from './entities/simulated-payment-intent.entity';
import { SimulatedRefundEntity } from './entities/simulated-refund.entity';
import { ShopIdentity } from './shop-identity';
import {
  DisputeOfIntent,
  GatewayError,
  GatewayIntent,
  GatewayRefund,
  ListedDispute,
  ListedIntent,
  ListedRefund,
  MadeBetween,
  NewIntent,
  Page,
  PageRequest,
  PaymentGateway,
} from './payment-gateway';

/**
 * The development gateway (when STRIPE_SECRET_KEY is absent): keeps intents in PostgreSQL and
 * behaves like Stripe for what we use — idempotent creation, retrieve, cancel, settle, refunds
 * that can never exceed the captured amount. Its intents live in this shop's own database: each
 * is this shop's (`shop`, ShopIdentity).
 */
@Injectable()
export class SimulatedGateway implements PaymentGateway {
  readonly provider = 'simulated' as const;

  constructor(
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly shop: ShopIdentity,
  ) {}

  async createIntent(input: NewIntent): Promise<GatewayIntent> {
    const now = this.clock.now();
    const shop = await this.shop.id();
    return this.tx.withManager(async (m) => {
      // the idempotency key's unique constraint decides: a repeat inserts nothing, finds the first
      await m
        .createQueryBuilder()
        .insert()
        .into(SimulatedPaymentIntentEntity)
        .values({
          id: `pi_sim_${randomBytes(12).toString('hex')}`,
          idempotencyKey: input.idempotencyKey,
          orderId: input.orderId,
          amount: input.amount,
          currency: input.currency,
          status: 'requires_payment_method',
          createdAt: now,
          updatedAt: now,
        })
        .orIgnore()
        .execute();
      return this.map(
        await intents(m).findOneByOrFail({ idempotencyKey: input.idempotencyKey }),
        shop,
      );
    });
  }

  async retrieveIntent(id: string): Promise<GatewayIntent> {
    const shop = await this.shop.id();
    const intent = await this.tx.withManager((m) => intents(m).findOneBy({ id }));
    // as Stripe answers an id it does not know (404 resource_missing): a refusal, so an event
    // about it is "not ours" and done with — a plain Error had it retried by every sweep for good
    if (!intent)
      throw new GatewayError('rejected', 'resource_missing', `no such simulated intent ${id}`);
    return this.map(intent, shop);
  }

  async cancelIntent(id: string): Promise<GatewayIntent> {
    await this.tx.withManager((m) =>
      intents(m).update(
        { id, status: 'requires_payment_method' },
        { status: 'canceled', updatedAt: this.clock.now() },
      ),
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
    return this.tx.run(() =>
      this.tx.withManager(async (m) => {
        const intent = await intents(m)
          .createQueryBuilder('i')
          .setLock('pessimistic_write')
          .where('i.id = :id', { id: input.intentId })
          .getOne();
        const replay = await refunds(m).findOneBy({ idempotencyKey: input.idempotencyKey });
        if (replay) return this.mapRefund(replay);
        if (!intent || intent.status !== 'succeeded') {
          throw new GatewayError(
            'rejected',
            'charge_not_refundable',
            'The intent has no successful charge.',
          );
        }
        const refunded =
          (await refunds(m).sum('amount', { intentId: input.intentId, status: 'succeeded' })) ?? 0;
        if (refunded + input.amount > intent.amount) {
          throw new GatewayError(
            'rejected',
            'amount_too_large',
            'Refund exceeds the unrefunded amount.',
          );
        }
        const refund = refunds(m).create({
          id: `re_sim_${randomBytes(12).toString('hex')}`,
          idempotencyKey: input.idempotencyKey,
          intentId: input.intentId,
          amount: input.amount,
          status: 'succeeded',
          metadata: { refundId: input.refundId },
          createdAt: this.clock.now(),
        });
        await refunds(m).insert(refund);
        return this.mapRefund(refund);
      }),
    );
  }

  /** The simulated provider has no disputes (no card network to raise one). */
  retrieveDispute(id: string): Promise<DisputeOfIntent> {
    return Promise.reject(
      new GatewayError('rejected', 'resource_missing', `no such simulated dispute ${id}`),
    );
  }

  async listRefunds(intentId: string): Promise<GatewayRefund[]> {
    const found = await this.tx.withManager((m) =>
      refunds(m).find({ where: { intentId }, order: { createdAt: 'DESC' } }),
    );
    return found.map((r) => this.mapRefund(r));
  }

  /**
   * Its intents made within `made`, newest first (it keeps them in the database: restored with
   * it); paid when it settled them (`updated_at`).
   */
  async listIntentsMade(made: MadeBetween, page: PageRequest): Promise<Page<ListedIntent>> {
    const shop = await this.shop.id();
    const found = await this.tx.withManager(async (m) =>
      pageAfter(m, SimulatedPaymentIntentEntity, made, page),
    );
    return {
      items: found.items.map((r) => ({
        ...this.map(r, shop),
        providerStatus: r.status,
        createdAt: r.createdAt,
        paidAt: r.status === 'succeeded' ? r.updatedAt : null,
      })),
      next: found.next,
    };
  }

  async listRefundsMade(made: MadeBetween, page: PageRequest): Promise<Page<ListedRefund>> {
    const found = await this.tx.withManager(async (m) =>
      pageAfter(m, SimulatedRefundEntity, made, page),
    );
    return {
      items: found.items.map((r) => ({
        ...this.mapRefund(r),
        currency: null,
        createdAt: r.createdAt,
      })),
      next: found.next,
    };
  }

  /** None: the simulated provider has no disputes. */
  listDisputesMade(): Promise<Page<ListedDispute>> {
    return Promise.resolve({ items: [], next: null });
  }

  /** What a customer's payment app does: pay (or fail to pay) the intent. Guarded: settles once. */
  async settle(id: string, outcome: 'succeeded' | 'failed'): Promise<GatewayIntent | null> {
    const shop = await this.shop.id();
    return this.tx.withManager(async (m) => {
      const settled = await intents(m).update(
        { id, status: 'requires_payment_method' },
        outcome === 'succeeded'
          ? { status: 'succeeded', lastError: null, updatedAt: this.clock.now() }
          : { status: 'canceled', lastError: 'card_declined', updatedAt: this.clock.now() },
      );
      return settled.affected ? this.map(await intents(m).findOneByOrFail({ id }), shop) : null;
    });
  }

  private mapRefund(r: SimulatedRefundEntity): GatewayRefund {
    return {
      id: r.id,
      intentId: r.intentId,
      amount: r.amount,
      status: r.status,
      refundId: r.metadata.refundId,
    };
  }

  private map(r: SimulatedPaymentIntentEntity, shop: string): GatewayIntent {
    return {
      id: r.id,
      clientSecret: `${r.id}_secret_sim`,
      status: r.status,
      amount: r.amount,
      currency: r.currency,
      orderId: r.orderId,
      shop,
      lastError: r.lastError ?? undefined,
    };
  }
}

const intents = (m: EntityManager) => m.getRepository(SimulatedPaymentIntentEntity);

/**
 * A page of simulated intents or refunds made within `made`, newest first (ties by id), as Stripe
 * pages its lists: after the row `page.after` names — one it does not have is refused as Stripe
 * refuses a cursor it does not know.
 */
async function pageAfter<E extends SimulatedPaymentIntentEntity | SimulatedRefundEntity>(
  m: EntityManager,
  entity: new () => E,
  made: MadeBetween,
  page: PageRequest,
): Promise<Page<E>> {
  const q = m
    .getRepository(entity)
    .createQueryBuilder('o')
    .where('o.created_at >= :from', { from: made.from })
    .orderBy('o.created_at', 'DESC')
    .addOrderBy('o.id', 'DESC')
    .take(page.limit + 1);
  if (made.before) q.andWhere('o.created_at < :before', { before: made.before });
  if (page.after !== undefined) {
    const cursor = await m
      .getRepository(entity)
      .createQueryBuilder('c')
      .select('c.created_at', 'at')
      .where('c.id = :id', { id: page.after })
      .getRawOne<{ at: Date }>();
    if (!cursor)
      throw new GatewayError('rejected', 'resource_missing', `no such object ${page.after}`);
    q.andWhere('(o.created_at, o.id) < (:at, :after)', { at: cursor.at, after: page.after });
  }
  const rows = await q.getMany();
  return {
    items: rows.slice(0, page.limit),
    next: rows.length > page.limit ? rows[page.limit - 1].id : null,
  };
}
const refunds = (m: EntityManager) => m.getRepository(SimulatedRefundEntity);
