import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnApplicationShutdown,
} from '@nestjs/common';
import type Redis from 'ioredis';
import { withTimeout } from '../common/with-timeout';
import { isUuid } from '../common/ids';
import { APP_CONFIG, AppConfig } from '../config/config';
import { TransactionHost } from '../database/transaction-host';
import { REDIS } from '../redis/redis.module';
import { RefreshTokenRepository } from './refresh-token.repository';
import { PENDING_REVOCATION_RETRY_MS, RevokedSessions } from './revoked-sessions';

const BACKOFF_MAX_MS = 5_000;
/** How often each process sweeps the revocations recorded as pending (any process's). */
const PENDING_SWEEP_MS = 30_000;
/** A Redis slower than this counts as unavailable for the record (the in-process retry goes on). */
const REDIS_TIMEOUT_MS = 250;

type RedisClient = Pick<Redis, 'hset' | 'hdel' | 'hgetall'>;

/**
 * Revocations that must commit whatever became of the request that decided them. A detected
 * refresh-token reuse is history (the token was spent), but the transaction that revokes its family
 * can fail (a database blink before or at its COMMIT). Then, at once:
 *  - the family is marked revoked (RevokedSessions): its access tokens and its refresh tokens are
 *    refused from now on, though the database does not say so yet;
 *  - it is recorded as pending in Redis (`<REDIS_KEY_PREFIX>:pending-revocations`, a hash), so
 *    that a process stopped or killed before it commits does not take it with it — logout and
 *    reuse record it before their COMMIT already (`recordAhead`), for a process killed before it
 *    could see its COMMIT fail;
 *  - this process retries it in a transaction of its own, with backoff (100 ms doubling to 5 s),
 *    for up to 10 minutes — and past them for as long as the record could not be written (Redis
 *    down or slow when it was decided): the sweeps cannot see what is not recorded, so it is
 *    recorded again with every renewal of the mark, and once more at shutdown.
 * Every PENDING_SWEEP_MS each process (API and worker) tries once each recorded revocation it is not
 * retrying itself, renewing its mark first — so the family stays refused however long the
 * database is out. The record is removed once the revocation has committed (and its mark renewed
 * for a whole access-token lifetime). Committing twice is harmless: `revokeFamily` only touches a
 * live family.
 */
@Injectable()
export class PendingRevocations implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(PendingRevocations.name);
  private readonly stop = new AbortController();
  private readonly running = new Set<Promise<void>>();
  /** Families this process is retrying. */
  private readonly retrying = new Set<string>();
  private readonly key: string;
  private sweepTimer?: NodeJS.Timeout;
  private sweeping = false;

  constructor(
    private readonly tx: TransactionHost,
    private readonly refreshTokens: RefreshTokenRepository,
    private readonly revoked: RevokedSessions,
    @Inject(REDIS) private readonly redis: RedisClient,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.key = `${config.redis.keyPrefix}:pending-revocations`;
  }

  /** Marks and records the family, then revokes it in the background until that commits. Never throws. */
  revokeFamily(familyId: string, reason: string, at: Date): void {
    const marked = this.revoked.add([familyId]);
    const recorded = this.record(familyId, reason, at);
    if (this.retrying.has(familyId)) return;
    this.retrying.add(familyId);
    const run = Promise.all([marked, recorded])
      .then(([, isRecorded]) => this.retry(familyId, reason, at, isRecorded))
      .finally(() => {
        this.running.delete(run);
        this.retrying.delete(familyId);
      });
    this.running.add(run);
  }

  /**
   * For a revocation about to COMMIT in the caller's transaction: recorded as pending first, so
   * that a process killed before its COMMIT (or before it could see the COMMIT fail) leaves the
   * record to the sweeps instead of taking the revocation with it; the record goes once the
   * transaction has committed. Never throws (Redis unavailable: the caller's own failure path
   * still hands a failed revocation to `revokeFamily`).
   */
  async recordAhead(familyId: string, reason: string, at: Date): Promise<void> {
    await this.record(familyId, reason, at);
    this.tx.afterCommit(() => void this.forget(familyId));
  }

  /** Settles once every retry of this process has committed or been left to the sweeps (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  /**
   * One pass over the recorded revocations no retry of this process holds: each is marked again
   * and tried once. Returns how many committed. Never throws.
   */
  async sweep(): Promise<number> {
    let entries: Record<string, string>;
    try {
      entries = await withTimeout(this.redis.hgetall(this.key), REDIS_TIMEOUT_MS);
    } catch {
      return 0; // Redis unavailable: the records wait for the next pass
    }
    let committed = 0;
    for (const [familyId, value] of Object.entries(entries)) {
      if (this.retrying.has(familyId) || this.stop.signal.aborted) continue;
      const pending = parseRecord(value);
      // (a field no session id — written by hand, torn —: its revocation would fail the same way
      // at every pass of every process, for ever)
      if (!pending || !isUuid(familyId)) {
        await this.forget(familyId);
        continue;
      }
      await this.revoked.add([familyId]);
      if ((await this.commit(familyId, pending.reason)) === true) committed++;
    }
    return committed;
  }

  onApplicationBootstrap(): void {
    this.sweepTimer = setInterval(() => this.sweepInBackground(), PENDING_SWEEP_MS);
    this.sweepTimer.unref();
    this.sweepInBackground();
  }

  /** A timer's pass: skipped while the previous one still runs; awaited at shutdown. */
  private sweepInBackground(): void {
    if (this.sweeping || this.stop.signal.aborted) return;
    const run = this.sweep()
      .then(() => undefined)
      .finally(() => {
        this.running.delete(run);
        this.sweeping = false;
      });
    this.sweeping = true;
    this.running.add(run);
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.sweepTimer);
    this.stop.abort();
    await this.settled();
  }

  private async retry(
    familyId: string,
    reason: string,
    at: Date,
    recorded: boolean,
  ): Promise<void> {
    const started = performance.now();
    let markedAt = started;
    for (let attempt = 1; ; attempt++) {
      if (performance.now() - markedAt >= PENDING_SWEEP_MS) {
        // the mark outlives the retry however short the access-token lifetime (the sweeps do
        // the same for records no process retries); and the record is written again with it
        // (an HSET: the same record) — a Redis that lost its data since lost it too, and the
        // sweeps cannot take over what is not recorded
        markedAt = performance.now();
        await this.revoked.add([familyId]);
        recorded = await this.record(familyId, reason, at);
      }
      const outcome = await this.commit(familyId, reason);
      if (outcome === true) {
        this.logger.warn(
          `session ${familyId}: revocation (${reason}) committed after ${attempt} attempt(s)`,
        );
        return;
      }
      const stopping = this.stop.signal.aborted;
      if (performance.now() - started >= PENDING_REVOCATION_RETRY_MS || stopping) {
        recorded = await this.record(familyId, reason, at); // (again: handed over as it stands now)
        if (recorded) {
          this.logger.error(
            `session ${familyId}: revocation (${reason}) not committed yet, left to the sweeps: ${outcome.message}`,
          );
          return;
        }
        if (stopping) {
          this.logger.error(
            `session ${familyId}: revocation (${reason}) neither committed nor recorded before shutdown: ` +
              `its mark lapses within an access-token lifetime; revoke the session by hand`,
          );
          return;
        }
        // not recorded: nobody else knows of it — this process goes on
      }
      if (!(await this.pause(Math.min(100 * 2 ** (attempt - 1), BACKOFF_MAX_MS)))) {
        recorded = await this.record(familyId, reason, at);
        this.logger.error(
          `session ${familyId}: revocation (${reason}) not committed before shutdown, ` +
            (recorded ? 'left to the sweeps' : 'nor recorded: revoke the session by hand'),
        );
        return;
      }
    }
  }

  /** Waits `ms`; false when shutdown came first. */
  private pause(ms: number): Promise<boolean> {
    const signal = this.stop.signal;
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', stopped);
        resolve(true);
      }, ms);
      const stopped = () => {
        clearTimeout(timer);
        resolve(false);
      };
      signal.addEventListener('abort', stopped, { once: true });
    });
  }

  /**
   * The revocation in a transaction of its own: true once committed, else what failed. Stamped
   * by the database when it is made, not when it was decided (possibly minutes before): the
   * processes that read revocations from the record while Redis is down (RevokedSessions) read
   * what is new since their previous read, and a late one must look new.
   */
  private async commit(familyId: string, reason: string): Promise<true | Error> {
    try {
      await this.tx.runOwn(() => this.refreshTokens.revokeFamily(familyId, reason));
    } catch (err) {
      return err as Error;
    }
    await this.revoked.add([familyId]); // a whole access-token lifetime from now
    await this.forget(familyId);
    return true;
  }

  /** True once the record is written. */
  private async record(familyId: string, reason: string, at: Date): Promise<boolean> {
    try {
      await withTimeout(
        this.redis.hset(this.key, familyId, JSON.stringify({ reason, at: at.toISOString() })),
        REDIS_TIMEOUT_MS,
      );
      return true;
    } catch (err) {
      this.logger.warn(
        `session ${familyId}: revocation not recorded as pending (only this process retries it): ${(err as Error).message}`,
      );
      return false;
    }
  }

  private async forget(familyId: string): Promise<void> {
    // a record left behind is committed again by a sweep (a no-op) and removed then
    await withTimeout(this.redis.hdel(this.key, familyId), REDIS_TIMEOUT_MS).catch(() => undefined);
  }
}

function parseRecord(value: string): { reason: string; at: Date } | null {
  try {
    const parsed = JSON.parse(value) as { reason?: unknown; at?: unknown };
    const at = typeof parsed.at === 'string' ? new Date(parsed.at) : null;
    if (typeof parsed.reason !== 'string' || !at || Number.isNaN(at.getTime())) return null;
    return { reason: parsed.reason, at };
  } catch {
    return null;
  }
}
