import {
  Check,
  Column,
  Entity,
  Index,
  JoinColumn,
  ManyToOne,
  PrimaryColumn,
  Unique,
} from 'typeorm';
import { OrderEntity } from '../../orders/entities/order.entity';
import type { EmailKind } from '../email-job';

/**
 * The `email_deliveries` table (migrations …-Emails.ts): one row per email the shop means to
 * send, claimed BEFORE the message goes to the mail server. `email_deliveries_once` makes it at
 * most one email per (order, kind, ref) — `ref` is the refund id for the refund emails (`refund`,
 * `refund_reversed`: migrations …-EmailRefundReversed.ts), '' otherwise.
 * A 'sent' row is final; so is a 'rejected' one (the mail server refused it for good: a 5xx
 * for the recipient or the message), and a 'suppressed' one (a cancellation email over the
 * recipient's daily allowance, or over the shop's daily budget for inboxes nobody has proven:
 * never sent).
 */
@Entity('email_deliveries')
@Unique('email_deliveries_once', ['orderId', 'kind', 'ref'])
@Check(
  'email_deliveries_kind_check',
  `kind IN ('order_confirmation', 'payment_receipt', 'cancellation', 'refund', 'refund_reversed')`,
)
@Check('email_deliveries_status_check', `status IN ('sending', 'sent', 'rejected', 'suppressed')`)
// an inbox's cancellation emails of the last day (EmailService: the daily allowance)
@Index('email_deliveries_inbox_sent_idx', ['inbox', 'kind', 'sentAt'], { where: "status = 'sent'" })
@Index('email_deliveries_inbox_sending_idx', ['inbox', 'kind', 'updatedAt'], {
  where: "status = 'sending'",
})
// the shop-wide budget of cancellation emails to unproven inboxes: those let go in the last day
@Index('email_deliveries_unproven_idx', ['unprovenAt'], { where: 'unproven_at IS NOT NULL' })
@Check('email_deliveries_attempts_check', `attempts >= 0`)
@Check('email_deliveries_sent_at', `(status = 'sent') = (sent_at IS NOT NULL)`)
@Check('email_deliveries_refund_ref', `(kind IN ('refund', 'refund_reversed')) = (ref <> '')`)
export class EmailDeliveryEntity {
  @PrimaryColumn('uuid', { primaryKeyConstraintName: 'email_deliveries_pkey' })
  id!: string;

  @Column('uuid', { name: 'order_id' })
  orderId!: string;

  @ManyToOne(() => OrderEntity, { nullable: false, onDelete: 'CASCADE' })
  @JoinColumn({ name: 'order_id', foreignKeyConstraintName: 'email_deliveries_order_id_fkey' })
  order?: OrderEntity;

  @Column('text')
  kind!: EmailKind;

  @Column('text', { default: '' })
  ref!: string;

  @Column('text')
  recipient!: string;

  /** The inbox the recipient reaches (`inboxKey`: `+tag` dropped, a provider's aliases folded), for allowances. */
  @Column('text', { nullable: true })
  inbox!: string | null;

  @Column('text')
  status!: 'sending' | 'sent' | 'rejected' | 'suppressed';

  /** Claims so far; the current claim's number is its token (see EmailDeliveryRepository.release). */
  @Column('integer', { default: 0 })
  attempts!: number;

  /** The deterministic Message-ID (`<orderId.kind[.ref]@domain>`). */
  @Column('text', { name: 'message_id' })
  messageId!: string;

  /**
   * When this cancellation email was let go to an inbox nobody had proven (no receipt sent to it),
   * counted against the shop's daily budget of such emails (EmailDeliveryRepository
   * #suppressOverUnprovenBudget); NULL for every other email.
   */
  @Column('timestamptz', { name: 'unproven_at', nullable: true })
  unprovenAt!: Date | null;

  @Column('timestamptz', { name: 'claimed_at', nullable: true })
  claimedAt!: Date | null;

  @Column('timestamptz', { name: 'sent_at', nullable: true })
  sentAt!: Date | null;

  @Column('text', { name: 'last_error', nullable: true })
  lastError!: string | null;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;

  @Column('timestamptz', { name: 'updated_at' })
  updatedAt!: Date;
}
