import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';

export interface SpendResult {
  familyId: string;
  userId: string;
  /** Why the token cannot be used; absent when it was spent just now by this call. */
  refusal?: 'unknown' | 'reused' | 'revoked' | 'expired';
  /** For a reused token: when it was spent. */
  spentAt?: Date;
}

/** The only place that builds SQL for refresh tokens and their families. Tokens are stored hashed. */
@Injectable()
export class RefreshTokenRepository {
  constructor(private readonly tx: TransactionHost) {}

  async createFamily(id: string, userId: string, now: Date, expiresAt: Date): Promise<void> {
    await this.tx.query(
      `INSERT INTO refresh_token_families (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
      [id, userId, now, expiresAt],
    );
  }

  async addToken(familyId: string, tokenHash: string, now: Date, idleExpiresAt: Date): Promise<void> {
    await this.tx.query(
      `INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at) VALUES ($1, $2, $3, $4)`,
      [tokenHash, familyId, now, idleExpiresAt],
    );
  }

  /**
   * Spends the token with a guarded UPDATE (… WHERE spent_at IS NULL): of two concurrent
   * refreshes with the same token exactly one gets the row back; the other sees it spent and
   * is treated as reuse.
   */
  async spend(tokenHash: string, now: Date): Promise<SpendResult> {
    const spent: { family_id: string; user_id: string; revoked_at: Date | null; expires_at: Date; idle_expires_at: Date }[] =
      await this.tx.query(
        `UPDATE refresh_tokens t SET spent_at = $2
           FROM refresh_token_families f
          WHERE t.token_hash = $1 AND t.spent_at IS NULL AND f.id = t.family_id
         RETURNING f.id AS family_id, f.user_id, f.revoked_at, f.expires_at, t.idle_expires_at`,
        [tokenHash, now],
      );
    const row = spent[0];
    if (row) {
      const result = { familyId: row.family_id, userId: row.user_id };
      if (row.revoked_at) return { ...result, refusal: 'revoked' };
      if (row.expires_at <= now || row.idle_expires_at <= now) return { ...result, refusal: 'expired' };
      return result;
    }
    const known: { family_id: string; user_id: string; spent_at: Date }[] = await this.tx.query(
      `SELECT t.family_id, f.user_id, t.spent_at FROM refresh_tokens t
         JOIN refresh_token_families f ON f.id = t.family_id WHERE t.token_hash = $1`,
      [tokenHash],
    );
    if (!known[0]) return { familyId: '', userId: '', refusal: 'unknown' };
    return {
      familyId: known[0].family_id,
      userId: known[0].user_id,
      refusal: 'reused',
      spentAt: known[0].spent_at,
    };
  }

  async revokeFamily(familyId: string, reason: string, now: Date): Promise<void> {
    await this.tx.query(
      `UPDATE refresh_token_families SET revoked_at = $2, revoked_reason = $3
        WHERE id = $1 AND revoked_at IS NULL`,
      [familyId, now, reason],
    );
  }

  async revokeAllOfUser(userId: string, reason: string, now: Date): Promise<void> {
    await this.tx.query(
      `UPDATE refresh_token_families SET revoked_at = $2, revoked_reason = $3
        WHERE user_id = $1 AND revoked_at IS NULL`,
      [userId, now, reason],
    );
  }
}
