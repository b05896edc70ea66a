import { Injectable } from '@nestjs/common';
import type { Repository } from 'typeorm';
import type { Role } from '../auth/permissions';
import { TransactionHost } from '../database/transaction-host';
import { UserEntity } from './entities/user.entity';

export interface User {
  id: string;
  email: string;
  name: string;
  role: Role;
  passwordHash: string;
  createdAt: Date;
  updatedAt: Date;
}

export type NewUser = Pick<User, 'email' | 'name' | 'role' | 'passwordHash'>;

const COLUMNS = `id, email, name, role, password_hash AS "passwordHash",
                 created_at AS "createdAt", updated_at AS "updatedAt"`;

function toUser(e: UserEntity): User {
  return {
    id: e.id,
    email: e.email,
    name: e.name,
    role: e.role,
    passwordHash: e.passwordHash,
    createdAt: e.createdAt,
    updatedAt: e.updatedAt,
  };
}

/**
 * The only place that builds queries for users. Lookups go through the entity; writes are
 * explicit SQL so the statement that decides a race (the unique index on email) is visible.
 * Emails arrive normalized (see normalizeEmail); the table's CHECK refuses anything else.
 */
@Injectable()
export class UserRepository {
  constructor(private readonly tx: TransactionHost) {}

  private get users(): Repository<UserEntity> {
    return this.tx.manager.getRepository(UserEntity);
  }

  /**
   * Inserts the user; null when the email is taken. The unique index users_email_key decides,
   * also between concurrent registrations of one email: it is the ON CONFLICT arbiter, so the
   * second INSERT waits for the first to commit and then inserts nothing (rather than failing
   * with 23505, which would log a database error and abort the caller's transaction).
   */
  async create(u: NewUser): Promise<User | null> {
    const rows = await this.tx.query<User>(
      `INSERT INTO users (email, name, role, password_hash) VALUES ($1, $2, $3, $4)
       ON CONFLICT (email) DO NOTHING
       RETURNING ${COLUMNS}`,
      [u.email, u.name, u.role, u.passwordHash],
    );
    return rows[0] ?? null;
  }

  async findByEmail(email: string): Promise<User | null> {
    const found = await this.users.findOneBy({ email });
    return found ? toUser(found) : null;
  }

  async findById(id: string): Promise<User | null> {
    const found = await this.users.findOneBy({ id });
    return found ? toUser(found) : null;
  }

  async setPasswordHash(id: string, hash: string, now: Date): Promise<void> {
    await this.tx.query(`UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1`, [
      id,
      hash,
      now,
    ]);
  }

  /**
   * Creates the user, or gives an existing one (same email) this role and password hash; the
   * name of an existing account is kept. Idempotent.
   */
  async upsertWithRole(u: NewUser, now: Date): Promise<User> {
    const rows = await this.tx.query<User>(
      `INSERT INTO users (email, name, role, password_hash, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $5)
       ON CONFLICT (email) DO UPDATE
         SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash, updated_at = $5
       RETURNING ${COLUMNS}`,
      [u.email, u.name, u.role, u.passwordHash, now],
    );
    return rows[0];
  }
}
