import { Check, Column, Entity, PrimaryColumn, Unique } from 'typeorm';
import { BIGINT_NUMBER, CURRENCY_CODE } from '../../database/column-transformers';

/**
 * The `simulated_payment_intents` table (migrations …-Payments.ts): the development gateway's
 * own intents, standing in for Stripe's (no foreign key to orders, as Stripe has none).
 */
@Entity('simulated_payment_intents')
@Unique('simulated_payment_intents_idempotency_key_key', ['idempotencyKey'])
@Check(
  'simulated_payment_intents_status_check',
  `status IN ('requires_payment_method', 'succeeded', 'canceled')`,
)
export class SimulatedPaymentIntentEntity {
  /** `pi_sim_…` */
  @PrimaryColumn('text', { primaryKeyConstraintName: 'simulated_payment_intents_pkey' })
  id!: string;

  @Column('text', { name: 'idempotency_key' })
  idempotencyKey!: string;

  @Column('uuid', { name: 'order_id' })
  orderId!: string;

  @Column('bigint', { transformer: BIGINT_NUMBER })
  amount!: number;

  @Column('char', { length: 3, transformer: CURRENCY_CODE })
  currency!: string;

  @Column('text')
  status!: 'requires_payment_method' | 'succeeded' | 'canceled';

  @Column('text', { name: 'last_error', nullable: true })
  lastError!: string | null;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;

  @Column('timestamptz', { name: 'updated_at' })
  updatedAt!: Date;
}
