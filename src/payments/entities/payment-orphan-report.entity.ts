import { Check, Column, Entity, Index, PrimaryColumn } from 'typeorm';

/**
 * The `payment_orphan_reports` table (migration 1763800064000): each orphan the sweep reported,
 * once per finding, while a window of the sweep can still reach it (PaymentOrphanSweepRepository).
 */
@Entity('payment_orphan_reports')
@Index('payment_orphan_reports_made_at_idx', ['madeAt'])
@Check(
  'payment_orphan_reports_finding_check',
  `finding IN ('paid-intent', 'payable-intent', 'refund', 'dispute')`,
)
export class PaymentOrphanReportEntity {
  /** The provider's id of the intent, refund or dispute. */
  @PrimaryColumn('text', {
    name: 'provider_id',
    primaryKeyConstraintName: 'payment_orphan_reports_pkey',
  })
  providerId!: string;

  /** What was found: a paid intent, a payable one, a refund, a dispute. */
  @PrimaryColumn('text', { primaryKeyConstraintName: 'payment_orphan_reports_pkey' })
  finding!: string;

  /** When the provider made it. */
  @Column('timestamptz', { name: 'made_at' })
  madeAt!: Date;

  @Column('timestamptz', { name: 'reported_at' })
  reportedAt!: Date;
}
