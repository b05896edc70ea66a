import { Check, Column, Entity, PrimaryColumn } from 'typeorm';
import { BIGINT_NUMBER } from '../../database/column-transformers';

/**
 * The `payment_orphan_sweep` table (migration 1763800064000): one row, the orphan sweep's
 * watermark and the pass under way (PaymentOrphanSweepRepository).
 */
@Entity('payment_orphan_sweep')
@Check('payment_orphan_sweep_singleton_check', `singleton`)
@Check(
  'payment_orphan_sweep_pass_check',
  `(pass_before IS NULL AND pass_list IS NULL AND pass_after IS NULL) OR (pass_before > checked_before AND pass_list IN ('intent', 'refund', 'dispute'))`,
)
export class PaymentOrphanSweepEntity {
  /** Only ever true: the one row. */
  @PrimaryColumn('boolean', {
    default: true,
    primaryKeyConstraintName: 'payment_orphan_sweep_pkey',
  })
  singleton!: boolean;

  /** The watermark: what the provider made before it has been checked. */
  @Column('timestamptz', { name: 'checked_before' })
  checkedBefore!: Date;

  /** The end of the pass under way (what it checks was made before it); null: none under way. */
  @Column('timestamptz', { name: 'pass_before', nullable: true })
  passBefore!: Date | null;

  /** The list the pass is on: `intent`, `refund` or `dispute`. */
  @Column('text', { name: 'pass_list', nullable: true })
  passList!: string | null;

  /** The cursor of that list's next page (null: its first). */
  @Column('text', { name: 'pass_after', nullable: true })
  passAfter!: string | null;

  /** Raised by every change: a run writes over the state it read, or nothing. */
  @Column('bigint', { default: 0, transformer: BIGINT_NUMBER })
  version!: number;
}
