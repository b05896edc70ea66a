import Redis from 'ioredis';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../src/config/config';
import { FailedAttemptLimiter } from '../../src/common/throttling/failed-attempt-limiter';

/**
 * Sign-in attempts refused before any password was checked (the hasher's queue full: 503) give
 * their reservations back. They left every key behind: one per (email, client) for an hour and
 * one per email for the window — a client rotating emails grew Redis with no ceiling stopping it
 * (the per-IP reservation is given back too). A bucket given back to nothing is now deleted.
 */
describe('FailedAttemptLimiter on Redis: nothing left by attempts given back', () => {
  const prefix = `lim${randomBytes(3).toString('hex')}`;
  const config = loadConfig({ NODE_ENV: 'development', REDIS_KEY_PREFIX: prefix });
  const redis = new Redis(config.redis.url, { lazyConnect: false });
  const limiter = new FailedAttemptLimiter(redis, config);
  const keys = () => redis.keys(`${prefix}:rl:*`);

  afterAll(async () => {
    const left = await keys();
    if (left.length) await redis.del(...left);
    redis.disconnect();
  });

  it('a hundred unverified attempts with a new email each leave no key; a failure stays counted', async () => {
    for (let i = 0; i < 100; i++) {
      await expect(
        limiter.signIn('login', `someone${i}@shop.test`, '203.0.113.9', () =>
          Promise.reject(new Error('busy')),
        ),
      ).rejects.toThrow('busy');
    }
    expect(await keys()).toEqual([]);
    // a wrong password is still counted (the buckets stay), a right one gives its own back
    expect(
      await limiter.signIn('login', 'victim@shop.test', '203.0.113.9', () => Promise.resolve(null)),
    ).toBeNull();
    expect((await keys()).length).toBeGreaterThan(0);
  });
});
