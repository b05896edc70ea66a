import { Injectable } from '@nestjs/common';
import type { Repository } from 'typeorm';
import { TransactionHost } from '../database/transaction-host';
import { RefreshTokenEntity } from './entities/refresh-token.entity';

/** What presenting a refresh token amounted to. */
export type SpendOutcome =
  /** This call spent a live token: the caller may issue the next one in the family. */
  | { status: 'spent'; familyId: string; userId: string }
  /** The token had been spent before: a copy is in use (theft, or a racing duplicate). */
  | { status: 'reused'; familyId: string; userId: string }
  /** Unknown, idle-expired, past the family's lifetime, or in a revoked family. */
  | { status: 'invalid' };

/**
 * The only place that builds queries for refresh tokens and their families. Tokens are stored
 * as SHA-256 hashes; the caller hashes before calling.
 */
@Injectable()
export class RefreshTokenRepository {
  constructor(private readonly tx: TransactionHost) {}

  private get tokens(): Repository<RefreshTokenEntity> {
    return this.tx.manager.getRepository(RefreshTokenEntity);
  }

  /** Starts a family (one sign-in) and returns its id. */
  async createFamily(userId: string, now: Date, expiresAt: Date): Promise<string> {
    const rows = await this.tx.query<{ id: string }>(
      `INSERT INTO refresh_token_families (user_id, created_at, expires_at)
       VALUES ($1, $2, $3) RETURNING id`,
      [userId, now, expiresAt],
    );
    return rows[0].id;
  }

  async addToken(
    familyId: string,
    tokenHash: string,
    now: Date,
    idleExpiresAt: Date,
  ): Promise<void> {
    await this.tx.query(
      `INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at)
       VALUES ($1, $2, $3, $4)`,
      [tokenHash, familyId, now, idleExpiresAt],
    );
  }

  /**
   * Spends the token if it is live, with one guarded UPDATE (`… AND spent_at IS NULL
   * RETURNING`): the database decides. Of N concurrent calls with one token exactly one gets
   * the row back; the others block on its row lock, re-check `spent_at IS NULL` once the winner
   * commits, match nothing, and then find the token spent, i.e. `reused`.
   */
  async spend(tokenHash: string, now: Date): Promise<SpendOutcome> {
    const spent = await this.tx.query<{ family_id: string; user_id: string }>(
      `UPDATE refresh_tokens t SET spent_at = $2
         FROM refresh_token_families f
        WHERE t.token_hash = $1
          AND t.spent_at IS NULL
          AND t.idle_expires_at > $2
          AND f.id = t.family_id
          AND f.revoked_at IS NULL
          AND f.expires_at > $2
       RETURNING f.id AS family_id, f.user_id`,
      [tokenHash, now],
    );
    if (spent[0])
      return { status: 'spent', familyId: spent[0].family_id, userId: spent[0].user_id };

    const token = await this.tokens.findOne({ where: { tokenHash }, relations: { family: true } });
    if (token?.spentAt && token.family) {
      return { status: 'reused', familyId: token.familyId, userId: token.family.userId };
    }
    return { status: 'invalid' };
  }

  async revokeFamily(familyId: string, reason: string, now: Date): Promise<void> {
    await this.tx.query(
      `UPDATE refresh_token_families SET revoked_at = $2, revoked_reason = $3
        WHERE id = $1 AND revoked_at IS NULL`,
      [familyId, now, reason],
    );
  }

  /**
   * Revokes the family the token belongs to, whatever the token's state, and returns its id
   * (also when it was revoked before; none for an unknown token).
   */
  async revokeFamilyOfToken(tokenHash: string, reason: string, now: Date): Promise<string[]> {
    const rows = await this.tx.query<{ id: string }>(
      `WITH family AS (SELECT family_id AS id FROM refresh_tokens WHERE token_hash = $1),
            revoked AS (
              UPDATE refresh_token_families f SET revoked_at = $2, revoked_reason = $3
                FROM family WHERE f.id = family.id AND f.revoked_at IS NULL)
       SELECT id FROM family`,
      [tokenHash, now, reason],
    );
    return rows.map((r) => r.id);
  }

  /**
   * Revokes every live family of the user; returns the ids of those among them that issued a
   * token since `issuedSince` (the ones whose access tokens may still be valid).
   */
  async revokeAllOfUser(
    userId: string,
    reason: string,
    now: Date,
    issuedSince: Date,
  ): Promise<string[]> {
    const rows = await this.tx.query<{ id: string; recent: boolean }>(
      `UPDATE refresh_token_families f SET revoked_at = $2, revoked_reason = $3
        WHERE f.user_id = $1 AND f.revoked_at IS NULL
       RETURNING f.id, EXISTS (
         SELECT 1 FROM refresh_tokens t WHERE t.family_id = f.id AND t.issued_at >= $4) AS recent`,
      [userId, now, reason, issuedSince],
    );
    return rows.filter((r) => r.recent).map((r) => r.id);
  }

  /** Deletes families (and, by cascade, their tokens) that ended before `before`. */
  async purgeEnded(before: Date, batch = 5000): Promise<number> {
    const rows = await this.tx.query(
      `DELETE FROM refresh_token_families WHERE id IN (
         SELECT id FROM refresh_token_families
          WHERE expires_at < $1 OR revoked_at < $1
          LIMIT $2)
       RETURNING 1`,
      [before, batch],
    );
    return rows.length;
  }
}
