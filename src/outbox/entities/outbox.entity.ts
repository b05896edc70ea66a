import { Check, Column, Entity, Index, PrimaryColumn } from 'typeorm';
import type { OutboxTopic } from '../outbox-events';

const OUTBOX_STATUSES = ['pending', 'published', 'dead'] as const;
export type OutboxStatus = (typeof OUTBOX_STATUSES)[number];

/**
 * The `outbox` table (migrations/1763800002000-Orders.ts): a domain event written in the same
 * transaction as the change it announces, `pending` until the relay has published it as BullMQ
 * jobs, `dead` once its attempts are spent.
 */
@Entity('outbox')
@Check('outbox_status_check', `status IN (${OUTBOX_STATUSES.map((s) => `'${s}'`).join(', ')})`)
@Index('outbox_pending_idx', ['nextAttemptAt'], { where: `status = 'pending'` })
@Index('outbox_published_idx', ['publishedAt', 'id'], { where: `status = 'published'` })
@Index('outbox_dead_idx', ['createdAt', 'id'], { where: `status = 'dead'` })
export class OutboxEntity {
  @PrimaryColumn('uuid', { primaryKeyConstraintName: 'outbox_pkey' })
  id!: string;

  @Column('text')
  topic!: OutboxTopic;

  @Column('uuid', { name: 'aggregate_id', nullable: true })
  aggregateId!: string | null;

  @Column('jsonb')
  payload!: Record<string, unknown>;

  @Column('text', { default: 'pending' })
  status!: OutboxStatus;

  @Column('integer', { default: 0 })
  attempts!: number;

  @Column('timestamptz', { name: 'next_attempt_at' })
  nextAttemptAt!: Date;

  @Column('text', { name: 'last_error', nullable: true })
  lastError!: string | null;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;

  @Column('timestamptz', { name: 'published_at', nullable: true })
  publishedAt!: Date | null;
}
