import { Check, Column, Entity, JoinColumn, ManyToOne, PrimaryColumn, Unique } from 'typeorm';
import { BIGINT_NUMBER } from '../../database/column-transformers';
import { SimulatedPaymentIntentEntity } from './simulated-payment-intent.entity';

/** The `simulated_refunds` table (migrations …-Refunds.ts): the development gateway's refunds. */
@Entity('simulated_refunds')
@Unique('simulated_refunds_idempotency_key_key', ['idempotencyKey'])
@Check('simulated_refunds_amount_check', `amount > 0`)
@Check('simulated_refunds_status_check', `status IN ('succeeded', 'failed')`)
export class SimulatedRefundEntity {
  /** `re_sim_…` */
  @PrimaryColumn('text', { primaryKeyConstraintName: 'simulated_refunds_pkey' })
  id!: string;

  @Column('text', { name: 'idempotency_key' })
  idempotencyKey!: string;

  @Column('text', { name: 'intent_id' })
  intentId!: string;

  @ManyToOne(() => SimulatedPaymentIntentEntity, { nullable: false })
  @JoinColumn({ name: 'intent_id', foreignKeyConstraintName: 'simulated_refunds_intent_id_fkey' })
  intent?: SimulatedPaymentIntentEntity;

  @Column('bigint', { transformer: BIGINT_NUMBER })
  amount!: number;

  @Column('text')
  status!: 'succeeded' | 'failed';

  /** Stripe-like metadata: `refundId` names our refund. */
  @Column('jsonb', { default: {} })
  metadata!: { refundId?: string };

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;
}
