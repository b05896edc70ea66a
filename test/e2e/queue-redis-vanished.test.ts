import { Queue } from 'bullmq';
import { randomUUID } from 'node:crypto';
import { Server, Socket, createServer } from 'node:net';
import { QUEUE_SOCKET_TIMEOUT_MS, queueConnectionOptions } from '../../src/queue/redis-connection';
import { connectUpstream } from '../support/tcp-pair';

/**
 * A Redis gone without a reset (its host died, a failover behind one name): the BullMQ
 * connections' commands waited for as long as TCP retransmitted (~15 min) — every queue, the
 * sweeps with them, stalled. They now give up after QUEUE_SOCKET_TIMEOUT_MS, reconnect (here to
 * the same address, which now leads to a live Redis) and send the command again.
 */
describe("BullMQ's connections when Redis vanishes without a reset", () => {
  /** A TCP proxy to REDIS_URL whose current connections can be made silent (`vanish`). */
  async function vanishingProxy(): Promise<{
    url: string;
    vanish(): void;
    close(): Promise<void>;
  }> {
    const target = new URL(process.env.REDIS_URL as string);
    const sockets = new Set<Socket>();
    const pairs: [Socket, Socket][] = [];
    const server: Server = createServer((client) => {
      const { upstream } = connectUpstream(
        client,
        { host: target.hostname, port: Number(target.port || 6379) },
        sockets,
      );
      client.pipe(upstream).pipe(client);
      pairs.push([client, upstream]);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    return {
      url: `redis://127.0.0.1:${port}`,
      // what was sent is taken (and acknowledged by this host's kernel) but never answered
      vanish: () => {
        for (const [client, upstream] of pairs.splice(0)) {
          client.unpipe(upstream);
          upstream.unpipe(client);
          client.pause();
          upstream.pause();
        }
      },
      close: () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }),
    };
  }

  it('a command sent to the silent connection is answered over a new one after the socket timeout, not after TCP gives up', async () => {
    const proxy = await vanishingProxy();
    const queue = new Queue(`vanish-${randomUUID()}`, {
      connection: queueConnectionOptions(proxy.url),
      prefix: 'test-vanish',
    });
    try {
      await queue.add('first', {});
      proxy.vanish();
      const startedAt = performance.now();
      const job = await queue.add('second', {});
      const waitedMs = performance.now() - startedAt;
      expect(job.id).toBeTruthy();
      expect(waitedMs).toBeGreaterThanOrEqual(QUEUE_SOCKET_TIMEOUT_MS - 1_000);
      expect(waitedMs).toBeLessThan(QUEUE_SOCKET_TIMEOUT_MS + 10_000);
      expect(await queue.getJobCounts('waiting')).toMatchObject({ waiting: 2 });
    } finally {
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await proxy.close();
    }
  }, 60_000);
});
