import {
  Check,
  Column,
  CreateDateColumn,
  Entity,
  Index,
  PrimaryGeneratedColumn,
  UpdateDateColumn,
} from 'typeorm';
import type { Role } from '../../auth/permissions';

/**
 * The `users` table (migrations/1763800000000-Identity.ts). Never serialized: the repository
 * maps it to `User`, controllers answer with `mapUser()`.
 */
@Entity('users')
@Index('users_email_key', ['email'], { unique: true })
@Check('users_email_check', `email = lower(btrim(email)) AND length(email) BETWEEN 3 AND 254`)
@Check('users_email_nfc', `email IS NFC NORMALIZED`)
@Check('users_name_check', `length(name) BETWEEN 1 AND 200`)
@Check('users_role_check', `role IN ('customer', 'staff', 'admin')`)
@Check('users_password_epoch_check', `password_epoch ~ '^[A-Za-z0-9_-]{22}$'`)
export class UserEntity {
  @PrimaryGeneratedColumn('uuid', { primaryKeyConstraintName: 'users_pkey' })
  id!: string;

  @Column('text')
  email!: string;

  @Column('text')
  name!: string;

  @Column('text', { default: 'customer' })
  role!: Role;

  @Column('text', { name: 'password_hash' })
  passwordHash!: string;

  /** Changed when a password is set, kept by a rehash of the same one (src/users/password-epoch.ts). */
  @Column('text', { name: 'password_epoch' })
  passwordEpoch!: string;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
