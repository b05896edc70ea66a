import { Logger } from '@nestjs/common';
import type Redis from 'ioredis';
import type { AppConfig } from '../../src/config/config';
import { EXIT_CONFIG } from '../../src/config/exit-codes';
import { EvictingRedis, EvictionPolicyCheck } from '../../src/redis/eviction-policy';
import { createRedisClient } from '../../src/redis/redis.module';
import { PrivateRedis } from '../support/private-redis';

/**
 * Redis must not evict (redis-loss review): under `allkeys-lru` a full Redis dropped a locked
 * sign-in's lockout and the records of queued jobs whose ids stayed queued — an owed email never
 * sent, a scheduled sweep never run again — while BullMQ only printed a plain-text warning in the
 * worker and the API's readiness said 200. A process now reads the policy at boot and refuses
 * another one outside development (exit code EXIT_CONFIG), and reads it again while it runs.
 */
describe("Redis's eviction policy", () => {
  let redis: PrivateRedis;
  let client: Redis;
  beforeAll(async () => {
    redis = await PrivateRedis.start();
    client = createRedisClient(redis.url, 'eviction-policy-test');
    await new Promise((resolve) => client.once('ready', resolve));
  });
  afterAll(async () => {
    client?.disconnect();
    await redis?.down();
  });
  afterEach(() => jest.restoreAllMocks());

  const checkFor = (isDevelopment: boolean) =>
    new EvictionPolicyCheck(client, { isDevelopment } as AppConfig);
  const setPolicy = (policy: string) => client.config('SET', 'maxmemory-policy', policy);

  it('boots on noeviction; outside development refuses a Redis that evicts (exit code EXIT_CONFIG), naming the policy', async () => {
    await setPolicy('noeviction');
    const fine = checkFor(false);
    await expect(fine.onApplicationBootstrap()).resolves.toBeUndefined();
    fine.onApplicationShutdown();
    for (const policy of ['allkeys-lru', 'volatile-lru', 'allkeys-random']) {
      await setPolicy(policy);
      const refused = checkFor(false).onApplicationBootstrap();
      await expect(refused).rejects.toBeInstanceOf(EvictingRedis);
      await expect(refused).rejects.toMatchObject({
        exitCode: EXIT_CONFIG,
        message: expect.stringContaining(`maxmemory-policy is ${policy}`),
      });
    }
  });

  it('in development boots and says so at error; a running process reports a policy changed under it', async () => {
    const errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    await setPolicy('allkeys-lru');
    const dev = checkFor(true);
    await dev.onApplicationBootstrap();
    expect(errors.mock.calls.map(([m]) => String(m))).toEqual([
      expect.stringContaining('maxmemory-policy is allkeys-lru'),
    ]);
    dev.onApplicationShutdown();
    // a production process booted on noeviction, then someone changed it
    await setPolicy('noeviction');
    const running = checkFor(false);
    await running.onApplicationBootstrap();
    errors.mockClear();
    await running.check();
    expect(errors).not.toHaveBeenCalled();
    await setPolicy('volatile-ttl');
    await running.check();
    expect(errors.mock.calls.map(([m]) => String(m))).toEqual([
      expect.stringContaining('maxmemory-policy is volatile-ttl'),
    ]);
    running.onApplicationShutdown();
    await setPolicy('noeviction');
  });

  it('a Redis that does not answer is no refusal (the API serves without it): logged once at warn', async () => {
    const warns = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const down = createRedisClient('redis://127.0.0.1:1', 'eviction-policy-down');
    down.on('error', () => undefined);
    try {
      const check = new EvictionPolicyCheck(down, { isDevelopment: false } as AppConfig);
      await expect(check.onApplicationBootstrap()).resolves.toBeUndefined();
      await check.check();
      check.onApplicationShutdown();
      expect(warns.mock.calls.filter(([m]) => /maxmemory-policy/.test(String(m)))).toHaveLength(1);
    } finally {
      down.disconnect();
    }
  });
});
