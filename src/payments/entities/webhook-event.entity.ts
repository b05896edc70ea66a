import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/**
 * The `webhook_events` table (migrations …-Payments.ts): the verified webhook inbox, one row per
 * provider event id (a duplicate delivery finds its row and does nothing).
 */
@Entity('webhook_events')
// the sweep's order, COALESCE(swept_at, received_at) WHERE processed_at IS NULL: an expression
// index, declared in 1763800018000-WebhookEventsSweepOrder.ts
@Index('webhook_events_unprocessed_idx', { synchronize: false })
// the retention purge's: processed events by when (migration 1763800023000)
@Index('webhook_events_processed_idx', ['processedAt'], { where: 'processed_at IS NOT NULL' })
export class WebhookEventEntity {
  /** The provider's event id (`evt_…`). */
  @PrimaryColumn('text', { primaryKeyConstraintName: 'webhook_events_pkey' })
  id!: string;

  @Column('text')
  type!: string;

  /** The payment intent the event is about, when it names one. */
  @Column('text', { name: 'intent_id', nullable: true })
  intentId!: string | null;

  /** The verified event as received. */
  @Column('jsonb')
  payload!: object;

  @Column('timestamptz', { name: 'received_at' })
  receivedAt!: Date;

  @Column('timestamptz', { name: 'processed_at', nullable: true })
  processedAt!: Date | null;

  /**
   * What processing it did (PaymentFinalizer's EventOutcome kind: `confirmed`, `no-payment`,
   * `orphan` …), set with `processed_at` (migration 1763800062000); null before then.
   */
  @Column('text', { nullable: true })
  outcome!: string | null;

  /** When the unprocessed-event sweep last tried it and it failed again (its place in the sweep's line). */
  @Column('timestamptz', { name: 'swept_at', nullable: true })
  sweptAt!: Date | null;
}
