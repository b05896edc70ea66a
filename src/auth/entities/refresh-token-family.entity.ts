import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryGeneratedColumn } from 'typeorm';
import { UserEntity } from '../../users/entities/user.entity';

/**
 * One sign-in session: the chain of refresh tokens issued by rotation. It ends at `expiresAt`
 * (absolute lifetime), when revoked (logout, reuse detected, password changed), or when its newest
 * token's idle timeout runs out (`idleExpiresAt`).
 */
@Entity('refresh_token_families')
@Index('refresh_token_families_revoked_idx', ['revokedAt'], { where: 'revoked_at IS NOT NULL' })
// a sign-in's session-limit count reads only live families (migration 1763800020000)
@Index('refresh_token_families_live_idx', ['userId'], { where: 'revoked_at IS NULL' })
export class RefreshTokenFamilyEntity {
  @PrimaryGeneratedColumn('uuid', { primaryKeyConstraintName: 'refresh_token_families_pkey' })
  id!: string;

  @Index('refresh_token_families_user_idx')
  @Column('uuid', { name: 'user_id' })
  userId!: string;

  @ManyToOne(() => UserEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'user_id', foreignKeyConstraintName: 'refresh_token_families_user_id_fkey' })
  user?: UserEntity;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;

  // the purge of ended sessions finds those past their lifetime by it (migration 1763800068000)
  @Index('refresh_token_families_expires_idx')
  @Column('timestamptz', { name: 'expires_at' })
  expiresAt!: Date;

  @Column('timestamptz', { name: 'revoked_at', nullable: true })
  revokedAt!: Date | null;

  /**
   * The whole hour (UTC) after the latest idle expiry of its tokens (null: none yet) — it has ended
   * by then unless refreshed; a bound, up to an hour late, so that a refresh writes this row about
   * once an hour, not each time. Written by the database only (trigger `refresh_family_idle_expiry`
   * on `refresh_tokens`, migration 1763800068000), never by the application; the purge of ended
   * sessions finds idle ones by it, and asks their tokens.
   */
  @Index('refresh_token_families_idle_idx')
  @Column({
    type: 'timestamptz',
    name: 'idle_expires_at',
    nullable: true,
    insert: false,
    update: false,
  })
  idleExpiresAt!: Date | null;

  @Column('text', { name: 'revoked_reason', nullable: true })
  revokedReason!: string | null;

  /**
   * The (account, client) pair of the sign-in that opened it, as an HMAC under a server secret
   * (SessionIssuer#clientKeyOf): the durable record of the owner's own clients (migration 1763800024000).
   */
  @Index('refresh_token_families_client_idx', { where: 'client_key IS NOT NULL' })
  @Column('text', { name: 'client_key', nullable: true })
  clientKey!: string | null;
}
