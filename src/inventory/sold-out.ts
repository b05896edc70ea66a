import { createHash, randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import type Redis from 'ioredis';
import { APP_CONFIG, AppConfig } from '../config/config';
import { IDEMPOTENCY_TTL_MS } from '../idempotency/idempotency-key';
import { REDIS } from '../redis/redis.module';
import { withTimeout } from '../common/with-timeout';

/**
 * How long a "sold out" mark lives. It bounds how long a buyer can be refused while a unit is
 * available when the clear that should have removed the mark never reached Redis (the clearing
 * process crashed between its commit and the clear, or Redis was unreachable and the retries
 * below did not land in time). In normal operation a clear lands milliseconds after its commit.
 * A sold-out product is marked again by the next refused checkout, so expiry costs one batch of
 * requests going the normal path per product and TTL.
 */
const SOLD_OUT_MARK_TTL_MS = 5_000;
/** A Redis slower than this counts as unavailable: the checkout goes the normal path. */
const SOLD_OUT_REDIS_TIMEOUT_MS = 250;
/** After a Redis failure the fast path stays off this long (no 250 ms toll per request). */
const BYPASS_AFTER_FAILURE_MS = 1_000;
/** Clears and key claims that did not reach Redis are retried this often until they land. */
const RETRY_EVERY_MS = 1_000;
/** Bound on the writes waiting for a retry (a long Redis outage must not grow memory unbounded). */
const MAX_PENDING = 50_000;
/**
 * A key that went the normal path is remembered a little longer than its idempotency record
 * lives (24 h): while the record can be replayed, the fast path leaves the key alone.
 */
const KEY_CLAIM_TTL_MS = IDEMPOTENCY_TTL_MS + 3_600_000;

/** Marks products sold out only if no availability-raising commit happened since `gen` was read. */
const MARK = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end
return 1
`;
/** A commit raised availability: new generation (in-flight marks fail), and these marks go. */
const CLEAR = `
redis.call('SET', KEYS[1], ARGV[1])
if #KEYS > 1 then redis.call('DEL', unpack(KEYS, 2)) end
return 1
`;
/** One more request with this key runs (or ran) the normal path. */
const CLAIM = `
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
`;
/** That request was refused (4xx): it stored nothing, so it no longer needs the key left alone. */
const UNCLAIM = `
local n = redis.call('DECR', KEYS[1])
if n <= 0 then redis.call('DEL', KEYS[1]) end
return n
`;

interface Ask {
  keys: string[];
  resolve: (values: (string | null)[] | null) => void;
}

/**
 * What every API process knows about sold-out products, shared through Redis, so a checkout of
 * products known to be sold out can be refused without a database transaction (the checkout's
 * sold-out fast path, CheckoutSoldOutGuard). The knowledge only ever refuses; a missing, expired
 * or unreadable mark sends the checkout the normal path, which decides under row locks.
 *
 * - A mark `stock:sold-out:<product>` is written only from availability read under the
 *   inventory row lock: after a reservation's COMMIT that left the product at 0 available (the
 *   reservation statement returns the post-update availability), or from a reservation refused
 *   for a product at 0 available (the committed state it read under the lock).
 * - Every commit that raises availability (a release on cancel, expiry or failed payment, a
 *   stock adjustment) clears the marks of its products after it commits, and replaces the
 *   generation token `stock:generation` in the same script.
 * - The race: a mark written after its commit could land after a release that committed later
 *   and whose clear already ran. So the marker passes the generation it read BEFORE its
 *   transaction committed, and the mark is written only if the generation is still that one (a
 *   Lua compare-and-set): any release committed after the reservation clears after its own
 *   commit, so either its new generation is already there (the mark is refused) or its clear
 *   comes later and deletes the mark. Generations are random tokens, never reused, so a Redis
 *   that lost its data cannot make an old generation match again.
 * - Staleness bound: a buyer is refused while a unit is available only between a release's
 *   COMMIT and its clear reaching Redis (one Redis round trip, sent right after the commit; a
 *   failed clear is retried every second), and never longer than SOLD_OUT_MARK_TTL_MS (5 s)
 *   after the mark was written, whatever fails.
 * - Reads: every request that may be refused reads the marks it needs in Redis, in one MGET
 *   shared by all requests that arrived during the same event-loop turn and issued after the
 *   last of them arrived (like the catalog's CoalescedVersionReader) — as fresh as a read per
 *   request, at the cost of one round trip per turn. No in-process copy is kept: the
 *   idempotency-key check below needs a Redis read per request anyway, and the same MGET
 *   carries the marks.
 * - Idempotency keys: a request refused by the fast path stores nothing (as a normal-path 409
 *   does), so a retry runs afresh. But a key that went the normal path may have stored a 201
 *   that a retry must replay. So every checkout passed to the normal path first counts its key
 *   in Redis (`checkout-key:<user>:<key digest>`, INCR, before the interceptor's transaction),
 *   takes the count back when it ends with a 4xx (nothing stored), and the fast path never
 *   refuses a key with a count: it goes the normal path, which replays it (or answers 409
 *   IDEMPOTENCY_KEY_IN_USE / 422 IDEMPOTENCY_KEY_REUSED).
 */
@Injectable()
export class SoldOutMarks implements OnApplicationShutdown {
  private readonly logger = new Logger(SoldOutMarks.name);
  private readonly prefix: string;
  private readonly generationKey: string;
  private batch: Ask[] | null = null;
  private lastGeneration: string | null = null;
  private bypassUntil = 0;
  /** Products whose clear has not reached Redis yet (retried; this process never refuses them). */
  private readonly pendingClears = new Set<string>();
  /** Key claims that did not reach Redis (retried until they land). */
  private readonly pendingClaims = new Set<string>();
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.prefix = config.redis.keyPrefix;
    this.generationKey = `${this.prefix}:stock:generation`;
  }

  onApplicationShutdown(): void {
    if (this.retryTimer) clearInterval(this.retryTimer);
    this.retryTimer = null;
  }

  /**
   * The generation seen by this process's latest read, to pass to markSoldOut() for an
   * observation made after this call (null: none seen yet — then nothing is marked).
   */
  generation(): string | null {
    return this.lastGeneration;
  }

  /**
   * True only when every product is marked sold out in Redis right now and this user's key has
   * never gone the normal path (so nothing can be stored under it). False on any doubt.
   */
  async knownSoldOut(userId: string, key: string, productIds: string[]): Promise<boolean> {
    if (productIds.length === 0 || Date.now() < this.bypassUntil) return false;
    if (productIds.some((p) => this.pendingClears.has(p))) return false;
    const keyClaim = this.claimKey(userId, key);
    if (this.pendingClaims.has(keyClaim)) return false;
    const values = await this.read([keyClaim, ...productIds.map((p) => this.markKey(p))]);
    if (!values) return false;
    const [claimed, ...marks] = values;
    return claimed === null && marks.every((m) => m !== null);
  }

  /**
   * Remembers that this user's key goes the normal path (call before its transaction). Returns
   * whether the claim reached Redis; one that did not is retried until it lands.
   */
  async claim(userId: string, key: string): Promise<boolean> {
    const claimKey = this.claimKey(userId, key);
    if (Date.now() >= this.bypassUntil) {
      try {
        await withTimeout(this.redis.eval(CLAIM, 1, claimKey, KEY_CLAIM_TTL_MS), SOLD_OUT_REDIS_TIMEOUT_MS);
        return true;
      } catch {
        this.failed();
      }
    }
    this.pending(this.pendingClaims, claimKey);
    return false;
  }

  /** The request whose claim landed was refused (4xx): nothing was stored under its key. */
  unclaim(userId: string, key: string): void {
    this.redis.eval(UNCLAIM, 1, this.claimKey(userId, key)).catch(() => undefined); // left: only conservative
  }

  /**
   * Marks these products sold out, if `generation` (read before the observing transaction
   * committed) is still current. Fire and forget: a lost mark only means the normal path.
   */
  markSoldOut(productIds: string[], generation: string | null): void {
    if (productIds.length === 0) return;
    if (generation === null) {
      // first use (or Redis lost its data): start a generation; the next observation marks
      this.redis.set(this.generationKey, token(), 'NX').catch(() => undefined);
      return;
    }
    const keys = [this.generationKey, ...productIds.map((p) => this.markKey(p))];
    this.redis.eval(MARK, keys.length, ...keys, generation, SOLD_OUT_MARK_TTL_MS).catch(() => undefined);
  }

  /**
   * Availability of these products was raised by a commit: drop their marks and move the
   * generation on. Call after the commit (tx.afterCommit). A clear that fails is retried every
   * second until it lands, and this process stops refusing those products meanwhile.
   */
  cleared(productIds: string[]): void {
    if (productIds.length === 0) return;
    for (const p of productIds) this.pendingClears.add(p);
    void this.sendClear(productIds).then((ok) => {
      for (const p of productIds) {
        if (ok) this.pendingClears.delete(p);
        else this.pending(this.pendingClears, p);
      }
    });
  }

  private async sendClear(productIds: string[]): Promise<boolean> {
    const keys = [this.generationKey, ...productIds.map((p) => this.markKey(p))];
    try {
      await withTimeout(this.redis.eval(CLEAR, keys.length, ...keys, token()), SOLD_OUT_REDIS_TIMEOUT_MS);
      return true;
    } catch (err) {
      this.logger.warn(`sold-out clear not written yet, retrying: ${(err as Error).message}`);
      return false;
    }
  }

  /** One MGET for every request that asked during this event-loop turn (issued after all of them). */
  private read(keys: string[]): Promise<(string | null)[] | null> {
    return new Promise((resolve) => {
      if (this.batch) {
        this.batch.push({ keys, resolve });
        return;
      }
      this.batch = [{ keys, resolve }];
      setImmediate(() => void this.flush());
    });
  }

  private async flush(): Promise<void> {
    const batch = this.batch ?? [];
    this.batch = null;
    const unique = [...new Set([this.generationKey, ...batch.flatMap((a) => a.keys)])];
    let values: Map<string, string | null> | null = null;
    try {
      const got = await withTimeout(this.redis.mget(...unique), SOLD_OUT_REDIS_TIMEOUT_MS);
      values = new Map(unique.map((k, i) => [k, got[i] ?? null]));
      this.lastGeneration = values.get(this.generationKey) ?? null;
    } catch {
      this.failed();
    }
    for (const ask of batch) ask.resolve(values ? ask.keys.map((k) => values.get(k) ?? null) : null);
  }

  private failed(): void {
    this.bypassUntil = Date.now() + BYPASS_AFTER_FAILURE_MS;
  }

  private pending(set: Set<string>, item: string): void {
    if (set.size < MAX_PENDING) set.add(item);
    if (!this.retryTimer) {
      this.retryTimer = setInterval(() => void this.retry(), RETRY_EVERY_MS);
      this.retryTimer.unref();
    }
  }

  private async retry(): Promise<void> {
    if (this.pendingClears.size > 0) {
      const products = [...this.pendingClears];
      if (await this.sendClear(products)) for (const p of products) this.pendingClears.delete(p);
    }
    for (const claimKey of [...this.pendingClaims]) {
      try {
        await withTimeout(this.redis.eval(CLAIM, 1, claimKey, KEY_CLAIM_TTL_MS), SOLD_OUT_REDIS_TIMEOUT_MS);
        this.pendingClaims.delete(claimKey);
      } catch {
        break;
      }
    }
    if (this.pendingClears.size === 0 && this.pendingClaims.size === 0 && this.retryTimer) {
      clearInterval(this.retryTimer);
      this.retryTimer = null;
    }
  }

  private markKey(productId: string): string {
    return `${this.prefix}:stock:sold-out:${productId}`;
  }

  private claimKey(userId: string, key: string): string {
    return `${this.prefix}:checkout-key:${userId}:${createHash('sha256').update(key).digest('base64url')}`;
  }
}

function token(): string {
  return randomBytes(12).toString('base64url');
}
