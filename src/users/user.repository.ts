import { Injectable } from '@nestjs/common';
import type { Role } from '../auth/permissions';
import { TransactionHost } from '../database/transaction-host';

export interface User {
  id: string;
  email: string;
  name: string;
  role: Role;
  passwordHash: string;
}

const COLUMNS = `id, email, name, role, password_hash AS "passwordHash"`;

/** The only place that builds SQL for users. Emails are stored normalized. */
@Injectable()
export class UserRepository {
  constructor(private readonly tx: TransactionHost) {}

  /** Inserts; returns null when the email is taken (unique index, also under races). */
  async create(u: Omit<User, 'id'>): Promise<User | null> {
    const rows: User[] = await this.tx.query(
      `INSERT INTO users (email, name, role, password_hash) VALUES ($1, $2, $3, $4)
       ON CONFLICT (email) DO NOTHING RETURNING ${COLUMNS}`,
      [u.email, u.name, u.role, u.passwordHash],
    );
    return rows[0] ?? null;
  }

  async findByEmail(email: string): Promise<User | null> {
    const rows: User[] = await this.tx.query(`SELECT ${COLUMNS} FROM users WHERE email = $1`, [email]);
    return rows[0] ?? null;
  }

  async findById(id: string): Promise<User | null> {
    const rows: User[] = await this.tx.query(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]);
    return rows[0] ?? null;
  }

  async setPasswordHash(id: string, hash: string): Promise<void> {
    await this.tx.query(`UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1`, [
      id,
      hash,
    ]);
  }

  /** Creates the user or sets role and password of an existing one (idempotent). */
  async upsertWithRole(u: Omit<User, 'id'>): Promise<User> {
    const rows: User[] = await this.tx.query(
      `INSERT INTO users (email, name, role, password_hash) VALUES ($1, $2, $3, $4)
       ON CONFLICT (email) DO UPDATE SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash,
                                         updated_at = now()
       RETURNING ${COLUMNS}`,
      [u.email, u.name, u.role, u.passwordHash],
    );
    return rows[0];
  }
}
