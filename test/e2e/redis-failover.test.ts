import { INestApplicationContext, Logger } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import Redis from 'ioredis';
import { Server, Socket, createServer } from 'node:net';
import { insertProduct } from '../support/fixtures';
import { buyers, placeOrder } from '../support/orders';
import { JOB_QUEUE, JobName } from '../../src/queue/queues';
import { SCHEDULES } from '../../src/queue/schedulers';
import { PrivateRedis } from '../support/private-redis';
import { connectUpstream } from '../support/tcp-pair';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * Redis coming back in a state the app's connections do not notice:
 *
 * - a failover behind one address (a managed Redis's DNS name): the old primary becomes a replica
 *   and keeps its clients' connections, answering every write READONLY. ioredis reconnects only
 *   when a connection drops, so the worker stayed on the replica: the outbox relay paused for good,
 *   no job ran. The catalog store (node-redis, under @keyv/redis) stayed there too: every page
 *   write refused, none stored on the new primary, and nothing said.
 * - a Redis that lost its data and refused writes when the worker reconnected (OOM under
 *   noeviction, MISCONF …): the job schedules were registered again only on a reconnect, so that
 *   one failed attempt left the sweeps, reconciliations and purges gone until a restart.
 */
describe('Redis back in a state the connections do not notice', () => {
  /** A TCP proxy: each new connection goes to the current `target` (as a DNS name does after a failover). */
  async function switchableProxy(
    port: number,
  ): Promise<{ url: string; target: { port: number }; close(): Promise<void> }> {
    const target = { port };
    const sockets = new Set<Socket>();
    const server: Server = createServer((client) => {
      const { upstream } = connectUpstream(
        client,
        { host: '127.0.0.1', port: target.port },
        sockets,
      );
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const proxyPort = typeof address === 'object' && address ? address.port : 0;
    return {
      url: `redis://127.0.0.1:${proxyPort}`,
      target,
      close: () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }),
    };
  }

  /**
   * `work`, failed with its name after `ms`: a full run once hit the test's 90 s limit here without
   * saying where (not reproduced alone or under CPU load), so each step names itself.
   */
  const step = <T>(name: string, work: () => Promise<T>, ms = 30_000): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      work(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`step "${name}" took over ${ms} ms`)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  };

  const outboxStatus = async (t: TestApp, orderId: string): Promise<string> =>
    (
      await t.db.pool.query<{ status: string }>(
        `SELECT status FROM outbox WHERE aggregate_id = $1 AND topic = 'order.created'`,
        [orderId],
      )
    ).rows[0]?.status ?? 'none';

  it('after a failover behind the same address, the worker leaves the demoted primary (READONLY) and relays again', async () => {
    const [first, second] = await step('two Redis servers', async () => [
      await PrivateRedis.start(),
      await PrivateRedis.start(),
    ]);
    const proxy = await switchableProxy(first.port);
    const [a, b] = [new Redis(first.url), new Redis(second.url)];
    let t: TestApp | undefined;
    let worker: INestApplicationContext | undefined;
    try {
      await step('replica follows the first', () =>
        b.call('REPLICAOF', '127.0.0.1', String(first.port)),
      );
      t = await step('API boot', () => bootTestApp({ env: { REDIS_URL: proxy.url } }));
      worker = await step('worker boot', () => bootTestWorker(t!.config));
      const product = await insertProduct(t.db.pool, { stock: 5 });
      const [buyer] = await step('buyer', () => buyers(t!.http, 1));
      const before = await step('first order', () =>
        placeOrder(t!.http, buyer, [{ productId: product, quantity: 1 }]),
      );
      expect(before.status).toBe(201);
      await waitFor('the first event relayed', () => outboxStatus(t!, before.body.id), {
        until: (s) => s === 'published',
      });
      await waitFor('the replica in sync', async () => String(await b.info('replication')), {
        until: (info) => /master_link_status:up/.test(info),
      });

      // the failover: the replica is promoted, the old primary follows it (keeping its clients'
      // connections), and the address now leads to the new primary
      await step('promotion', () => b.call('REPLICAOF', 'NO', 'ONE'));
      await step('demotion', () => a.call('REPLICAOF', '127.0.0.1', String(second.port)));
      proxy.target.port = second.port;

      const after = await step('order after the failover', () =>
        placeOrder(t!.http, buyer, [{ productId: product, quantity: 1 }]),
      );
      expect(after.status).toBe(201);
      await waitFor('the event relayed to the new primary', () => outboxStatus(t!, after.body.id), {
        until: (s) => s === 'published',
        timeoutMs: 20_000,
      });
      const queue = worker.get<Queue>(getQueueToken(JOB_QUEUE[JobName.ExpireReservation]));
      expect(
        await step('the job', async () => queue.getJob(await firstOutboxId(t!, after.body.id))),
      ).toBeTruthy();
    } finally {
      await step('worker close', async () => worker?.close(), 30_000); // (its jobs waited for SHUTDOWN_TIMEOUT_MS at most)
      await step('API close', async () => t?.close(), 30_000);
      a.disconnect();
      b.disconnect();
      await proxy.close();
      await first.down();
      await second.down();
    }
  }, 90_000);

  it('after a failover behind the same address, the catalog store leaves the demoted primary (READONLY), stores pages on the new one, and says so once', async () => {
    const [first, second] = await step('two Redis servers', async () => [
      await PrivateRedis.start(),
      await PrivateRedis.start(),
    ]);
    const proxy = await switchableProxy(first.port);
    const [a, b] = [new Redis(first.url), new Redis(second.url)];
    const warnings: string[] = [];
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation((message: unknown) => {
      warnings.push(String(message));
    });
    let t: TestApp | undefined;
    try {
      await step('replica follows the first', () =>
        b.call('REPLICAOF', '127.0.0.1', String(first.port)),
      );
      t = await step('API boot', () => bootTestApp({ env: { REDIS_URL: proxy.url } }));
      await insertProduct(t.db.pool, { stock: 5 });
      const pages = `${t.config.redis.keyPrefix}:catalog:version:*`;
      /** The pages of `/v1/products?q=<q>` on `redis` (each asked for twice: a first miss is stored nowhere). */
      const stored = async (redis: Redis, q: string) => {
        for (let i = 0; i < 2; i++)
          expect((await t!.http.get(`/v1/products?q=${q}`)).status).toBe(200);
        return (await redis.keys(pages)).filter((k) => k.endsWith(`?q=${q}`));
      };
      // (the catalog store's client connects after the boot, failing fast until then: on a
      // loaded machine the first two reads came before it was ready and stored nothing)
      await step('a page stored on the first', () =>
        waitFor('a page stored on the first', () => stored(a, 'before'), {
          until: (keys) => keys.length === 1,
          timeoutMs: 10_000,
        }),
      );
      await waitFor('the replica in sync', async () => String(await b.info('replication')), {
        until: (info) => /master_link_status:up/.test(info),
      });

      // the failover: the replica is promoted, the old primary follows it (keeping its clients'
      // connections), and the address now leads to the new primary
      await step('promotion', () => b.call('REPLICAOF', 'NO', 'ONE'));
      await step('demotion', () => a.call('REPLICAOF', '127.0.0.1', String(second.port)));
      proxy.target.port = second.port;

      // pages not asked for before: the first refused write moves the store to the new primary
      let n = 0;
      const onSecond = await waitFor(
        'a page stored on the new primary',
        () => stored(b, `after${n++}`),
        {
          until: (keys) => keys.length === 1,
          timeoutMs: 10_000,
        },
      );
      expect(onSecond).toHaveLength(1);
      const refused = warnings.filter((w) => /catalog pages not stored.*READONLY/.test(w));
      expect(refused).toHaveLength(1); // (each refused write had been one)
    } finally {
      warn.mockRestore();
      await step('API close', async () => t?.close(), 30_000);
      a.disconnect();
      b.disconnect();
      await proxy.close();
      await first.down();
      await second.down();
    }
  }, 90_000);

  async function firstOutboxId(t: TestApp, orderId: string): Promise<string> {
    return (
      await t.db.pool.query<{ id: string }>(
        `SELECT id FROM outbox WHERE aggregate_id = $1 AND topic = 'order.created'`,
        [orderId],
      )
    ).rows[0].id;
  }

  it('job schedules lost with the data come back although Redis refused writes when the worker reconnected', async () => {
    const redis = await PrivateRedis.start();
    const admin = new Redis(redis.url);
    let t: TestApp | undefined;
    let worker: INestApplicationContext | undefined;
    try {
      t = await bootTestApp({ env: { REDIS_URL: redis.url } });
      worker = await bootTestWorker(t.config);
      const queues = [...new Set(SCHEDULES.map((s) => JOB_QUEUE[s.job]))].map((name) =>
        worker!.get<Queue>(getQueueToken(name)),
      );
      const registered = async () =>
        (await Promise.all(queues.map((q) => q.getJobSchedulers()))).flat().length;
      await waitFor('the schedules registered at boot', registered, {
        until: (n) => n === SCHEDULES.length,
      });

      // Redis loses its data and, when the worker reconnects, refuses every write
      const ooms = async () =>
        Number(/errorstat_OOM:count=(\d+)/.exec(String(await admin.info('errorstats')))?.[1] ?? 0);
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
      await admin.flushall();
      await admin.config('SET', 'maxmemory', '1');
      const refusedBefore = await ooms();
      await admin.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      await waitFor("a write refused after the reconnect (the schedules' registration)", ooms, {
        until: (n) => n > refusedBefore,
      });
      await admin.config('SET', 'maxmemory', '0');

      // no other reconnect happens: the schedules must come back by themselves
      expect(
        await waitFor('the schedules registered again', registered, {
          until: (n) => n === SCHEDULES.length,
          timeoutMs: 20_000,
        }),
      ).toBe(SCHEDULES.length);
    } finally {
      await admin.config('SET', 'maxmemory', '0').catch(() => undefined);
      await worker?.close();
      await t?.close();
      admin.disconnect();
      await redis.down();
    }
  }, 90_000);
});
