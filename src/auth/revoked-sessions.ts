import { AsyncResource } from 'node:async_hooks';
import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnApplicationShutdown,
} from '@nestjs/common';
import type Redis from 'ioredis';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { REDIS } from '../redis/redis.module';
import { withTimeout } from '../common/with-timeout';
import { RefreshTokenRepository } from './refresh-token.repository';

/** A Redis slower than this counts as unavailable for the revocation check or mark. */
export const REVOCATION_REDIS_TIMEOUT_MS = 250;
/** After Redis failed, checks skip it (fail open) for this long instead of each waiting. */
export const REVOCATION_REDIS_BACKOFF_MS = 1000;
/** How often marks that could not be written are tried again. */
export const REVOCATION_RETRY_MS = 1000;
/** Marks written per Redis pipeline. */
const FLUSH_CHUNK = 500;
/** How long a revocation that failed to commit is retried (PendingRevocations). */
export const PENDING_REVOCATION_RETRY_MS = 10 * 60_000;
/** How often each process reads the record for revocations made elsewhere (whatever Redis says). */
export const REVOCATION_POLL_MS = 2_000;
/**
 * How far back past the previous poll each one reads: a revocation's `revoked_at` is stamped by
 * the host that made it, whose clock may run behind (CLOCK_SKEW_MS), and commits a moment after
 * (a retried one is stamped when it finally commits: PendingRevocations) — a minute more for that.
 * Not more: every poll re-reads this window.
 */
const POLL_OVERLAP_MS = 2 * 60_000;
/** How soon a re-seed that could not read the database is tried again. */
const RESEED_RETRY_MS = 5_000;
/** Revoked sessions remembered in process memory (oldest forgotten first). */
const REVOCATION_MEMORY_LIMIT = 100_000;
/**
 * On top of the access-token lifetime: the host that signed a token (its `iat`, so its `exp`)
 * may run ahead of the database's clock, which stamps the revocation whose record is kept this
 * long after it. With a minute, a token signed by a host two minutes fast worked again for the
 * last minute of its life after its session was revoked (reproduced with two API processes, one
 * of them 120 s fast). NTP keeps hosts within milliseconds; five minutes covers a host whose sync
 * failed for weeks or a VM resumed without a step. Costs only revocations kept that much longer.
 */
export const CLOCK_SKEW_MS = 5 * 60_000;

type RedisClient = Pick<Redis, 'exists' | 'pipeline'> & Partial<Pick<Redis, 'on'>>;

/**
 * Revoked sessions (refresh-token families), so that their access tokens stop working at once
 * instead of living until they expire. An access token carries its family id (`fam`); every
 * authenticated request asks whether that family is revoked.
 *
 * Where it is kept: one Redis key per revoked family, `<REDIS_KEY_PREFIX>:revoked-session:<id>`,
 * shared by every API process and living as long as the longest access token that family can
 * still have (JWT_ACCESS_TTL_SECONDS, plus CLOCK_SKEW_MS: a signer's clock may run ahead) — so the set never holds more
 * than the revocations of the last access-token lifetime. The database (`revoked_at`) stays the
 * record; the marks are written after the revoking transaction commits.
 *
 * The record is read too, whatever Redis says: every REVOCATION_POLL_MS each process that checks
 * access tokens (from its first check on; a worker never does) reads the families revoked since
 * its previous read (one indexed query) into memory. A Redis that is
 * down, slow, emptied, or up but refusing writes (maxmemory under `noeviction`, a replica
 * answering READONLY after a failover — its reads still answer "not revoked") therefore never
 * keeps a revocation made elsewhere from reaching this process for longer than a poll: a logout
 * handled by another process ends its access tokens here within seconds (API.md).
 *
 * Redis unavailable (down, or slower than REVOCATION_REDIS_TIMEOUT_MS): the check FAILS OPEN —
 * refusing every signed-in request while Redis is out would turn a cache outage into a full
 * outage — and skips Redis for REVOCATION_REDIS_BACKOFF_MS, so requests do not each wait on it;
 * what stays refused is what memory holds (this process's own revocations and those the polls
 * read). Marks that could not be written are retried every REVOCATION_RETRY_MS until they land
 * or no longer matter.
 *
 * Redis that comes back without its data (a restart without persistence, a failover to a
 * replica behind) would forget every mark: at boot and whenever its connection becomes ready,
 * each process writes the marks again from the record (reseed()).
 */
@Injectable()
export class RevokedSessions implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(RevokedSessions.name);
  private readonly prefix: string;
  private readonly lifetimeMs: number;
  /** Families known to be revoked → when that stops mattering (epoch ms). */
  private readonly known = new Map<string, number>();
  /** Marks not yet in Redis → when they stop mattering (epoch ms). */
  private readonly pending = new Map<string, number>();
  private retryTimer?: NodeJS.Timeout;
  private skipRedisUntil = 0;
  private lastWarningAt = 0;
  private reseeding?: Promise<number>;
  private reseedTimer?: NodeJS.Timeout;
  private closed = false;
  private pollTimer?: NodeJS.Timeout;
  /** The database's clock when the last poll that answered read (epoch ms); undefined before the first. */
  private polledAt?: number;
  /** Settles once the first poll has read the record (or failed to): the first checks wait for it. */
  private firstRead?: Promise<void>;
  /** Until when (epoch ms) checks wait for that first read: once, REVOCATION_REDIS_TIMEOUT_MS at most. */
  private firstReadUntil = 0;
  private readonly rootContext = new AsyncResource('RevocationPoll');

  constructor(
    @Inject(REDIS) private readonly redis: RedisClient,
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly clock: Clock,
    @Inject(RefreshTokenRepository)
    private readonly families: Pick<RefreshTokenRepository, 'revokedSince'>,
  ) {
    this.prefix = `${config.redis.keyPrefix}:revoked-session:`;
    this.lifetimeMs = config.jwt.accessTtlSeconds * 1000 + CLOCK_SKEW_MS;
  }

  /**
   * The earliest issue time of an access token that can still be valid now: only families
   * that issued one since then need a mark.
   */
  accessTokensValidSince(now: Date): Date {
    return new Date(now.getTime() - this.lifetimeMs);
  }

  /**
   * Marks the families revoked. Remembered in this process at once; written to Redis before
   * returning, or retried in the background when Redis is unavailable. Never throws.
   *
   * Called from inside the revocation's transaction, before its COMMIT: a commit whose answer is
   * lost (the connection drops; the request answers 503) may still have revoked the families, and
   * a retry finds nothing left to revoke — so the marks go out first. Should the transaction roll
   * back instead, the marks only end those sessions' access tokens early (at most one access-token
   * lifetime), the safe side of a security effect.
   */
  async add(familyIds: readonly string[]): Promise<void> {
    if (familyIds.length === 0) return;
    const until = this.clock.now().getTime() + this.lifetimeMs;
    for (const id of familyIds) {
      this.remember(id, until);
      this.pending.set(id, until);
    }
    await this.flush();
  }

  /** True when the family is known revoked. Fails open (false) when Redis is unavailable. */
  async isRevoked(familyId: string): Promise<boolean> {
    if (!this.pollTimer) this.poll(); // this process checks tokens: it reads the record from now on
    // the first checks wait for that first read (briefly): a revocation made elsewhere since the
    // boot's re-seed, its mark refused by Redis, would otherwise pass here until the next poll
    // (a read that hangs — a database black-holed — holds checks up only until then, not each one)
    const wait = this.firstRead ? this.firstReadUntil - this.clock.now().getTime() : 0;
    if (wait > 0) await withTimeout(this.firstRead!, wait).catch(() => undefined);
    const now = this.clock.now().getTime();
    const until = this.known.get(familyId);
    if (until !== undefined) {
      if (until > now) return true;
      this.known.delete(familyId);
    }
    if (now < this.skipRedisUntil) return false;
    try {
      const found = await withTimeout(
        this.redis.exists(this.prefix + familyId),
        REVOCATION_REDIS_TIMEOUT_MS,
      );
      if (found === 0) return false;
      this.remember(familyId, now + this.lifetimeMs);
      return true;
    } catch (err) {
      this.unavailable(err, now);
      return false;
    }
  }

  onApplicationBootstrap(): void {
    this.redis.on?.('ready', () => void this.reseed());
    void this.reseed();
  }

  /**
   * Writes the marks of every family revoked within the last access-token lifetime again, from
   * the database (the record), each with the lifetime it has left; remembered here too. One pass
   * at a time; never throws (a database that cannot answer leaves the marks as they are).
   * Returns how many families it marked.
   */
  reseed(): Promise<number> {
    this.reseeding ??= this.reseedOnce().finally(() => (this.reseeding = undefined));
    return this.reseeding;
  }

  /**
   * Reads the families revoked within the access-token lifetime into memory, then every
   * REVOCATION_POLL_MS those revoked since the previous read (less POLL_OVERLAP_MS), until
   * shutdown. A database that cannot answer leaves memory as it is until the next tick, which
   * reads from the same point. Started by the process's first check (isRevoked): a process that
   * never checks an access token (the worker) never polls.
   */
  private poll(): void {
    if (this.pollTimer || this.closed) return;
    let firstDone!: () => void;
    this.firstRead = new Promise<void>((resolve) => (firstDone = resolve));
    this.firstReadUntil = this.clock.now().getTime() + REVOCATION_REDIS_TIMEOUT_MS;
    const tick = async () => {
      if (this.closed) return;
      const now = this.clock.now().getTime();
      // from the previous read (less the overlap) on the database's clock, which stamps the
      // revocations: a host whose clock runs ahead of the others' would otherwise start after them
      const since = this.polledAt === undefined ? null : new Date(this.polledAt - POLL_OVERLAP_MS);
      try {
        const { readAt, revoked } = await this.families.revokedSince(since, this.lifetimeMs);
        for (const { id, revokedAt } of revoked) {
          const until = revokedAt.getTime() + this.lifetimeMs;
          if (until > now) this.remember(id, Math.max(this.known.get(id) ?? 0, until));
        }
        this.polledAt = readAt.getTime();
      } catch {
        // the database is unreachable too: the next tick reads from the same point
      }
      if (this.firstRead) {
        this.firstRead = undefined; // read (or tried): later checks never wait
        firstDone();
      }
      this.pollTimer = setTimeout(() => void tick(), REVOCATION_POLL_MS);
      this.pollTimer.unref();
    };
    // in the context this service was built in, not the request's whose Redis check failed:
    // the reads must not join (or outlive) that request's transaction
    this.pollTimer = this.rootContext.runInAsyncScope(() => setTimeout(() => void tick(), 0));
    this.pollTimer.unref();
  }

  private async reseedOnce(): Promise<number> {
    let revoked: { id: string; revokedAt: Date }[];
    try {
      revoked = (await this.families.revokedSince(null, this.lifetimeMs)).revoked;
    } catch (err) {
      this.logger.warn(
        `revocation marks not re-written (again in ${RESEED_RETRY_MS} ms): ${err instanceof Error ? err.message : String(err)}`,
      );
      if (!this.closed) {
        clearTimeout(this.reseedTimer);
        this.reseedTimer = setTimeout(() => void this.reseed(), RESEED_RETRY_MS);
        this.reseedTimer.unref();
      }
      return 0;
    }
    const now = this.clock.now().getTime();
    let marked = 0;
    for (const { id, revokedAt } of revoked) {
      const until = revokedAt.getTime() + this.lifetimeMs;
      if (until <= now) continue;
      this.remember(id, Math.max(this.known.get(id) ?? 0, until));
      this.pending.set(id, Math.max(this.pending.get(id) ?? 0, until));
      marked++;
    }
    await this.flush();
    return marked;
  }

  onApplicationShutdown(): void {
    this.closed = true;
    clearTimeout(this.reseedTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.pollTimer);
    this.retryTimer = undefined;
  }

  private remember(familyId: string, until: number): void {
    this.known.set(familyId, until);
    if (this.known.size > REVOCATION_MEMORY_LIMIT) {
      const oldest = this.known.keys().next().value;
      if (oldest !== undefined) this.known.delete(oldest);
    }
  }

  /** Writes the pending marks (each with the lifetime it has left). */
  private async flush(): Promise<void> {
    const now = this.clock.now().getTime();
    const batch = [...this.pending].filter(([id, until]) => {
      if (until > now) return true;
      this.pending.delete(id);
      return false;
    });
    // in pipelines of FLUSH_CHUNK (a re-seed after Redis lost its data writes thousands), each
    // within the timeout: a large batch must not look like an unavailable Redis
    for (let from = 0; from < batch.length; from += FLUSH_CHUNK) {
      const chunk = batch.slice(from, from + FLUSH_CHUNK);
      const pipeline = this.redis.pipeline();
      for (const [id, until] of chunk) pipeline.set(this.prefix + id, '1', 'PX', until - now);
      try {
        const results = await withTimeout(pipeline.exec(), REVOCATION_REDIS_TIMEOUT_MS);
        chunk.forEach(([id, until], i) => {
          // a newer add() for the same family keeps its own, later, entry
          if (!results?.[i]?.[0] && this.pending.get(id) === until) this.pending.delete(id);
        });
      } catch (err) {
        this.unavailable(err, now);
        break;
      }
    }
    if (this.pending.size > 0) this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.flush();
    }, REVOCATION_RETRY_MS);
    this.retryTimer.unref();
  }

  private unavailable(err: unknown, now: number): void {
    this.skipRedisUntil = now + REVOCATION_REDIS_BACKOFF_MS;
    if (now - this.lastWarningAt < 10_000) return;
    this.lastWarningAt = now;
    this.logger.warn(
      `session revocation store unavailable (checks fail open; ${this.pending.size} mark(s) ` +
        `waiting): ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}
