import { Check, Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import type { Relation } from 'typeorm';
import { BIGINT_NUMBER, CURRENCY_CODE } from '../../database/column-transformers';
import { OrderEntity } from '../../orders/entities/order.entity';
import type { RefundStatus } from '../payment-gateway';
import { PaymentEntity } from './payment.entity';

export type RefundReason = 'requested' | 'paid_after_cancel' | 'external';

/**
 * The `refunds` table (migrations …-Refunds.ts): every refund of a payment, ours or made at the
 * provider. At most one automatic refund (`paid_after_cancel`) per payment; pending ones are
 * found by the stale-refund sweep through `refunds_pending`.
 */
@Entity('refunds')
@Index('refunds_provider_id', ['providerRefundId'], { unique: true })
@Index('refunds_by_order', ['orderId'])
@Index('refunds_by_payment', ['paymentId'])
@Index('refunds_pending', ['updatedAt'], { where: `status = 'pending'` })
@Index('refunds_one_automatic_per_payment', ['paymentId'], {
  unique: true,
  where: `reason = 'paid_after_cancel'`,
})
@Check('refunds_amount_check', `amount > 0`)
@Check('refunds_status_check', `status IN ('pending', 'succeeded', 'failed')`)
@Check('refunds_reason_check', `reason IN ('requested', 'paid_after_cancel', 'external')`)
export class RefundEntity {
  @PrimaryColumn('uuid', { primaryKeyConstraintName: 'refunds_pkey' })
  id!: string;

  @Column('uuid', { name: 'order_id' })
  orderId!: string;

  @ManyToOne(() => OrderEntity, { nullable: false })
  @JoinColumn({ name: 'order_id', foreignKeyConstraintName: 'refunds_order_id_fkey' })
  order?: OrderEntity;

  @Column('uuid', { name: 'payment_id' })
  paymentId!: string;

  /** Its payment's, with the order and the currency (…-RefundsOfTheirPayment.ts). */
  @ManyToOne(() => PaymentEntity, (payment) => payment.refunds, { nullable: false })
  @JoinColumn([
    {
      name: 'payment_id',
      referencedColumnName: 'id',
      foreignKeyConstraintName: 'refunds_of_their_payment',
    },
    { name: 'order_id', referencedColumnName: 'orderId' },
    { name: 'currency', referencedColumnName: 'currency' },
  ])
  payment?: Relation<PaymentEntity>;

  @Column('bigint', { transformer: BIGINT_NUMBER })
  amount!: number;

  @Column('char', { length: 3, transformer: CURRENCY_CODE })
  currency!: string;

  @Column('text')
  status!: RefundStatus;

  @Column('text')
  reason!: RefundReason;

  @Column('text', { name: 'provider_refund_id', nullable: true })
  providerRefundId!: string | null;

  /** The provider's refusal code (or `failed_at_provider`) of a failed refund. */
  @Column('text', { nullable: true })
  failure!: string | null;

  /**
   * A requested refund's ask: the rest of the payment (true) or an amount (false); null where
   * nobody asked (migration …-RefundRequestedRest marked the earlier ones).
   */
  @Column('boolean', { name: 'requested_rest', nullable: true })
  requestedRest!: boolean | null;

  /** `user:<id>`, `system:payments` or `system:provider`. */
  @Column('text')
  actor!: string;

  /**
   * The Idempotency-Key a requested refund was made under; null when made by the system, or by a
   * build before the column (migration …-RefundRequestKey: those attempts' old names are followed).
   */
  @Column('text', { name: 'request_key', nullable: true })
  requestKey!: string | null;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;

  @Column('timestamptz', { name: 'updated_at' })
  updatedAt!: Date;
}
