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

  it("failures at an account from its owner's own client count in the address's ceiling as failures at any email: the ceiling does not tell accounts used from there apart (never refusing the owner)", async () => {
    const small = loadConfig({
      NODE_ENV: 'development',
      REDIS_KEY_PREFIX: prefix,
      SIGN_IN_FAILURES_PER_IP: '3',
    });
    const strict = new FailedAttemptLimiter(redis, small);
    const wrong = () => Promise.resolve(null);
    // someone behind the owner's address (one NAT) tries the owner's email, which that address
    // has signed in to (its sessions on record), then a fresh email; and from another address
    // the same with an email that is nobody's
    const probe = async (ip: string, target: string, ownClient: boolean) => {
      for (let i = 0; i < 3; i++) {
        await strict.signIn('login', target, ip, wrong, {
          passwordEpoch: ownClient ? 'epoch-of-the-password1' : null,
          ownClientOnRecord: async () => ownClient,
        });
      }
      return strict
        .signIn('login', `fresh${randomBytes(4).toString('hex')}@shop.test`, ip, wrong)
        .then(
          () => 'counted',
          (e: { code?: string }) => e.code,
        );
    };
    const owners = await probe('198.51.100.7', 'owner@shop.test', true);
    const nobodys = await probe('198.51.100.8', 'nobody@shop.test', false);
    expect([owners, nobodys]).toEqual(['RATE_LIMITED', 'RATE_LIMITED']);
    // the owner, from there, is never refused by that ceiling: a right password signs in
    expect(
      await strict.signIn('login', 'owner@shop.test', '198.51.100.7', () => Promise.resolve('ok'), {
        passwordEpoch: 'epoch-of-the-password1',
        ownClientOnRecord: async () => true,
      }),
    ).toBe('ok');
  });
});
