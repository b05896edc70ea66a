import { Injectable } from '@nestjs/common';
import { EntityManager, In, IsNull, Repository } from 'typeorm';
import { deleteSelected, drainBatches } from '../database/batched-delete';
import { TransactionHost } from '../database/transaction-host';
import { RefreshTokenFamilyEntity } from './entities/refresh-token-family.entity';
import { RefreshTokenEntity } from './entities/refresh-token.entity';
import { DeletedSessionEntity } from './entities/deleted-session.entity';
import { SESSION_PURGE_SETTING } from './session-purge';

/** Tokens deleted per statement by the purge. */
const TOKEN_CHUNK = 5000;

/**
 * When a family is revoked: the database's clock at the revoking statement — one clock for every
 * host, so the processes reading revocations from the record (RevokedSessions) miss none for a
 * host's clock running behind theirs, nor for a revocation committed late (a pending one).
 */
const revokedNow = () => 'statement_timestamp()';

/** The revocation reason of a family whose spent token was presented again. */
const REUSE_DETECTED = 'reuse-detected';

/** Advisory lock class of a user's session-limit count (pg_advisory_xact_lock(class, key)). */
const SESSION_LIMIT_LOCK_CLASS = 0x534c;

/** What presenting a refresh token amounted to. */
export type SpendOutcome =
  /** This call spent a live token: the caller may issue the next one in the family. */
  | { status: 'spent'; familyId: string; userId: string; familyEndsAt: Date }
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

  /** Starts a family (one sign-in from the client `clientKey`) and returns its id. */
  async createFamily(
    userId: string,
    now: Date,
    expiresAt: Date,
    clientKey: string | null,
  ): Promise<string> {
    return this.tx.withManager(async (m) => {
      const family = families(m).create({ userId, createdAt: now, expiresAt, clientKey });
      await families(m).insert(family); // fills in the generated id
      return family.id;
    });
  }

  /**
   * Whether a family on record (live or ended, until purged) was opened from the client one of
   * `clientKeys` names (SessionIssuer#clientKeysOf: one per key accepted) since the account's
   * password was last set (forgetClients).
   */
  async openedFrom(clientKeys: readonly string[]): Promise<boolean> {
    return this.tx.withManager((m) =>
      families(m).exists({ where: { clientKey: In([...clientKeys]) } }),
    );
  }

  async addToken(
    familyId: string,
    tokenHash: string,
    now: Date,
    idleExpiresAt: Date,
  ): Promise<void> {
    await this.tx.withManager((m) =>
      tokens(m).insert({ tokenHash, familyId, issuedAt: now, idleExpiresAt }),
    );
  }

  /**
   * Spends the token if it is live, with one guarded UPDATE (`… AND spent_at IS NULL
   * RETURNING`): the database decides. Of N concurrent calls with one token exactly one gets
   * the row back; the others block on its row lock, re-check `spent_at IS NULL` once the winner
   * commits, match nothing, and then find the token spent, i.e. `reused`.
   *
   * Explicit SQL: the race is decided by this one statement, which also checks the family and
   * returns its user (`UPDATE … FROM`, which the query builder cannot say).
   */
  async spend(tokenHash: string, now: Date): Promise<SpendOutcome> {
    const spent = await this.tx.query<{ family_id: string; user_id: string; expires_at: Date }>(
      `UPDATE refresh_tokens t SET spent_at = $2
         FROM refresh_token_families f
        WHERE t.token_hash = $1
          AND t.spent_at IS NULL
          AND t.idle_expires_at > $2
          AND f.id = t.family_id
          AND f.revoked_at IS NULL
          AND f.expires_at > $2
       RETURNING f.id AS family_id, f.user_id, f.expires_at`,
      [tokenHash, now],
    );
    if (spent[0])
      return {
        status: 'spent',
        familyId: spent[0].family_id,
        userId: spent[0].user_id,
        familyEndsAt: new Date(spent[0].expires_at),
      };

    const token = await this.tx.withManager((m) =>
      tokens(m).findOne({ where: { tokenHash }, relations: { family: true } }),
    );
    if (token?.spentAt && token.family) {
      return { status: 'reused', familyId: token.familyId, userId: token.family.userId };
    }
    return { status: 'invalid' };
  }

  /**
   * Whether the family is still live, read under a lock held to the end of the transaction
   * (FOR SHARE): a revocation in progress is waited for and seen; one that starts later waits for
   * this transaction, and then sees the token it issued.
   */
  async lockLiveFamily(familyId: string): Promise<boolean> {
    const family = await this.tx.withManager((m) =>
      families(m)
        .createQueryBuilder('f')
        .select('f.id')
        .setLock('pessimistic_read')
        .where('f.id = :familyId AND f.revoked_at IS NULL', { familyId })
        .getOne(),
    );
    return family !== null;
  }

  async revokeFamily(familyId: string, reason: string): Promise<void> {
    await this.tx.withManager((m) =>
      families(m).update(
        { id: familyId, revokedAt: IsNull() },
        { revokedAt: revokedNow, revokedReason: reason },
      ),
    );
  }

  /**
   * Records a reuse of the family's spent token: revokes it if live, and marks it `reuse-detected`
   * if it was revoked for another reason (a logout, a password change: its stolen token replayed
   * afterwards is a theft all the same); whether this was the family's first reuse (false: one
   * was recorded before — a replay in a loop).
   */
  async markReuse(familyId: string): Promise<boolean> {
    const result = await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .update(RefreshTokenFamilyEntity)
        .set({
          revokedAt: () => 'coalesce(revoked_at, statement_timestamp())',
          revokedReason: REUSE_DETECTED,
        })
        .where('id = :familyId AND revoked_reason IS DISTINCT FROM :reason', {
          familyId,
          reason: REUSE_DETECTED,
        })
        .execute(),
    );
    return (result.affected ?? 0) > 0;
  }

  /**
   * Revokes the user's families other than `opened` beyond the `keep` most recently used (a
   * family's last use: its newest token still usable, i.e. unspent and within its idle timeout),
   * returning their ids. Families that cannot be used any more (idle-expired) rank after every
   * usable one, so a script that signs in and abandons each session never pushes out the one in
   * daily use. `opened`, the session being opened, is never among them, even when a sign-in that
   * started later committed first. Sign-ins of one account take their turn here (a transaction
   * lock per user: the user row is only read-locked, FOR SHARE, by a sign-in), so concurrent ones
   * count each other; a family revoked meanwhile (logout, reuse) keeps its own reason.
   */
  async revokeOthersBeyond(
    userId: string,
    opened: string,
    keep: number,
    reason: string,
    now: Date,
  ): Promise<string[]> {
    // raw SQL for the lock: an advisory transaction lock the query builder cannot say
    await this.tx.query(
      `SELECT pg_advisory_xact_lock(${SESSION_LIMIT_LOCK_CLASS}, hashtext($1::text))`,
      [userId],
    );
    return this.tx.withManager(async (m) => {
      const lastUse = tokens(m)
        .createQueryBuilder('t')
        .select('max(t.issued_at)')
        .where('t.family_id = f.id AND t.spent_at IS NULL AND t.idle_expires_at > :now');
      const beyond = families(m)
        .createQueryBuilder('f')
        .select('f.id')
        .where('f.user_id = :userId AND f.id <> :opened', { userId, opened })
        .andWhere('f.revoked_at IS NULL AND f.expires_at > :now', { now })
        .orderBy(`(${lastUse.getQuery()})`, 'DESC', 'NULLS LAST')
        .addOrderBy('f.created_at', 'DESC')
        .addOrderBy('f.id', 'DESC')
        .offset(keep);
      const revoked = await m
        .createQueryBuilder()
        .update(RefreshTokenFamilyEntity)
        .set({ revokedAt: revokedNow, revokedReason: reason })
        .where(`id IN (${beyond.getQuery()}) AND revoked_at IS NULL`)
        .setParameters(beyond.getParameters())
        .returning('id')
        .execute();
      return (revoked.raw as { id: string }[]).map((r) => r.id);
    });
  }

  /** Whether the session (revoked or not) was opened here for this account. */
  async sessionOpened(familyId: string, userId: string): Promise<boolean> {
    return this.tx.withManager((m) => families(m).exists({ where: { id: familyId, userId } }));
  }

  /**
   * The role, as recorded now, of the account whose live session this is: null when no such
   * session is on record here — revoked, purged, its account gone, or never opened here (a token
   * another deployment signed with the same key).
   */
  async roleOfLiveSession(familyId: string, userId: string): Promise<string | null> {
    // (asked by PermissionsGuard before an admin route's handler: a blink is read through)
    const row = await this.tx.readRerunnable((m) =>
      families(m)
        .createQueryBuilder('f')
        .innerJoin('f.user', 'u')
        .select('u.role', 'role')
        .where('f.id = :familyId AND f.user_id = :userId AND f.revoked_at IS NULL', {
          familyId,
          userId,
        })
        .getRawOne<{ role: string }>(),
    );
    return row?.role ?? null;
  }

  /**
   * The family the token belongs to, whatever the token's state, its account, and whether the
   * token was spent (a refresh issued the next one); null for an unknown token.
   */
  async familyOfToken(
    tokenHash: string,
  ): Promise<{ familyId: string; userId: string; spent: boolean } | null> {
    const token = await this.tx.withManager((m) =>
      tokens(m)
        .createQueryBuilder('t')
        .innerJoin('t.family', 'f')
        .select(['t.family_id AS "familyId"', 'f.user_id AS "userId"'])
        .addSelect('t.spent_at IS NOT NULL', 'spent')
        .where('t.token_hash = :tokenHash', { tokenHash })
        .getRawOne<{ familyId: string; userId: string; spent: boolean }>(),
    );
    return token ?? null;
  }

  /**
   * The user's sessions on record (live or ended) no longer name the clients they were opened
   * from: a new password (a change, a reset) — a client is the owner's only under the password
   * it signed in with (`openedFrom`; FailedAttemptLimiter's marks hold the password's digest) —
   * except `keep`, the client the new password was set from (a change by the signed-in owner),
   * under each key it may be on record under (SessionIssuer#clientKeysOf: through a key
   * rotation's roll, the one it was recorded under may be the other key's).
   */
  async forgetClients(userId: string, keep: readonly string[] = []): Promise<void> {
    await this.tx.withManager((m) =>
      m
        .createQueryBuilder()
        .update(RefreshTokenFamilyEntity)
        .set({ clientKey: null })
        .where(
          'user_id = :userId AND client_key IS NOT NULL AND client_key <> ALL(CAST(:keep AS text[]))',
          { userId, keep: [...keep] },
        )
        .execute(),
    );
  }

  /**
   * Revokes every live family of the user; returns the ids of those among them that issued a
   * token since `issuedSince` (the ones whose access tokens may still be valid).
   */
  async revokeAllOfUser(userId: string, reason: string, issuedSince: Date): Promise<string[]> {
    return this.tx.withManager(async (m) => {
      const revoked = await m
        .createQueryBuilder()
        .update(RefreshTokenFamilyEntity)
        .set({ revokedAt: revokedNow, revokedReason: reason })
        .where('user_id = :userId AND revoked_at IS NULL', { userId })
        .returning('id')
        .execute();
      const ids = (revoked.raw as { id: string }[]).map((r) => r.id);
      if (ids.length === 0) return [];
      // the ids as one array parameter: a user with more live families than PostgreSQL takes bind
      // parameters (65,535) would otherwise fail the password change, and so revoke nothing
      const recent = await tokens(m)
        .createQueryBuilder('t')
        .select('DISTINCT t.family_id', 'familyId')
        .where('t.family_id = ANY(CAST(:ids AS uuid[]))', { ids })
        .andWhere('t.issued_at >= :issuedSince', { issuedSince })
        .getRawMany<{ familyId: string }>();
      const withRecent = new Set(recent.map((t) => t.familyId));
      return ids.filter((id) => withRecent.has(id));
    });
  }

  /**
   * Families revoked at or after `since` and within the last `withinMs` — both on the database's
   * clock, which stamps revocations (`revokedNow`) — with when (the record the revocation marks
   * mirror), and the database's clock as read: where the next read starts, whatever this
   * host's clock says.
   */
  async revokedSince(
    since: Date | null,
    withinMs: number,
  ): Promise<{ readAt: Date; revoked: { id: string; revokedAt: Date }[] }> {
    // raw SQL: plain rows (every API process reads this every 2 s, RevokedSessions) and the
    // statement's own clock on a row of its own, which the query builder cannot say
    // with the sessions deleted while not revoked (an account deleted: DeletedSessionEntity)
    const rows: { readAt: Date; id: string | null; revokedAt: Date | null }[] = await this.tx.query(
      `SELECT now.at AS "readAt", f.id, f.at AS "revokedAt"
         FROM (SELECT statement_timestamp() AS at) now
         LEFT JOIN (SELECT id, revoked_at AS at FROM refresh_token_families WHERE revoked_at IS NOT NULL
                    UNION ALL
                    SELECT family_id, deleted_at FROM deleted_sessions) f
           ON f.at >= GREATEST(COALESCE($1::timestamptz, '-infinity'), now.at - $2::bigint * interval '1 millisecond')`,
      [since, withinMs],
    );
    return {
      readAt: rows[0].readAt,
      revoked: rows.flatMap((r) =>
        r.id !== null && r.revokedAt !== null ? [{ id: r.id, revokedAt: r.revokedAt }] : [],
      ),
    };
  }

  /**
   * Up to `$2` families that ended before `$1`: past their lifetime, revoked, or left idle — opened
   * before `$1` and none of their tokens usable at it (the newest token's idle expiry is the
   * latest; most sessions end this way, and were kept until their lifetime was over: 53 days, not
   * 30, after it). Each way of ending is found by an index of its own, so a batch reads about what
   * it returns, however many sessions are live and however many tokens they hold (before, one
   * condition over the whole table: every batch read every family, and walked the tokens of each
   * one opened before `$1` — measured 1.8-2.0 s and ~348k buffers a batch on 1.0 M sessions).
   * Those left idle are found by the family's `idle_expires_at` (the whole hour after its tokens'
   * latest, kept by a trigger: migration 1763800068000 — one found up to an hour later than its
   * tokens alone say; NULL — no token yet, or not yet backfilled — is looked at too), and their
   * tokens are still asked, one probe of `refresh_tokens_family_idle_idx`: the condition is the
   * tokens', as it always was. A family that ended in more than one way is left
   * to the first part that finds it (which, when a later part runs, returned all it found). Each
   * part takes the longest ended first, in its index's order: a LIMIT alone let the planner read
   * the table from its start when it expected many to match (a backlog, after the purge stood
   * still), and with them at the table's end that read most of it, every batch.
   */
  static readonly ENDED_SQL = `
    SELECT id FROM (
      (SELECT f.id FROM refresh_token_families f
        WHERE f.expires_at < $1::timestamptz
        ORDER BY f.expires_at LIMIT $2::int)
      UNION ALL
      (SELECT f.id FROM refresh_token_families f
        WHERE f.revoked_at < $1::timestamptz AND f.expires_at >= $1::timestamptz
        ORDER BY f.revoked_at LIMIT $2::int)
      UNION ALL
      (SELECT f.id FROM refresh_token_families f
        WHERE f.idle_expires_at < $1::timestamptz AND f.created_at < $1::timestamptz
          AND f.expires_at >= $1::timestamptz
          AND (f.revoked_at IS NULL OR f.revoked_at >= $1::timestamptz)
          AND NOT EXISTS (SELECT 1 FROM refresh_tokens t
                           WHERE t.family_id = f.id AND t.idle_expires_at >= $1::timestamptz)
        ORDER BY f.idle_expires_at LIMIT $2::int)
      UNION ALL
      (SELECT f.id FROM refresh_token_families f
        WHERE f.idle_expires_at IS NULL AND f.created_at < $1::timestamptz
          AND f.expires_at >= $1::timestamptz
          AND (f.revoked_at IS NULL OR f.revoked_at >= $1::timestamptz)
          AND NOT EXISTS (SELECT 1 FROM refresh_tokens t
                           WHERE t.family_id = f.id AND t.idle_expires_at >= $1::timestamptz)
        LIMIT $2::int)
    ) ended
    LIMIT $2::int`;

  /**
   * One batch of the purge of sessions that ended before `before`: up to `batch` such families,
   * their tokens first, TOKEN_CHUNK at a time (a family refreshed thousands of times is not
   * removed with all its tokens by one cascading statement), then the families themselves.
   * Returns how many families went.
   */
  async purgeEnded(before: Date, batch = 500): Promise<number> {
    // raw SQL: its plan is asserted on this very text (test/schema/session-purge-plan.test.ts)
    const ended = await this.tx.query<{ id: string }>(RefreshTokenRepository.ENDED_SQL, [
      before,
      batch,
    ]);
    if (ended.length === 0) return 0;
    const ids = ended.map((f) => f.id);
    return this.tx.withManager(async (m) => {
      await drainBatches(() =>
        deleteSelected(
          m,
          RefreshTokenEntity,
          tokens(m)
            .createQueryBuilder('t')
            .select('t.id')
            .where('t.familyId IN (:...ids)', { ids })
            .limit(TOKEN_CHUNK),
        ),
      );
      // the families ended: no tombstone for them (SESSION_PURGE_SETTING), in one transaction
      return this.tx.run(() =>
        this.tx.withManager(async (inTx) => {
          await inTx.query(`SELECT set_config('${SESSION_PURGE_SETTING}', 'on', true)`);
          return (await families(inTx).delete(ids)).affected ?? 0;
        }),
      );
    });
  }

  /**
   * One batch of the purge of tombstones of sessions deleted before `before` (long past their
   * access tokens' lifetime). Returns how many went.
   */
  async purgeDeletedBefore(before: Date, batch = 500): Promise<number> {
    return this.tx.withManager((m) =>
      deleteSelected(
        m,
        DeletedSessionEntity,
        m
          .getRepository(DeletedSessionEntity)
          .createQueryBuilder('d')
          .select('d.family_id')
          .where('d.deleted_at < :before', { before })
          .limit(batch),
        'family_id',
      ),
    );
  }
}

const families = (m: EntityManager): Repository<RefreshTokenFamilyEntity> =>
  m.getRepository(RefreshTokenFamilyEntity);
const tokens = (m: EntityManager): Repository<RefreshTokenEntity> =>
  m.getRepository(RefreshTokenEntity);
