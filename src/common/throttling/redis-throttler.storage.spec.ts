import { loadConfig } from '../../config/config';
import {
  RateLimitStoreUnavailable,
  RedisThrottlerStorage,
  STORE_TIMEOUT_MS,
} from './redis-throttler.storage';

const config = loadConfig({ NODE_ENV: 'development', REDIS_KEY_PREFIX: 'unit' });

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
});
