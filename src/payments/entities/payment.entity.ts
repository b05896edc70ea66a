import {
  Check,
  Column,
  Entity,
  Index,
  JoinColumn,
  ManyToOne,
  OneToMany,
  PrimaryColumn,
} from 'typeorm';
import type { Relation } from 'typeorm';
import { BIGINT_NUMBER, CURRENCY_CODE } from '../../database/column-transformers';
import { OrderEntity } from '../../orders/entities/order.entity';
import type { IntentStatus } from '../payment-gateway';
import { RefundEntity } from './refund.entity';

/**
 * The `payments` table (migrations …-Payments.ts, …-Refunds.ts): one payment (the provider's
 * intent) per order. `refundReserved` counts every pending or succeeded refund; the CHECKs keep
 * it within the captured amount, which is what makes concurrent refunds safe, and a deferred
 * constraint trigger keeps it the sum of those refunds (…-RefundsOfTheirPayment.ts). The unique
 * index on (id, order, currency) is what a refund's foreign key names: a refund is of its
 * payment's order, in its currency.
 */
@Entity('payments')
@Index('payments_one_per_order', ['orderId'], { unique: true })
@Index('payments_intent_key', ['intentId'], { unique: true })
@Index('payments_open_by_updated', ['updatedAt'], {
  where: `status NOT IN ('succeeded', 'canceled')`,
})
@Index('payments_refunds_watched', ['refundsWatchedUntil'], {
  where: 'refunds_watched_until IS NOT NULL',
})
@Index('payments_id_order_currency', ['id', 'orderId', 'currency'], { unique: true })
@Check('payments_provider_check', `provider IN ('stripe', 'simulated')`)
@Check('payments_amount_check', `amount >= 0`)
@Check('payments_refund_reserved_non_negative', `refund_reserved >= 0`)
@Check('payments_refunds_within_amount', `refund_reserved <= amount`)
@Check('payments_provider_refunds_pending_non_negative', `provider_refunds_pending >= 0`)
export class PaymentEntity {
  @PrimaryColumn('uuid', { primaryKeyConstraintName: 'payments_pkey' })
  id!: string;

  @Column('uuid', { name: 'order_id' })
  orderId!: string;

  @ManyToOne(() => OrderEntity, { nullable: false })
  @JoinColumn({ name: 'order_id', foreignKeyConstraintName: 'payments_order_id_fkey' })
  order?: OrderEntity;

  @Column('text')
  provider!: 'stripe' | 'simulated';

  @Column('text', { name: 'intent_id' })
  intentId!: string;

  @Column('text', { name: 'client_secret' })
  clientSecret!: string;

  @Column('bigint', { transformer: BIGINT_NUMBER })
  amount!: number;

  @Column('char', { length: 3, transformer: CURRENCY_CODE })
  currency!: string;

  /** The provider's intent status as last seen. */
  @Column('text')
  status!: IntentStatus;

  @Column('bigint', { name: 'refund_reserved', default: 0, transformer: BIGINT_NUMBER })
  refundReserved!: number;

  /**
   * Until when the reconciliation asks the provider about this payment's refunds (a refund can be
   * failed, or a dashboard one settle, days after its event): set by every refund and every sync
   * that finds one (migrations …-RefundWatch.ts).
   */
  @Column('timestamptz', { name: 'refunds_watched_until', nullable: true })
  refundsWatchedUntil!: Date | null;

  /**
   * What refunds made at the provider, not by us, and still pending there would return (a
   * dashboard refund the bank has not settled: recorded only once it succeeds), as of the last
   * sync; fulfilment counts it with our pending ones (migrations …-ProviderRefundsPending.ts).
   */
  @Column('bigint', { name: 'provider_refunds_pending', default: 0, transformer: BIGINT_NUMBER })
  providerRefundsPending!: number;

  /** When the refund list behind `providerRefundsPending` was read (…-ProviderRefundsListedAt.ts). */
  @Column('timestamptz', { name: 'provider_refunds_listed_at', nullable: true })
  providerRefundsListedAt!: Date | null;

  /** When the provider was last asked about this payment's refunds. */
  @Column('timestamptz', { name: 'refunds_checked_at', nullable: true })
  refundsCheckedAt!: Date | null;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;

  @Column('timestamptz', { name: 'updated_at' })
  updatedAt!: Date;

  // Relation<>: no design-time type reference, which the refunds <-> payments import cycle forbids
  @OneToMany(() => RefundEntity, (refund) => refund.payment)
  refunds?: Relation<RefundEntity>[];
}
