import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host';

export interface IdempotencyScope {
  principal: string;
  key: string;
  method: string;
  route: string;
  fingerprint: string;
}

export interface StoredResponse {
  method: string;
  route: string;
  fingerprint: string;
  status: number;
  body: string | null;
}

/** The only place that builds SQL for idempotency records. */
@Injectable()
export class IdempotencyRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Claims the key for the current transaction without waiting: false while another request
   * with the same principal and key is still running. Released at commit or rollback.
   */
  async tryClaim(principal: string, key: string): Promise<boolean> {
    const rows: { claimed: boolean }[] = await this.tx.query(
      `SELECT pg_try_advisory_xact_lock(hashtextextended($1, 7)) AS claimed`,
      [`${principal}\n${key}`],
    );
    return rows[0].claimed;
  }

  /** The completed, unexpired record for this key (an expired one is removed first). */
  async findLive(principal: string, key: string, now: Date): Promise<StoredResponse | null> {
    const rows: StoredResponse[] = await this.tx.query(
      `WITH expired AS (
         DELETE FROM idempotency_keys
          WHERE principal = $1 AND key = $2 AND expires_at <= $3
         RETURNING 1
       )
       SELECT method, route, fingerprint, response_status AS status, response_body AS body
         FROM idempotency_keys
        WHERE principal = $1 AND key = $2 AND state = 'completed' AND expires_at > $3`,
      [principal, key, now],
    );
    return rows[0] ?? null;
  }

  /** Records the response in the same transaction as the effect it describes. */
  async complete(
    scope: IdempotencyScope,
    response: { status: number; body: string | null },
    now: Date,
    expiresAt: Date,
  ): Promise<void> {
    await this.tx.query(
      `INSERT INTO idempotency_keys
         (principal, key, method, route, fingerprint, state, response_status, response_body,
          created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, 'completed', $6, $7, $8, $9)`,
      [
        scope.principal,
        scope.key,
        scope.method,
        scope.route,
        scope.fingerprint,
        response.status,
        response.body,
        now,
        expiresAt,
      ],
    );
  }

  async purgeExpired(now: Date, batch = 5000): Promise<number> {
    const rows: unknown[] = await this.tx.query(
      `DELETE FROM idempotency_keys
        WHERE ctid IN (SELECT ctid FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2)
       RETURNING 1`,
      [now, batch],
    );
    return rows.length;
  }
}
