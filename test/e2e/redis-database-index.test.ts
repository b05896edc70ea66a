import { Logger } from '@nestjs/common';
import Redis from 'ioredis';
import { EXIT_CONFIG } from '../../src/config/exit-codes';
import { RedisDatabaseCheck, RedisDatabaseUnavailable } from '../../src/redis/database-index';
import { createRedisClient } from '../../src/redis/redis.module';
import { runScript } from '../support/processes';
import { PrivateRedis } from '../support/private-redis';
import { waitFor } from '../support/wait-for';
import { createTestDatabase, TestDatabase } from '../support/test-database';

/**
 * A REDIS_URL naming a database the server does not have (`/16` on a default server: databases 0
 * to 15) booted, and ran in database 0: ioredis emits `ERR DB index is out of range` and goes on
 * there, so the deployment shared database 0 with whatever lived there (operator-mistakes
 * review). The API and the worker now refuse to boot, naming REDIS_URL, before they claim the key
 * prefix or take a job.
 */
describe("REDIS_URL's database", () => {
  let redis: PrivateRedis;
  let db: TestDatabase;
  let admin: Redis;
  beforeAll(async () => {
    [redis, db] = await Promise.all([PrivateRedis.start(), createTestDatabase()]);
    admin = new Redis(redis.url);
  });
  afterAll(async () => {
    admin?.disconnect();
    await Promise.all([redis?.down(), db?.drop()]);
  });
  afterEach(() => jest.restoreAllMocks());

  const withClient = async (url: string, use: (client: Redis) => Promise<void>) => {
    const client = createRedisClient(url, 'database-index-test');
    client.on('error', () => undefined);
    try {
      await use(client);
    } finally {
      client.disconnect();
    }
  };

  it('a database the server has is selected and the check passes; one it has not is refused (exit code EXIT_CONFIG), naming REDIS_URL', async () => {
    await withClient(`${redis.url}/1`, async (client) => {
      await expect(new RedisDatabaseCheck(client).onModuleInit()).resolves.toBeUndefined();
      expect(await client.call('CLIENT', 'INFO')).toMatch(/ db=1 /);
    });
    await withClient(`${redis.url}/16`, async (client) => {
      const refused = new RedisDatabaseCheck(client).onModuleInit();
      await expect(refused).rejects.toBeInstanceOf(RedisDatabaseUnavailable);
      await expect(refused).rejects.toMatchObject({
        exitCode: EXIT_CONFIG,
        message: expect.stringMatching(
          /^REDIS_URL: database 16 cannot be selected on this Redis \(it answered "ERR DB index is out of range"\)/,
        ),
      });
      // (what the refusal prevents: the client runs in database 0)
      expect(await client.call('CLIENT', 'INFO')).toMatch(/ db=0 /);
    });
  });

  it('a Redis that does not answer at boot is no refusal (the API serves without it): logged at warn', async () => {
    const warns = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    await withClient('redis://127.0.0.1:1/3', async (client) => {
      await expect(new RedisDatabaseCheck(client).onModuleInit()).resolves.toBeUndefined();
    });
    expect(warns.mock.calls.map(([m]) => String(m))).toEqual([
      expect.stringContaining('could not check that Redis database 3 can be selected'),
    ]);
  });

  it('a process that booted while Redis was away checks when Redis is ready again, and stops on a refusal (exit code EXIT_CONFIG)', async () => {
    const errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const stops = jest.spyOn(process, 'kill').mockImplementation(() => true);
    const exitCode = process.exitCode;
    const later = await PrivateRedis.start();
    await later.down();
    try {
      await withClient(`${later.url}/16`, async (client) => {
        const check = new RedisDatabaseCheck(client);
        await expect(check.onModuleInit()).resolves.toBeUndefined(); // away: no refusal
        expect(stops).not.toHaveBeenCalled();
        await later.up();
        await waitFor(
          'the check run again once Redis is ready',
          async () => stops.mock.calls.length,
          {
            until: (n) => n > 0,
          },
        );
        expect(stops).toHaveBeenCalledWith(process.pid, 'SIGTERM');
        expect(process.exitCode).toBe(EXIT_CONFIG);
        expect(errors.mock.calls.map(([m]) => String(m))).toEqual([
          expect.stringMatching(/^REDIS_URL: database 16 cannot be selected.*; stopping$/),
        ]);
        check.onApplicationShutdown();
      });
    } finally {
      process.exitCode = exitCode;
      await later.down();
    }
  });

  it('the API and the worker refuse to boot on it (exit code EXIT_CONFIG), naming REDIS_URL, before claiming or queueing anything in database 0', async () => {
    const env = { DATABASE_URL: db.url, REDIS_URL: `${redis.url}/16` };
    const [api, worker] = [runScript('src/main.ts', env), runScript('src/worker.ts', env)];
    try {
      for (const p of [api, worker]) {
        // (booted on database 0 instead, they would never exit: bounded, then stopped below)
        const still = new Promise<string>((resolve) =>
          setTimeout(() => resolve('still running'), 45_000).unref(),
        );
        expect(await Promise.race([p.exited, still])).toBe(EXIT_CONFIG);
        expect(p.output()).toContain('REDIS_URL: database 16 cannot be selected');
      }
    } finally {
      for (const p of [api, worker]) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    }
    // nothing of the deployment's in database 0: no prefix claim, no job, no cache entry — only,
    // at times, the queues' `bull:<queue>:meta` (BullMQ writes its version there as each queue's
    // own connection opens, while the application is still being created: before any check)
    const keys = await admin.keys('*');
    expect(keys.filter((k) => !/:bull:[a-z-]+:meta$/.test(k))).toEqual([]);
  }, 90_000);
});
