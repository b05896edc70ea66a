import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/**
 * A session (refresh-token family) deleted while not revoked — with its account, by an
 * operator's `DELETE FROM users` — and when that committed (database clock). The families go with
 * their user (ON DELETE CASCADE), and with them the record that the revocation polls read
 * (RevokedSessions): the deleted account's access tokens kept every right their role claim
 * carries until they expired. Written only by the trigger `refresh_family_deleted` (migration
 * 1763800044000); read with the revocations; purged with the ended sessions.
 */
@Entity('deleted_sessions')
export class DeletedSessionEntity {
  @PrimaryColumn('uuid', { name: 'family_id', primaryKeyConstraintName: 'deleted_sessions_pkey' })
  familyId!: string;

  @Index('deleted_sessions_deleted_at_idx')
  @Column('timestamptz', { name: 'deleted_at' })
  deletedAt!: Date;
}
