import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryGeneratedColumn } from 'typeorm';
import { RefreshTokenFamilyEntity } from './refresh-token-family.entity';

/**
 * One refresh token of a family, stored as its SHA-256 only. `spentAt` is set when it is
 * exchanged for a new pair; presenting it again after that is reuse.
 */
@Entity('refresh_tokens')
@Index('refresh_tokens_token_hash_key', ['tokenHash'], { unique: true })
// a family's last use, read by a sign-in's session-limit count (migration 1763800020000)
@Index('refresh_tokens_unspent_idx', ['familyId', 'issuedAt'], { where: 'spent_at IS NULL' })
// a family's tokens, and in one probe whether any is usable at a time: the purge of ended
// sessions (migration 1763800068000)
@Index('refresh_tokens_family_idle_idx', ['familyId', 'idleExpiresAt'])
export class RefreshTokenEntity {
  @PrimaryGeneratedColumn('uuid', { primaryKeyConstraintName: 'refresh_tokens_pkey' })
  id!: string;

  @Column('text', { name: 'token_hash' })
  tokenHash!: string;

  @Column('uuid', { name: 'family_id' })
  familyId!: string;

  @ManyToOne(() => RefreshTokenFamilyEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'family_id', foreignKeyConstraintName: 'refresh_tokens_family_id_fkey' })
  family?: RefreshTokenFamilyEntity;

  @Column('timestamptz', { name: 'issued_at' })
  issuedAt!: Date;

  @Column('timestamptz', { name: 'idle_expires_at' })
  idleExpiresAt!: Date;

  @Column('timestamptz', { name: 'spent_at', nullable: true })
  spentAt!: Date | null;
}
