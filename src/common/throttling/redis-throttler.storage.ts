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

/** A counter started afresh (its window with it). */
const RESET = `redis.call('DEL', KEYS[1]) return 1`;
/** One hit back, never below zero, the window's expiry kept. */
const GIVE_BACK = `
local hits = tonumber(redis.call('GET', KEYS[1]) or '0')
if hits > 0 then redis.call('DECR', KEYS[1]) end
return hits
`;

/** A Redis that answers slower than this counts as unavailable (no request waits on it). */
export const STORE_TIMEOUT_MS = 500;

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
 * STORE_TIMEOUT_MS: either way this throws RateLimitStoreUnavailable, and the guard applies the
 * policy's fail-open / fail-closed choice.
 */
@Injectable()
export class RedisThrottlerStorage implements ThrottlerStorage {
  private readonly prefix: string;

  constructor(
    @Inject(REDIS)
    private readonly redis: Pick<Redis, 'eval'> & ConnectionEvents,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.prefix = `${config.redis.keyPrefix}:rl:`;
  }

  /**
   * Takes one hit back from a window (a request refused for the room it needed left after it:
   * the refusal itself must not spend that room). Best effort: a Redis that cannot answer keeps it.
   */
  async giveBack(key: string): Promise<void> {
    await withTimeout(this.redis.eval(GIVE_BACK, 1, this.prefix + key), STORE_TIMEOUT_MS).catch(
      () => undefined,
    );
  }

  /** Starts a counter afresh (best effort: a Redis that cannot answer keeps it). */
  async reset(key: string): Promise<void> {
    await withTimeout(this.redis.eval(RESET, 1, this.prefix + key), STORE_TIMEOUT_MS).catch(
      () => undefined,
    );
  }

  /**
   * Resolves once the store's connection is up, or its allowance (STORE_TIMEOUT_MS from when it
   * was first found down) runs out: a fail-closed policy counts after a reconnect, not into its
   * gap (whenConnected).
   */
  connected(): Promise<void> {
    return whenConnected(this.redis, STORE_TIMEOUT_MS);
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
      reply = await withTimeout(
        this.redis.eval(INCREMENT, 1, this.prefix + key, ttlMs),
        STORE_TIMEOUT_MS,
      );
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
}
