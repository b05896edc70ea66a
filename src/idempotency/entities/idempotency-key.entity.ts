import { Check, Column, Entity, Index, PrimaryColumn } from 'typeorm';

const IDEMPOTENCY_STATES = ['in_progress', 'completed'] as const;
export type IdempotencyState = (typeof IDEMPOTENCY_STATES)[number];

/**
 * The `idempotency_keys` table (migrations/1763800002000-Orders.ts): a request's Idempotency-Key
 * per principal, with the request it was used for (method, route, body fingerprint) and, once
 * `completed`, the response to replay until `expiresAt` (its body in `idempotency_bodies`).
 */
@Entity('idempotency_keys')
@Check(
  'idempotency_keys_state_check',
  `state IN (${IDEMPOTENCY_STATES.map((s) => `'${s}'`).join(', ')})`,
)
@Index('idempotency_keys_expiry_idx', ['expiresAt'])
// the purge of abandoned claims (migration IdempotencyAbandonedIndex)
@Index('idempotency_keys_in_progress_idx', ['createdAt'], { where: "state = 'in_progress'" })
export class IdempotencyKeyEntity {
  @PrimaryColumn('text', { primaryKeyConstraintName: 'idempotency_keys_pkey' })
  principal!: string;

  @PrimaryColumn('text', { primaryKeyConstraintName: 'idempotency_keys_pkey' })
  key!: string;

  @Column('text')
  method!: string;

  @Column('text')
  route!: string;

  @Column('text')
  fingerprint!: string;

  @Column('text')
  state!: IdempotencyState;

  @Column('integer', { name: 'response_status', nullable: true })
  responseStatus!: number | null;

  /** A record's own body: only those written before idempotency_bodies (their hash is NULL). */
  @Column('text', { name: 'response_body', nullable: true })
  responseBody!: string | null;

  /** The response body's SHA-256 (IdempotencyBodyEntity), NULL without one and in older records. */
  @Column('bytea', { name: 'response_body_hash', nullable: true })
  responseBodyHash!: Buffer | null;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;

  @Column('timestamptz', { name: 'expires_at' })
  expiresAt!: Date;
}
