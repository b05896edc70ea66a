import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/**
 * The `idempotency_bodies` table (migrations/1763800066000-IdempotencyBodies.ts): each distinct
 * response body stored once, by the SHA-256 of its text, for as long as the latest-expiring key
 * that referenced it (IdempotencyKeyEntity.responseBodyHash). Read only through a key.
 */
@Entity('idempotency_bodies')
@Index('idempotency_bodies_expiry_idx', ['expiresAt'])
export class IdempotencyBodyEntity {
  @PrimaryColumn('bytea', { primaryKeyConstraintName: 'idempotency_bodies_pkey' })
  hash!: Buffer;

  @Column('text')
  body!: string;

  @Column('timestamptz', { name: 'expires_at' })
  expiresAt!: Date;
}
