import { Injectable } from '@nestjs/common';
import { deleteSelected } from '../database/batched-delete';
import { TransactionHost, pgConstraint, pgErrorCode } from '../database/transaction-host';
import { IdempotencyBodyEntity } from './entities/idempotency-body.entity';
import { IdempotencyKeyEntity } from './entities/idempotency-key.entity';

export interface IdempotencyScope {
  principal: string;
  key: string;
  method: string;
  route: string;
  fingerprint: string;
  /** The fingerprints of the bodies that are the same request (sameBodyFingerprints): `fingerprint` among them. */
  sameBody: readonly string[];
}

export interface StoredResponse {
  method: string;
  route: string;
  fingerprint: string;
  status: number;
  body: string | null;
}

/**
 * The advisory lock id of ($1 principal, $2 key), which both claim modes take — for the
 * transaction (here), or for the request on a dedicated session (IdempotencyKeyLocks) — so a
 * request in one mode sees a twin in the other.
 */
const keyLockId = (principal: string, key: string) =>
  `hashtextextended(${principal} || E'\\n' || ${key}, 7)`;
export const KEY_LOCK_ID = keyLockId('$1::text', '$2::text');

/**
 * The response body ($body, text or NULL) stored once by its SHA-256 (migration IdempotencyBodies),
 * as a CTE `body` returning its hash (no row for NULL), for a key expiring at `expiresAt` (SQL):
 * a body already there is kept, its expiry raised to the latest of its keys' — the upsert locks its
 * row until the store commits, so the purge's DELETE, which judges the expiry again on the row it
 * reaches, waits and leaves it (purgeBodies). `from`: where `expiresAt` is read, if anywhere.
 */
const storeBody = (body: string, expiresAt: string, from = '') => `
  body AS (
    INSERT INTO idempotency_bodies AS b (hash, body, expires_at)
    SELECT sha256(convert_to(${body}::text, 'UTF8')), ${body}::text, ${expiresAt} ${from}
       ${from ? 'AND' : 'WHERE'} ${body}::text IS NOT NULL
    ON CONFLICT (hash) DO UPDATE SET expires_at = GREATEST(b.expires_at, EXCLUDED.expires_at)
    RETURNING hash)`;

/**
 * Bodies up to this many bytes stay in their record's own row (`response_body`); larger ones are
 * stored once by hash (storeBody). A checkout's answer (a few lines: ~0.5 KB) is unique — no other
 * key shares it — and storing it by hash cost the checkout a tenth more CPU, PostgreSQL's a fifth
 * (bench:checkout-cpu, alternating builds), on the path issue 14 measures; what made the store grow
 * was the same large answer kept again per key (a no-op cancel of a 100-line order: 10-28 KB a
 * record). 2 KB is where PostgreSQL starts compressing a value (TOAST): an answer under it, kept
 * per key for a day within the rate limits, is at most a tenth of the measured growth.
 */
export const INLINE_BODY_MAX_BYTES = 2048;
const storedInline = (body: string | null): boolean =>
  body === null || Buffer.byteLength(body, 'utf8') <= INLINE_BODY_MAX_BYTES;

/** Idempotency records (IdempotencyKeyEntity) and their bodies (IdempotencyBodyEntity): the only code that reads or writes them. */
@Injectable()
export class IdempotencyRepository {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * The statement that claims the key for the current transaction, sent together with BEGIN
   * (TransactionHost.runOpening): `idempotency_claim` (migration IdempotencyClaimFunction) takes
   * the key's advisory lock without waiting (`claimed` is false while another request with the
   * same principal and key is still running, in either mode; released at commit or rollback).
   * Then, in statements of its own — so under snapshots taken after the lock, which see every
   * record committed by the key's previous holder — it drops an expired record, and an
   * `in_progress` one: its request (see `begin`) would hold the lock, so it is gone (its process
   * died, or its database session with the lock did); and returns the live record if any, to
   * replay. (Under one snapshot, taken before the lock, a twin that got the lock just after the
   * first request committed would not see its record, would run the request again, and fail on
   * the record's primary key — issue 11.) One row: `claimed` and the record's columns, NULL
   * without one.
   */
  static claimStatements(principal: string, key: string): { sql: string; params: unknown[] }[] {
    // raw SQL: hot path of bench:flash-sale (the idempotency claim, sent in BEGIN's message, see
    // docs/BENCHMARKS.md)
    return [
      {
        sql: `SELECT claimed, state, method, route, fingerprint, status, body
                FROM idempotency_claim($1::text, $2::text, statement_timestamp())`,
        params: [principal, key],
      },
    ];
  }

  /**
   * What the claim statement found: whether the key is ours, and a completed record to replay —
   * also when the key is not ours: a completed request's answer stands whoever holds the lock now
   * (a twin retry replaying it, the sold-out path's brief check), so a retry gets it, not a 409.
   */
  static claimed(results: unknown[][]): { claimed: boolean; stored: StoredResponse | null } {
    const [rows] = results as [({ claimed: boolean; state: string | null } & StoredResponse)[]];
    const row = rows[0];
    const claimed = row?.claimed === true;
    // an in-progress record is a running twin's (not claimed), or was left by a request that is
    // gone (claimed: dropped before the read): nothing to replay either way
    if (row?.state !== 'completed') return { claimed, stored: null };
    const { state: _state, claimed: _claimed, ...stored } = row;
    return { claimed, stored };
  }

  /**
   * The completed record, its body stored once by hash (storeBody) in the same statement:
   * $1 principal, $2 key, $3 method, $4 route, $5 fingerprint, $6 status, $7 body (text or NULL),
   * $8 now, $9 expiry.
   */
  static readonly COMPLETE_BY_HASH_SQL = `
    WITH ${storeBody('$7', '$9::timestamptz')}
    INSERT INTO idempotency_keys
      (principal, key, method, route, fingerprint, state, response_status, response_body_hash,
       created_at, expires_at)
    VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, 'completed', $6::int,
            (SELECT hash FROM body), $8::timestamptz, $9::timestamptz)`;

  /** The completed record with its (small: storedInline) body in its own row; COMPLETE_BY_HASH_SQL's parameters. */
  static readonly COMPLETE_INLINE_SQL = `
    INSERT INTO idempotency_keys
      (principal, key, method, route, fingerprint, state, response_status, response_body,
       created_at, expires_at)
    VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, 'completed', $6::int, $7::text,
            $8::timestamptz, $9::timestamptz)`;

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
    // raw SQL: hot path of bench:flash-sale (the idempotency record, sent in COMMIT's message, see
    // docs/BENCHMARKS.md)
    this.tx.sendWithCommit(
      storedInline(response.body)
        ? IdempotencyRepository.COMPLETE_INLINE_SQL
        : IdempotencyRepository.COMPLETE_BY_HASH_SQL,
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
          pgErrorCode(err) === '23505' && pgConstraint(err) === 'idempotency_keys_pkey'
            ? onDuplicate()
            : undefined,
      },
    );
  }

  /**
   * Records the key as in progress, for a request outside one transaction that holds the key's
   * lock (IdempotencyKeyLocks): takes over an expired record, or an in-progress one (under the
   * lock, its request is gone). Returns the claim's token (its creation time, fencing
   * `finish`/`abandon` against a later takeover), or the live completed record in the way.
   */
  async begin(
    scope: IdempotencyScope,
    now: Date,
    expiresAt: Date,
  ): Promise<{ token: Date } | { token: null; stored: StoredResponse | null }> {
    // raw SQL: the idempotency claim of the routes outside one transaction — a takeover decided by
    // INSERT … ON CONFLICT DO UPDATE … WHERE in one statement, which the query builder cannot say
    // (the transactional claim above is the one bench:flash-sale measures)
    const claimed: { created_at: Date }[] = await this.tx.query(
      `INSERT INTO idempotency_keys (principal, key, method, route, fingerprint, state, created_at, expires_at)
       VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, 'in_progress', $6::timestamptz, $7::timestamptz)
       ON CONFLICT (principal, key) DO UPDATE
         SET method = EXCLUDED.method, route = EXCLUDED.route, fingerprint = EXCLUDED.fingerprint,
             state = 'in_progress', response_status = NULL, response_body = NULL,
             response_body_hash = NULL,
             created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
       WHERE idempotency_keys.expires_at <= statement_timestamp() OR idempotency_keys.state = 'in_progress'
       RETURNING created_at`,
      [scope.principal, scope.key, scope.method, scope.route, scope.fingerprint, now, expiresAt],
    );
    if (claimed[0]) return { token: claimed[0].created_at };
    const found = await this.find(scope);
    return { token: null, stored: found?.state === 'completed' ? found.stored : null };
  }

  /** The live record for the key, if any: completed (with its response) or in progress. */
  async find(
    scope: IdempotencyScope,
  ): Promise<{ state: 'completed' | 'in_progress'; stored: StoredResponse } | null> {
    // raw SQL: the body joined by its hash, or a record's own (small, or written before
    // idempotency_bodies, or by a build before it: writing its own body clears a hash it left,
    // migration IdempotencyOwnBodyClearsHash)
    const [record] = await this.tx.query<{ state: 'completed' | 'in_progress' } & StoredResponse>(
      `SELECT k.state, k.method, k.route, k.fingerprint, coalesce(k.response_status, 0) AS status,
              CASE WHEN k.response_body_hash IS NULL THEN k.response_body ELSE b.body END AS body
         FROM idempotency_keys k
         LEFT JOIN idempotency_bodies b ON b.hash = k.response_body_hash
        WHERE k.principal = $1::text AND k.key = $2::text AND k.expires_at > statement_timestamp()`,
      [scope.principal, scope.key],
    );
    if (!record) return null;
    const { state, ...stored } = record;
    return { state, stored };
  }

  /**
   * Of these (principal, key) pairs, the ones in use, as `principal\nkey` strings: a request
   * holding the key is running right now (its lock is held, in either claim mode), or the key
   * has a live record — completed, on any route, or in progress outside one transaction. One
   * statement for all of them (migrations/1763800012000-IdempotencyKeysInUse.ts: the records
   * read under a snapshot taken after the locks were tried), outside any transaction, so the
   * locks it tries are released as it ends.
   */
  async keysInUse(pairs: () => { principal: string; key: string }[]): Promise<Set<string>> {
    // raw SQL: a server-side function (two statements, two snapshots, in one round trip), on the
    // hot path of bench:flash-sale's sold-out refusals. The pairs are taken once a connection is
    // in hand: a caller that gave up while the pool was busy is not asked (nor locked) for.
    const rows = await this.tx.queryWhenConnected<{ principal: string; key: string }>(() => {
      const asked = pairs();
      if (asked.length === 0) return null;
      return {
        sql: 'SELECT principal, key FROM idempotency_keys_in_use($1::text[], $2::text[], statement_timestamp())',
        params: [asked.map((p) => p.principal), asked.map((p) => p.key)],
      };
    });
    return new Set(rows.map((r) => `${r.principal}\n${r.key}`));
  }

  /**
   * Completes a claim made by `begin` ($1 principal, $2 key, $3 its token) with $4 status and $5
   * body, stored by hash (storeBody) with the record's own expiry — both only while the claim is
   * still that one.
   */
  static readonly FINISH_BY_HASH_SQL = `
    WITH ${storeBody(
      '$5',
      'k.expires_at',
      `FROM idempotency_keys k
        WHERE k.principal = $1::text AND k.key = $2::text AND k.state = 'in_progress'
          AND k.created_at = $3::timestamptz`,
    )}
    UPDATE idempotency_keys
       SET state = 'completed', response_status = $4::int, response_body_hash = (SELECT hash FROM body)
     WHERE principal = $1::text AND key = $2::text AND state = 'in_progress'
       AND created_at = $3::timestamptz`;

  /** FINISH_BY_HASH_SQL with its (small: storedInline) body in the record's own row. */
  static readonly FINISH_INLINE_SQL = `
    UPDATE idempotency_keys
       SET state = 'completed', response_status = $4::int, response_body = $5::text
     WHERE principal = $1::text AND key = $2::text AND state = 'in_progress'
       AND created_at = $3::timestamptz`;

  /**
   * Completes a claim made by `begin`, unless it was taken over meanwhile. Its work has committed
   * by then: a connection that dies under this one statement (a blink) runs it again on another
   * (guarded on the claim: a second run that finds it completed changes nothing) — it answered
   * 503 for work done, and left the record in progress until the hourly purge.
   */
  async finish(
    scope: IdempotencyScope,
    token: Date,
    response: { status: number; body: string | null },
  ): Promise<void> {
    // raw SQL: a data-modifying CTE (the body's upsert) and a fenced UPDATE in one statement
    const sql = storedInline(response.body)
      ? IdempotencyRepository.FINISH_INLINE_SQL
      : IdempotencyRepository.FINISH_BY_HASH_SQL;
    await this.tx.queryRerunnable(sql, [
      scope.principal,
      scope.key,
      token,
      response.status,
      response.body,
    ]);
  }

  /** Drops a claim made by `begin` (the handler failed: a retry runs afresh). */
  async abandon(scope: IdempotencyScope, token: Date): Promise<void> {
    await this.tx.withManager((m) =>
      m.getRepository(IdempotencyKeyEntity).delete({
        principal: scope.principal,
        key: scope.key,
        state: 'in_progress',
        createdAt: token,
      }),
    );
  }

  /** The database's clock: what a record's expiry is judged by, on every host alike. */
  databaseNow(): Promise<Date> {
    return this.tx.databaseNow();
  }

  /** Deletes records past their expiry, one batch; returns how many. */
  purgeExpired(now: Date, batch = 5000): Promise<number> {
    // a record a request took over meanwhile (begin(): in progress again, a fresh expiry) stays
    return this.purgePastExpiry(IdempotencyKeyEntity, now, batch);
  }

  /**
   * Deletes response bodies past their expiry, one batch; returns how many. A body's expiry is the
   * latest of the keys that referenced it, so no live key needs one that goes; and the expiry is
   * judged again on the row the DELETE reaches: a store that re-references the body meanwhile
   * (storeBody: its upsert locks the row and raises the expiry) is waited for, and its body stays.
   */
  purgeBodies(now: Date, batch = 5000): Promise<number> {
    return this.purgePastExpiry(IdempotencyBodyEntity, now, batch);
  }

  /** One batch of `entity`'s rows past their `expires_at`, the expiry judged again on each row the DELETE reaches. */
  private purgePastExpiry(
    entity: typeof IdempotencyKeyEntity | typeof IdempotencyBodyEntity,
    now: Date,
    batch: number,
  ): Promise<number> {
    return this.tx.withManager((m) =>
      deleteSelected(
        m,
        entity,
        m
          .getRepository<{ expiresAt: Date }>(entity)
          .createQueryBuilder('expired')
          .select('expired.ctid')
          .where('expired.expiresAt <= :now', { now })
          .limit(batch),
        'ctid',
        'expires_at <= :now',
      ),
    );
  }

  /**
   * The statement that drops in-progress records older than $1 whose request is gone, up to $2 of
   * them: it finds them through the partial index of in-progress records (migration
   * IdempotencyAbandonedIndex — without it, every hourly run read the whole table), and deletes
   * only those whose key's lock it gets: a request still holding it is not gone.
   */
  static readonly PURGE_ABANDONED_SQL = `
    DELETE FROM idempotency_keys
     WHERE ctid IN (SELECT stale.ctid FROM idempotency_keys stale
                     WHERE stale.state = 'in_progress' AND stale.created_at <= $1::timestamptz
                     LIMIT $2::int)
       AND state = 'in_progress'
       AND pg_try_advisory_xact_lock(${keyLockId('principal', 'key')})
    RETURNING 1`;

  /**
   * Drops in-progress records older than `before` whose request is gone (nobody holds the key's
   * lock): left by a request whose own clean-up failed with the database, or whose process died.
   * They block nobody (a retry takes them over); this keeps the table telling the truth.
   */
  async purgeAbandoned(before: Date, batch = 1000): Promise<number> {
    // raw SQL: its plan is asserted on this very text (test/schema/idempotency-purge-plan.test.ts);
    // the state is a literal, so the partial index's predicate matches under any plan
    const rows = await this.tx.query(IdempotencyRepository.PURGE_ABANDONED_SQL, [before, batch]);
    return rows.length;
  }
}
