import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import type Redis from 'ioredis';
import { TurnBatch } from '../common/turn-batch';
import { withTimeout } from '../common/with-timeout';
import { APP_CONFIG, AppConfig } from '../config/config';
import { REDIS } from '../redis/redis.module';

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
/** Clears that did not reach Redis are retried this often until they land. */
const RETRY_EVERY_MS = 1_000;

/** Marks products sold out only if no availability-raising commit happened since `gen` was read. */
const MARK = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end
return 1
`;
/**
 * A commit raised availability: these marks go, and a new generation (in-flight marks fail). The
 * DEL first: a Redis full under `noeviction` refuses a script's first command that may grow its
 * data and lets one that has written go on — the SET first, the whole clear was refused, and every
 * process refused the product's buyers until its mark expired (a MARK is refused there too).
 */
const CLEAR = `
if #KEYS > 1 then redis.call('DEL', unpack(KEYS, 2)) end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`;

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
 *   after the mark was written, whatever fails. The refusal reads the marks again after its key's
 *   question (up to ~2.5 s under load): a clear that landed meanwhile is seen.
 * - Reads: every request that may be refused reads the marks it needs in Redis, in one MGET
 *   shared by all requests that arrived during the same event-loop turn and issued after the
 *   last of them arrived (like the catalog's CoalescedVersionReader) — as fresh as a read per
 *   request, at the cost of one round trip per turn. No in-process copy is kept: validating one
 *   would take a Redis read per turn too (as the catalog's version read does), and this read
 *   carries the marks themselves.
 * - Idempotency keys are not this class's business: before refusing, the guard asks the
 *   idempotency records themselves (IdempotencyService#keyInUse), so a key that stored a 201
 *   is replayed by the normal path whatever Redis knows.
 */
@Injectable()
export class SoldOutMarks implements OnApplicationShutdown {
  private readonly logger = new Logger(SoldOutMarks.name);
  private readonly prefix: string;
  private readonly generationKey: string;
  /** The marks (and the generation) read for every request of one event-loop turn, in one MGET. */
  private readonly reads: TurnBatch<string[], (string | null)[] | null>;
  private lastGeneration: string | null = null;
  private bypassUntil = 0;
  /**
   * Products whose clear has not reached Redis yet (retried; this process never refuses them),
   * each with the number of its latest clear: a clear that lands takes off only the products no
   * later clear has named since (that one may have failed, and must be retried). However long
   * Redis is away, no larger than the catalog.
   */
  private readonly pendingClears = new Map<string, number>();
  private clears = 0;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.prefix = config.redis.keyPrefix;
    this.generationKey = `${this.prefix}:stock:generation`;
    this.reads = new TurnBatch(
      (asks) => this.readMarks(asks),
      () => null,
    );
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

  /** True only when every product is marked sold out in Redis right now; false on any doubt. */
  async knownSoldOut(productIds: string[]): Promise<boolean> {
    if (productIds.length === 0 || performance.now() < this.bypassUntil) return false;
    if (productIds.some((p) => this.pendingClears.has(p))) return false;
    const marks = await this.reads.ask(productIds.map((p) => this.markKey(p)));
    return marks !== null && marks.every((m) => m !== null);
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
    this.redis
      .eval(MARK, keys.length, ...keys, generation, SOLD_OUT_MARK_TTL_MS)
      .catch(() => undefined);
  }

  /**
   * Availability of these products was raised by a commit: drop their marks and move the
   * generation on. Call after the commit (tx.afterCommit). A clear that fails is retried every
   * second until it lands, and this process stops refusing those products meanwhile.
   */
  cleared(productIds: string[]): void {
    if (productIds.length === 0) return;
    const clear = ++this.clears;
    for (const p of productIds) this.pendingClears.set(p, clear);
    void this.sendClear(productIds).then((ok) => {
      if (!ok) return this.retryLater(); // they stay pending (and unrefused here) until it lands
      this.landed(productIds.map((p) => [p, clear]));
    });
  }

  /** Takes these products off the pending clears, each unless a later clear named it since. */
  private landed(sent: [string, number][]): void {
    for (const [p, clear] of sent)
      if (this.pendingClears.get(p) === clear) this.pendingClears.delete(p);
  }

  private async sendClear(productIds: string[]): Promise<boolean> {
    const keys = [this.generationKey, ...productIds.map((p) => this.markKey(p))];
    try {
      await withTimeout(
        this.redis.eval(CLEAR, keys.length, ...keys, token()),
        SOLD_OUT_REDIS_TIMEOUT_MS,
      );
      return true;
    } catch (err) {
      this.logger.warn(`sold-out clear not written yet, retrying: ${(err as Error).message}`);
      return false;
    }
  }

  /** One MGET for the asks of one event-loop turn (TurnBatch), with the current generation. */
  private async readMarks(asks: string[][]): Promise<((string | null)[] | null)[]> {
    const unique = [...new Set([this.generationKey, ...asks.flat()])];
    let got: (string | null)[];
    try {
      got = await withTimeout(this.redis.mget(...unique), SOLD_OUT_REDIS_TIMEOUT_MS);
    } catch {
      this.failed();
      return asks.map(() => null);
    }
    const values = new Map(unique.map((k, i) => [k, got[i] ?? null]));
    this.lastGeneration = values.get(this.generationKey) ?? null;
    return asks.map((keys) => keys.map((k) => values.get(k) ?? null));
  }

  private failed(): void {
    this.bypassUntil = performance.now() + BYPASS_AFTER_FAILURE_MS;
  }

  private retryLater(): void {
    if (!this.retryTimer) {
      this.retryTimer = setInterval(() => void this.retry(), RETRY_EVERY_MS);
      this.retryTimer.unref();
    }
  }

  private async retry(): Promise<void> {
    if (this.pendingClears.size > 0) {
      const sent = [...this.pendingClears];
      if (await this.sendClear(sent.map(([p]) => p))) this.landed(sent);
    }
    if (this.pendingClears.size === 0 && this.retryTimer) {
      clearInterval(this.retryTimer);
      this.retryTimer = null;
    }
  }

  private markKey(productId: string): string {
    return `${this.prefix}:stock:sold-out:${productId}`;
  }
}

function token(): string {
  return randomBytes(12).toString('base64url');
}
