import type { INestApplicationContext } from '@nestjs/common';
import { Queue } from 'bullmq';
import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { queueConnectionOptions } from '../../src/queue/redis-connection';
import { JobName, QueueName } from '../../src/queue/queues';
import { KeyPrefixClaim, PrefixInUse, databaseIdentity } from '../../src/redis/key-prefix-claim';
import { createRedisClient } from '../../src/redis/redis.module';
import { freePort } from '../support/ports';
import { runScript } from '../support/processes';
import { TestApp, bootTestApp } from '../support/test-app';
import { TestDatabase, createTestDatabase } from '../support/test-database';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * REDIS_KEY_PREFIX belongs to one database (src/redis/key-prefix-claim.ts): a second deployment
 * on the same Redis and prefix, with a database of its own, refuses to boot while the first runs,
 * its worker never taking the first one's jobs; a claim that lapsed (a deployment stopped) is
 * taken over; a process whose prefix is taken from under it stops with exit code 1.
 */
describe('REDIS_KEY_PREFIX claimed for one database', () => {
  let a: TestApp;
  let redis: Redis;
  let other: TestDatabase;
  const ownerKey = () => `${a.config.redis.keyPrefix}:owner`;

  /**
   * Another deployment's claim of `prefix`, renewed (its heartbeat) until stopped. (Never of
   * `a`'s prefix: `a` runs in this process, and a process whose claim is taken stops.)
   */
  function foreignClaim(prefix: string, ttlMs: number, renewEveryMs?: number): () => void {
    const set = () => redis.set(`${prefix}:owner`, '00000000deadbeef shop_staging', 'PX', ttlMs);
    void set();
    const timer = renewEveryMs ? setInterval(() => void set(), renewEveryMs) : undefined;
    return () => clearInterval(timer);
  }

  beforeAll(async () => {
    a = await bootTestApp();
    redis = new Redis(a.config.redis.url);
    other = await createTestDatabase();
  });
  afterAll(async () => {
    await a?.close();
    await other?.drop();
    redis?.disconnect();
  });

  it("holds the prefix for its database's identity, renewed with a TTL", async () => {
    const ds = a.app.get(DataSource);
    expect(await redis.get(ownerKey())).toBe(await databaseIdentity(ds));
    expect(await redis.get(ownerKey())).toMatch(new RegExp(` ${a.db.name}$`));
    expect(await redis.pttl(ownerKey())).toBeGreaterThan(0);
    // a second API process of the same deployment shares the claim
    const b = await bootTestApp({ db: a.db, env: { REDIS_KEY_PREFIX: a.config.redis.keyPrefix } });
    try {
      expect(await redis.get(ownerKey())).toBe(await databaseIdentity(ds));
    } finally {
      await b.close();
    }
  });

  it('another database on the same prefix refuses to boot while the claim is kept alive', async () => {
    const prefix = `${a.config.redis.keyPrefix}s`;
    const stop = foreignClaim(prefix, 600, 100);
    try {
      await expect(bootTestApp({ db: other, env: { REDIS_KEY_PREFIX: prefix } })).rejects.toThrow(
        /REDIS_KEY_PREFIX is in use by another deployment.*database shop_staging/,
      );
    } finally {
      stop();
    }
  });

  it("a worker of another database refuses to boot and takes none of the prefix's jobs", async () => {
    const prefix = `${a.config.redis.keyPrefix}w`;
    const queue = new Queue(QueueName.Catalog, {
      connection: queueConnectionOptions(a.config.redis.url),
      prefix: `${prefix}:bull`,
    });
    const stop = foreignClaim(prefix, 600, 100);
    let worker: INestApplicationContext | undefined;
    try {
      const job = await queue.add(JobName.RecomputeRecommendations, {});
      const w = runScript(
        'src/worker.ts',
        { DATABASE_URL: other.url, REDIS_KEY_PREFIX: prefix },
        'warn',
      );
      expect(await w.exited).toBe(1);
      expect(w.output()).toMatch(/REDIS_KEY_PREFIX is in use by another deployment/);
      expect(await job.getState()).toBe('waiting');
      // the other deployment stops (its claim lapses): this database's worker takes the job
      stop();
      worker = await bootTestWorker({
        ...a.config,
        redis: { ...a.config.redis, keyPrefix: prefix },
      });
      await waitFor('the job taken once the prefix is ours', async () =>
        (await job.getState()) === 'completed' ? true : undefined,
      );
      expect(await redis.get(`${prefix}:owner`)).toBe(
        await databaseIdentity(a.app.get(DataSource)),
      );
    } finally {
      stop();
      await worker?.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await redis.del(`${prefix}:owner`);
    }
  });

  it('a claim that lapses (the other deployment stopped) is taken over at boot', async () => {
    const prefix = `${a.config.redis.keyPrefix}x`;
    await redis.set(`${prefix}:owner`, '00000000deadbeef shop_old', 'PX', 800);
    const b = await bootTestApp({ db: other, env: { REDIS_KEY_PREFIX: prefix } });
    try {
      expect(await redis.get(`${prefix}:owner`)).toBe(
        await databaseIdentity(b.app.get(DataSource)),
      );
    } finally {
      await b.close();
      await redis.del(`${prefix}:owner`);
    }
  });

  it('a process whose database moved (a restore behind the same URL) carries its claim over', async () => {
    const prefix = `${a.config.redis.keyPrefix}m`;
    const config = { ...a.config, redis: { ...a.config.redis, keyPrefix: prefix } };
    let oid = '1';
    const movable = {
      query: async () => [{ system: '42', oid, name: 'shop' }],
    } as unknown as DataSource;
    const client = createRedisClient(a.config.redis.url, `${prefix}:test`);
    await new Promise((resolve) => client.once('ready', resolve));
    // (a claim lost here would stop this process: kept as a failure instead)
    class InProcessClaim extends KeyPrefixClaim {
      lostWith?: Error;
      protected override lost(err: PrefixInUse): void {
        this.lostWith = err;
      }
    }
    const running = new InProcessClaim(client, movable, config);
    try {
      await running.onApplicationBootstrap();
      const before = await redis.get(`${prefix}:owner`);
      expect(before).toMatch(/ shop$/);
      // the database is restored into a new cluster behind the URL: a new oid; the running
      // process's next heartbeats (here: its Redis connection back) read it and move the claim
      oid = '2';
      await waitFor('the claim moved', async () => {
        client.emit('ready');
        const now = await redis.get(`${prefix}:owner`);
        return now !== before ? now : undefined;
      });
      // so a process started after the move boots at once, sharing it
      const started = new InProcessClaim(client, movable, config);
      await started.onApplicationBootstrap();
      await expect(started.held()).resolves.toBeUndefined();
      started.onApplicationShutdown();
      expect(running.lostWith).toBeUndefined();
    } finally {
      running.onApplicationShutdown();
      client.disconnect();
      await redis.del(`${prefix}:owner`);
    }
  });

  it('a process whose prefix is taken from under it stops, exit code 1', async () => {
    const prefix = `${a.config.redis.keyPrefix}y`;
    const port = await freePort();
    const api = runScript(
      'src/main.ts',
      { DATABASE_URL: other.url, REDIS_KEY_PREFIX: prefix, PORT: String(port) },
      'warn',
    );
    try {
      await waitFor(
        'the API up',
        () => fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.ok),
        { retryErrors: true, timeoutMs: 30_000, context: api.output },
      );
      // Redis lost its keys and another deployment claimed first; the API's connection comes back
      await redis.set(`${prefix}:owner`, '00000000deadbeef shop_staging');
      const clients = await redis.client('LIST');
      const ids = String(clients)
        .split('\n')
        .filter((line) => line.includes(` name=${prefix}:app `))
        .map((line) => /^id=(\d+)/.exec(line)?.[1]);
      expect(ids.length).toBeGreaterThan(0);
      for (const id of ids) await redis.client('KILL', 'ID', id as string);
      expect(await api.exited).toBe(1);
      expect(api.output()).toMatch(/REDIS_KEY_PREFIX is in use by another deployment/);
    } finally {
      if (api.proc.exitCode === null) api.proc.kill('SIGKILL');
      await redis.del(`${prefix}:owner`);
    }
  });
});
