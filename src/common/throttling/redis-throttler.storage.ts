import { Inject, Injectable } from '@nestjs/common';
import type { ThrottlerStorage } from '@nestjs/throttler';
import type { ThrottlerStorageRecord } from '@nestjs/throttler/dist/throttler-storage-record.interface';
import type Redis from 'ioredis';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { REDIS } from '../../redis/redis.module';
import { ConnectionEvents, whenConnected } from '../../redis/when-connected';
import { withTimeout } from '../with-timeout';

/**
 * Fixed window, atomically in one script: INCR, set the expiry on the first hit (or if it is
 * somehow missing), answer hits and milliseconds left.
 */
const INCREMENT = `
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return { hits, ttl }
`;

/** A counter's hits and milliseconds left, read without counting (none: 0 hits). */
const PEEK = `
local hits = tonumber(redis.call('GET', KEYS[1]) or '0')
return { hits, redis.call('PTTL', KEYS[1]) }
`;

/** A counter started afresh (its window with it). */
const RESET = `redis.call('DEL', KEYS[1]) return 1`;
/**
 * One hit back on each counter, the window's expiry kept — a counter back at none is deleted: a
 * key left at zero for its window is a key an unserved request made (refusals from fresh /64s
 * each left hour-long ones).
 */
const GIVE_BACK = `
for _, key in ipairs(KEYS) do
  local hits = tonumber(redis.call('GET', key) or '0')
  if hits > 1 then redis.call('DECR', key) elseif hits == 1 then redis.call('DEL', key) end
end
return #KEYS
`;

/**
 * After a command failed — no answer within RATE_LIMIT_STORE_TIMEOUT_MS (500 ms by default: a
 * Redis stalled, a connection gone silent) or refused (between connections, an error reply) — the
 * store is not asked for this long: the policies a request counts, and the requests after it, each
 * waited their own timeout on a silent Redis, one after another (a checkout counts three: 1.8 s
 * instead of 0.2 s, for as long as the silence lasted). Now a request pays one at most: the rest fail at once,
 * as the policy says (let through, or 503). Over at the client's next connection (its 'ready'): a
 * fail-closed policy that waited out a reconnect (connected) counts on the new one.
 */
export const UNASKED_AFTER_FAILURE_MS = 1_000;

/** Per client: until when the store is not asked (storeFailed), on the monotonic clock. */
const unaskedUntil = new WeakMap<object, number>();
/** The clients whose every 'ready' asks them again (one listener each, for good). */
const askedAgainOnReady = new WeakSet<object>();

/**
 * A command of `client`'s failed: it is not asked for UNASKED_AFTER_FAILURE_MS, or until it
 * connects again (storeUnasked).
 */
function storeFailed(client: ConnectionEvents): void {
  unaskedUntil.set(client, performance.now() + UNASKED_AFTER_FAILURE_MS);
  if (askedAgainOnReady.has(client) || !client.on) return;
  askedAgainOnReady.add(client);
  client.on('ready', () => unaskedUntil.delete(client));
}

/** Whether `client` is not to be asked now (a command of it failed a moment ago: storeFailed). */
function storeUnasked(client: ConnectionEvents): boolean {
  return performance.now() < (unaskedUntil.get(client) ?? 0);
}

/**
 * What `send` sends to the limits' store (`client`), answered within `timeoutMs`
 * (RATE_LIMIT_STORE_TIMEOUT_MS: a Redis slower than that counts as unavailable); refused
 * at once, unsent, while the store is not asked (a command failed a moment ago), and a failure
 * makes it so for UNASKED_AFTER_FAILURE_MS (storeFailed). Shared by the request limits and the
 * sign-in limiter: one silent Redis costs a request one wait, whichever asks first.
 */
export async function askStore<T>(
  client: ConnectionEvents,
  timeoutMs: number,
  send: () => Promise<T>,
): Promise<T> {
  if (storeUnasked(client)) throw new Error('not asked: the store failed a moment ago');
  try {
    return await withTimeout(send(), timeoutMs);
  } catch (err) {
    storeFailed(client);
    throw err;
  }
}

export class RateLimitStoreUnavailable extends Error {
  constructor(cause: unknown) {
    super(
      `rate-limit store unavailable: ${cause instanceof Error ? cause.message : String(cause)}`,
    );
    this.name = 'RateLimitStoreUnavailable';
  }
}

/**
 * @nestjs/throttler storage on the shared ioredis client, so every API instance counts
 * together. Keys: `<REDIS_KEY_PREFIX>:rl:<policy>:<sha256 of the tracker>`. The client fails
 * fast when Redis is down (no offline queue) and a stalled Redis is cut off after
 * RATE_LIMIT_STORE_TIMEOUT_MS: either way this throws RateLimitStoreUnavailable, and the guard
 * applies the policy's fail-open / fail-closed choice — at once for a second after a failure
 * (UNASKED_AFTER_FAILURE_MS).
 */
@Injectable()
export class RedisThrottlerStorage implements ThrottlerStorage {
  private readonly prefix: string;
  private readonly timeoutMs: number;

  constructor(
    @Inject(REDIS)
    private readonly redis: Pick<Redis, 'eval'> & ConnectionEvents,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.prefix = `${config.redis.keyPrefix}:rl:`;
    this.timeoutMs = config.rateLimitStoreTimeoutMs;
  }

  /**
   * Takes one hit back from each window (a request refused for the room it needed left after it:
   * the refusal itself must not spend that room; one refused by a later policy), in one script.
   * Best effort: a Redis that cannot answer keeps them.
   */
  async giveBack(...keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.ask(GIVE_BACK, keys).catch(() => undefined);
  }

  /** Starts a counter afresh (best effort: a Redis that cannot answer keeps it). */
  async reset(key: string): Promise<void> {
    await this.ask(RESET, [key]).catch(() => undefined);
  }

  /**
   * Resolves once the store's connection is up, or its allowance (RATE_LIMIT_STORE_TIMEOUT_MS
   * from when it was first found down) runs out: a fail-closed policy counts after a reconnect,
   * not into its gap (whenConnected).
   */
  connected(): Promise<void> {
    return whenConnected(this.redis, this.timeoutMs);
  }

  async increment(
    key: string,
    ttlMs: number,
    limit: number,
    _blockDuration: number,
    _throttlerName: string,
  ): Promise<ThrottlerStorageRecord> {
    let reply: unknown;
    try {
      reply = await this.ask(INCREMENT, [key], ttlMs);
    } catch (err) {
      throw new RateLimitStoreUnavailable(err);
    }
    const [hits, pttl] = reply as [number, number];
    const timeToExpire = Math.max(1, Math.ceil(pttl / 1000));
    const isBlocked = hits > limit;
    return {
      totalHits: hits,
      timeToExpire,
      isBlocked,
      timeToBlockExpire: isBlocked ? timeToExpire : 0,
    };
  }

  /**
   * The counter's hits so far and the seconds left of its window, counting nothing (a question
   * asked before the work a hit pays for: AccountRateLimit#refuseIfSpent). Throws
   * RateLimitStoreUnavailable as increment does.
   */
  async peek(key: string): Promise<{ totalHits: number; timeToExpire: number }> {
    let reply: unknown;
    try {
      reply = await this.ask(PEEK, [key]);
    } catch (err) {
      throw new RateLimitStoreUnavailable(err);
    }
    const [hits, pttl] = reply as [number, number];
    return { totalHits: Number(hits), timeToExpire: Math.max(1, Math.ceil(pttl / 1000)) };
  }

  /** One script on `keys` (askStore). */
  private ask(script: string, keys: string[], ...args: (string | number)[]): Promise<unknown> {
    return askStore(this.redis, this.timeoutMs, () =>
      this.redis.eval(script, keys.length, ...keys.map((key) => this.prefix + key), ...args),
    );
  }
}
