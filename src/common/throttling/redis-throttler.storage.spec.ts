import { EventEmitter } from 'node:events';
import { loadConfig } from '../../config/config';
import {
  RateLimitStoreUnavailable,
  RedisThrottlerStorage,
  UNASKED_AFTER_FAILURE_MS,
} from './redis-throttler.storage';

const config = loadConfig({ NODE_ENV: 'development', REDIS_KEY_PREFIX: 'unit' });
/** RATE_LIMIT_STORE_TIMEOUT_MS's default. */
const STORE_TIMEOUT_MS = config.rateLimitStoreTimeoutMs;

describe('RedisThrottlerStorage', () => {
  it('prefixes keys with REDIS_KEY_PREFIX and reports hits, seconds left and blocking', async () => {
    const redis = { eval: jest.fn().mockResolvedValue([6, 41_200]) };
    const storage = new RedisThrottlerStorage(redis, config);
    const record = await storage.increment('login-account:abc', 60_000, 5, 60_000, 'login-account');
    expect(redis.eval).toHaveBeenCalledWith(
      expect.any(String),
      1,
      'unit:rl:login-account:abc',
      60_000,
    );
    expect(record).toEqual({
      totalHits: 6,
      timeToExpire: 42,
      isBlocked: true,
      timeToBlockExpire: 42,
    });
  });

  it('is not blocked up to the limit', async () => {
    const storage = new RedisThrottlerStorage(
      { eval: jest.fn().mockResolvedValue([5, 1000]) },
      config,
    );
    expect(await storage.increment('k', 60_000, 5, 60_000, 'x')).toMatchObject({
      isBlocked: false,
      timeToBlockExpire: 0,
    });
  });

  it('peeks at a counter without counting: its hits and seconds left (none: 0 hits)', async () => {
    const redis = {
      eval: jest.fn().mockResolvedValueOnce([500, 41_200]).mockResolvedValue([0, -2]),
    };
    const storage = new RedisThrottlerStorage(redis, config);
    expect(await storage.peek('login-account-day:abc')).toEqual({
      totalHits: 500,
      timeToExpire: 42,
    });
    expect(redis.eval).toHaveBeenCalledWith(
      expect.not.stringMatching(/INCR|EXPIRE/),
      1,
      'unit:rl:login-account-day:abc',
    );
    expect(await storage.peek('k')).toEqual({ totalHits: 0, timeToExpire: 1 });
  });

  it('turns a Redis error into RateLimitStoreUnavailable', async () => {
    const storage = new RedisThrottlerStorage(
      { eval: jest.fn().mockRejectedValue(new Error("Stream isn't writeable")) },
      config,
    );
    await expect(storage.increment('k', 60_000, 5, 60_000, 'x')).rejects.toBeInstanceOf(
      RateLimitStoreUnavailable,
    );
  });

  it('gives up on a Redis that does not answer within STORE_TIMEOUT_MS', async () => {
    const storage = new RedisThrottlerStorage({ eval: () => new Promise(() => undefined) }, config);
    const started = Date.now();
    await expect(storage.increment('k', 60_000, 5, 60_000, 'x')).rejects.toBeInstanceOf(
      RateLimitStoreUnavailable,
    );
    expect(Date.now() - started).toBeLessThan(STORE_TIMEOUT_MS + 400);
  });

  it('after a timeout asks nothing for UNASKED_AFTER_FAILURE_MS: the policies after it fail at once, not after their own wait each', async () => {
    jest.useFakeTimers();
    try {
      const redis = { eval: jest.fn(() => new Promise(() => undefined)) };
      const storage = new RedisThrottlerStorage(redis, config);
      const first = storage.increment('a', 60_000, 5, 60_000, 'x');
      const refused = expect(first).rejects.toBeInstanceOf(RateLimitStoreUnavailable);
      await jest.advanceTimersByTimeAsync(STORE_TIMEOUT_MS);
      await refused;
      // at once, unasked: a count, a give-back
      const second = storage.increment('b', 60_000, 5, 60_000, 'y').then(
        () => 'counted',
        (err: unknown) => (err instanceof RateLimitStoreUnavailable ? 'refused' : err),
      );
      const givenBack = storage.giveBack('b');
      await jest.advanceTimersByTimeAsync(1);
      expect(redis.eval).toHaveBeenCalledTimes(1);
      expect(await second).toBe('refused');
      await givenBack;
      // asked again once that is over
      await jest.advanceTimersByTimeAsync(UNASKED_AFTER_FAILURE_MS);
      redis.eval.mockReturnValueOnce(Promise.resolve([1, 60_000]));
      expect(await storage.increment('c', 60_000, 5, 60_000, 'z')).toMatchObject({ totalHits: 1 });
    } finally {
      jest.useRealTimers();
    }
  });

  it('asks again as soon as the client has connected again (a fail-closed policy that waited out the reconnect counts on it)', async () => {
    let connected = false;
    const redis = Object.assign(new EventEmitter(), {
      status: 'reconnecting',
      eval: jest.fn(() =>
        connected
          ? Promise.resolve([1, 60_000])
          : Promise.reject(new Error("Stream isn't writeable")),
      ),
    });
    const storage = new RedisThrottlerStorage(redis, config);
    await expect(storage.increment('a', 60_000, 5, 60_000, 'x')).rejects.toBeInstanceOf(
      RateLimitStoreUnavailable,
    );
    const waiting = storage.connected();
    connected = true;
    redis.status = 'ready';
    redis.emit('ready');
    await waiting;
    expect(await storage.increment('a', 60_000, 5, 60_000, 'login-ip')).toMatchObject({
      totalHits: 1,
    });
  });
});
