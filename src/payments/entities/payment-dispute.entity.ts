import { Check, Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import type { Relation } from 'typeorm';
import { BIGINT_NUMBER, CURRENCY_CODE } from '../../database/column-transformers';
import { PaymentEntity } from './payment.entity';

/**
 * Dispute statuses that no longer hold the order's fulfilment: won, an inquiry closed without a
 * chargeback, a chargeback prevented (the charge refunded instead: the refund's own events move
 * the order). Any other — open, lost, or one this code does not know — holds it (SQL list).
 */
export const DISPUTE_RELEASED: readonly string[] = ['won', 'warning_closed', 'prevented'];
const sqlList = (values: readonly string[]) => `(${values.map((v) => `'${v}'`).join(', ')})`;
export const DISPUTE_RELEASED_SQL = sqlList(DISPUTE_RELEASED);

/**
 * Statuses the provider never moves a dispute out of (SQL list): those released, and lost. A report
 * that arrives after one (events come late and out of order) changes nothing, and the
 * reconciliation no longer reads it.
 */
export const DISPUTE_FINAL_SQL = sqlList(['won', 'lost', 'warning_closed', 'prevented']);

/** Statuses of a dispute waiting for our answer (evidence, or a reply to an inquiry) (SQL list). */
export const DISPUTE_AWAITING_SQL = sqlList(['needs_response', 'warning_needs_response']);

/**
 * The `payment_disputes` table (migrations …-PaymentDisputes.ts): the provider's disputes of a
 * payment (`dp_…`), with their last status as the provider reported it — read on each of their
 * events, and by the reconciliation's recheck (DisputeRepository).
 */
@Entity('payment_disputes')
@Index('payment_disputes_by_payment', ['paymentId'])
@Index('payment_disputes_to_recheck', ['checkedAt'], {
  where: `status NOT IN ${DISPUTE_FINAL_SQL}`,
})
@Index('payment_disputes_to_remind', ['evidenceDueBy'], {
  where: `status IN ${DISPUTE_AWAITING_SQL} AND reminded_at IS NULL`,
})
@Check('payment_disputes_amount_check', `amount >= 0`)
@Check('payment_disputes_status_check', `status <> ''`)
export class PaymentDisputeEntity {
  /** The provider's id of the dispute. */
  @PrimaryColumn('text', { primaryKeyConstraintName: 'payment_disputes_pkey' })
  id!: string;

  @Column('uuid', { name: 'payment_id' })
  paymentId!: string;

  @ManyToOne(() => PaymentEntity, { nullable: false })
  @JoinColumn({ name: 'payment_id', foreignKeyConstraintName: 'payment_disputes_payment_id_fkey' })
  payment?: Relation<PaymentEntity>;

  /** The provider's status (needs_response, under_review, won, lost, warning_…). */
  @Column('text')
  status!: string;

  /** What the customer's bank disputes (or took back), in minor units. */
  @Column('bigint', { transformer: BIGINT_NUMBER })
  amount!: number;

  @Column('char', { length: 3, transformer: CURRENCY_CODE })
  currency!: string;

  @Column('text', { nullable: true })
  reason!: string | null;

  @Column('timestamptz', { name: 'opened_at' })
  openedAt!: Date;

  @Column('timestamptz', { name: 'updated_at' })
  updatedAt!: Date;

  /** The provider's deadline for our evidence: unanswered by then, the dispute is lost. */
  @Column('timestamptz', { name: 'evidence_due_by', nullable: true })
  evidenceDueBy!: Date | null;

  /** When a person was reminded of its deadline (once: PaymentFinalizer#remindDisputeDeadlines). */
  @Column('timestamptz', { name: 'reminded_at', nullable: true })
  remindedAt!: Date | null;

  /** When the provider last told us of it (an event, or the reconciliation's read). */
  @Column('timestamptz', { name: 'checked_at' })
  checkedAt!: Date;

  /**
   * When the provider was asked for the latest report of it (the database's clock; migration
   * …-DisputeStatusReadAt): a report read earlier never replaces its status. Null: recorded
   * before the column was.
   */
  @Column('timestamptz', { name: 'status_read_at', nullable: true })
  statusReadAt!: Date | null;
}
