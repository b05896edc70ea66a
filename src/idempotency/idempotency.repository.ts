import { Injectable } from '@nestjs/common';
import { TransactionHost, pgConstraint, pgErrorCode } from '../database/transaction-host';

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

/**
 * The transaction-scoped advisory lock on ($1 principal, $2 key) that both claim modes take, so
 * a request in one mode sees a twin in the other.
 */
const TRY_LOCK_KEY = `pg_try_advisory_xact_lock(hashtextextended($1::text || E'\\n' || $2::text, 7))`;

/** The only place that builds SQL for idempotency records. */
@Injectable()
export class IdempotencyRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * The two statements that claim the key for the current transaction, sent together with BEGIN
   * (TransactionHost.runOpening). The first takes the key's advisory lock without waiting
   * (`claimed` is false while another request with the same principal and key is still running;
   * released at commit or rollback). The second, under its own snapshot — taken after the lock,
   * so it sees every record committed by the key's previous holder — drops an expired record and
   * returns the live one if any: a completed one to replay, or an in-progress one (a request on a
   * provider-calling route, see `begin`) that makes this one wait too. (In one statement, the
   * snapshot would predate the lock: a twin that got the lock just after the first request
   * committed would not see its record and would run the request again.)
   */
  static claimStatements(principal: string, key: string, now: Date): { sql: string; params: unknown[] }[] {
    return [
      { sql: `SELECT ${TRY_LOCK_KEY} AS claimed`, params: [principal, key] },
      {
        sql: `WITH expired AS (
           DELETE FROM idempotency_keys
            WHERE principal = $1::text AND key = $2::text AND expires_at <= $3::timestamptz
              -- only under the lock (taken again: a no-op for its holder); unclaimed, we roll back
              AND (SELECT ${TRY_LOCK_KEY})
         )
         SELECT state, method, route, fingerprint, response_status AS status, response_body AS body
           FROM idempotency_keys
          WHERE principal = $1::text AND key = $2::text AND expires_at > $3::timestamptz`,
        params: [principal, key, now],
      },
    ];
  }

  /** What the claim statements found: whether the key is ours, and a completed record to replay. */
  static claimed(results: unknown[][]): { claimed: boolean; stored: StoredResponse | null } {
    const [lock, records] = results as [{ claimed: boolean }[], (StoredResponse & { state: string })[]];
    const row = records[0];
    if (!lock[0]?.claimed || row?.state === 'in_progress') return { claimed: false, stored: null };
    if (!row) return { claimed: true, stored: null };
    const { state: _state, ...stored } = row;
    return { claimed: true, stored };
  }

  /**
   * Records the response in the same transaction as the effect it describes — sent in the
   * COMMIT's message (nothing reads it back before then). Should a record for the key exist after
   * all, the transaction rolls back and `onDuplicate()` is what the caller sees.
   */
  completeOnCommit(
    scope: IdempotencyScope,
    response: { status: number; body: string | null },
    now: Date,
    expiresAt: Date,
    onDuplicate: () => Error,
  ): void {
    this.tx.sendWithCommit(
      `INSERT INTO idempotency_keys
         (principal, key, method, route, fingerprint, state, response_status, response_body,
          created_at, expires_at)
       VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, 'completed', $6::int, $7::text,
               $8::timestamptz, $9::timestamptz)`,
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
      {
        mapError: (err) =>
          pgErrorCode(err) === '23505' && pgConstraint(err) === 'idempotency_keys_pkey' ? onDuplicate() : undefined,
      },
    );
  }

  /**
   * Claims the key with an in-progress record (for handlers that run outside one transaction).
   * Takes over an expired record, or an in-progress one for the same request whose lease ran out
   * (its owner died). Returns the claim's token (its creation time, fencing `finish`/`abandon`),
   * or what stands in the way.
   */
  async begin(
    scope: IdempotencyScope,
    now: Date,
    expiresAt: Date,
    leaseMs: number,
  ): Promise<{ token: Date } | { token: null; stored: StoredResponse | null; inProgress: boolean }> {
    const claimed: { created_at: Date }[] = await this.tx.query(
      `INSERT INTO idempotency_keys (principal, key, method, route, fingerprint, state, created_at, expires_at)
       SELECT $1::text, $2::text, $3::text, $4::text, $5::text, 'in_progress', $6::timestamptz, $7::timestamptz
        -- not while a transactional request holds the key (its record is not written yet)
        WHERE ${TRY_LOCK_KEY}
       ON CONFLICT (principal, key) DO UPDATE
         SET method = EXCLUDED.method, route = EXCLUDED.route, fingerprint = EXCLUDED.fingerprint,
             state = 'in_progress', response_status = NULL, response_body = NULL,
             created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
       WHERE idempotency_keys.expires_at <= $6::timestamptz
          OR (idempotency_keys.state = 'in_progress' AND idempotency_keys.created_at <= $8::timestamptz
              AND idempotency_keys.fingerprint = EXCLUDED.fingerprint
              AND idempotency_keys.route = EXCLUDED.route)
       RETURNING created_at`,
      [scope.principal, scope.key, scope.method, scope.route, scope.fingerprint, now, expiresAt, new Date(now.getTime() - leaseMs)],
    );
    if (claimed[0]) return { token: claimed[0].created_at };
    const rows: (StoredResponse & { state: string })[] = await this.tx.query(
      `SELECT state, method, route, fingerprint, response_status AS status, response_body AS body
         FROM idempotency_keys WHERE principal = $1 AND key = $2`,
      [scope.principal, scope.key],
    );
    const row = rows[0];
    if (!row || row.state === 'in_progress') {
      // in progress elsewhere (or a different request waiting out its lease); gone = just abandoned
      return { token: null, stored: null, inProgress: !row || row.fingerprint === scope.fingerprint };
    }
    const { state: _state, ...stored } = row;
    return { token: null, stored, inProgress: false };
  }

  /** Completes a claim made by `begin`, unless it was taken over meanwhile. */
  async finish(scope: IdempotencyScope, token: Date, response: { status: number; body: string | null }): Promise<void> {
    await this.tx.query(
      `UPDATE idempotency_keys SET state = 'completed', response_status = $4, response_body = $5
        WHERE principal = $1 AND key = $2 AND state = 'in_progress' AND created_at = $3`,
      [scope.principal, scope.key, token, response.status, response.body],
    );
  }

  /** Drops a claim made by `begin` (the handler failed: a retry runs afresh). */
  async abandon(scope: IdempotencyScope, token: Date): Promise<void> {
    await this.tx.query(
      `DELETE FROM idempotency_keys
        WHERE principal = $1 AND key = $2 AND state = 'in_progress' AND created_at = $3`,
      [scope.principal, scope.key, token],
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
