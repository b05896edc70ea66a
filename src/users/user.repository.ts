import { Injectable } from '@nestjs/common';
import type { EntityManager, Repository } from 'typeorm';
import type { Role } from '../auth/permissions';
import { TransactionHost } from '../database/transaction-host';
import { UserEntity } from './entities/user.entity';
import { NEW_PASSWORD_SETTING, REHASH_SETTING, passwordEpochOf } from './password-epoch';
import { ROLE_CHANGE_SETTING } from './role-change';

export interface User {
  id: string;
  email: string;
  name: string;
  role: Role;
  passwordHash: string;
  /** Changed when a password is set, kept by a rehash of it (password-epoch.ts). */
  passwordEpoch: string;
  createdAt: Date;
  updatedAt: Date;
}

export type NewUser = Pick<User, 'email' | 'name' | 'role' | 'passwordHash'>;

function toUser(e: UserEntity): User {
  return {
    id: e.id,
    email: e.email,
    name: e.name,
    role: e.role,
    passwordHash: e.passwordHash,
    passwordEpoch: e.passwordEpoch,
    createdAt: e.createdAt,
    updatedAt: e.updatedAt,
  };
}

/**
 * The only place that builds queries for users. Emails arrive normalized (see normalizeEmail);
 * the table's CHECK refuses anything else.
 */
@Injectable()
export class UserRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Inserts the user; null when the email is taken. The unique index users_email_key decides,
   * also between concurrent registrations of one email: the second INSERT … ON CONFLICT DO
   * NOTHING waits for the first to commit and then inserts nothing (rather than failing with
   * 23505, which would log a database error and abort the caller's transaction).
   */
  async create(u: NewUser): Promise<User | null> {
    return this.tx.withManager(async (m) => {
      const user = users(m).create({ ...u, passwordEpoch: passwordEpochOf(u.passwordHash) });
      // the insert fills in what the database generated (id, timestamps) on `user`
      const result = await users(m).createQueryBuilder().insert().values(user).orIgnore().execute();
      return Array.isArray(result.raw) && result.raw.length > 0 ? toUser(user) : null;
    });
  }

  async findByEmail(email: string): Promise<User | null> {
    const found = await this.tx.withManager((m) => users(m).findOneBy({ email }));
    return found ? toUser(found) : null;
  }

  async findById(id: string): Promise<User | null> {
    const found = await this.tx.withManager((m) => users(m).findOneBy({ id }));
    return found ? toUser(found) : null;
  }

  /**
   * Replaces the password hash — only while it is still `verified`, the hash the caller checked
   * the password against (a change committed in between wins; false: nothing written). A new
   * password starts a new epoch; a `rehash` (the same password hashed anew) keeps the account's.
   */
  async setPasswordHash(
    id: string,
    hash: string,
    now: Date,
    verified: string,
    kind: 'new-password' | 'rehash',
  ): Promise<boolean> {
    const result = await this.tx.withManager(async (m) => {
      // the epoch is the trigger's (users_password_epoch): a new one for a new hash, unless this
      // transaction says it is a rehash — for the rest of it; outside one, the setting ends with
      // its own statement and the rehash gets a new epoch (stricter)
      // a new password's caller ends the sessions and forgets the clients itself, in the same
      // transaction (NEW_PASSWORD_SETTING: the trigger users_password_set leaves them to it)
      const setting = kind === 'rehash' ? REHASH_SETTING : NEW_PASSWORD_SETTING;
      await m.query(`SELECT set_config('${setting}', 'on', true)`);
      return users(m).update(
        { id, passwordHash: verified },
        { passwordHash: hash, updatedAt: now },
      );
    });
    return (result.affected ?? 0) > 0;
  }

  /**
   * The account's password hash and epoch now, locked against a change until this transaction ends
   * (FOR SHARE: a password change's UPDATE waits for it, and it waits for one in progress;
   * `forUpdate`, FOR NO KEY UPDATE: for a caller that writes the row itself afterwards — two
   * holding it FOR SHARE and each then updating it deadlock; not FOR UPDATE, which would also hold
   * off the customer's own inserts that reference the row: orders, cart lines, sessions).
   */
  async lockPassword(
    id: string,
    forUpdate = false,
  ): Promise<Pick<User, 'passwordHash' | 'passwordEpoch' | 'role'> | null> {
    const found = await this.tx.withManager((m) =>
      users(m)
        .createQueryBuilder('u')
        .select(['u.id', 'u.passwordHash', 'u.passwordEpoch', 'u.role'])
        .setLock(forUpdate ? 'for_no_key_update' : 'pessimistic_read')
        .where('u.id = :id', { id })
        .getOne(),
    );
    return found
      ? { passwordHash: found.passwordHash, passwordEpoch: found.passwordEpoch, role: found.role }
      : null;
  }

  /**
   * Creates the user, or gives an existing one (same email) this role and password hash; the
   * name of an existing account is kept. Idempotent. The epoch is the trigger's
   * (users_password_epoch): kept when the hash is the account's own, a new one otherwise. The
   * caller ends the account's sessions itself when the role or the password changes
   * (ROLE_CHANGE_SETTING, NEW_PASSWORD_SETTING: the triggers that otherwise do leave them to it) —
   * in the same transaction.
   */
  async upsertWithRole(u: NewUser, now: Date): Promise<User> {
    return this.tx.withManager(async (m) => {
      await m.query(
        `SELECT set_config('${ROLE_CHANGE_SETTING}', 'on', true), set_config('${NEW_PASSWORD_SETTING}', 'on', true)`,
      );
      await users(m)
        .createQueryBuilder()
        .insert()
        .values({ ...u, createdAt: now, updatedAt: now })
        .orUpdate(['role', 'password_hash', 'updated_at'], ['email'])
        .execute();
      return toUser(await users(m).findOneByOrFail({ email: u.email }));
    });
  }
}

const users = (m: EntityManager): Repository<UserEntity> => m.getRepository(UserEntity);
