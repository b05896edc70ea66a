import { randomUUID } from 'node:crypto';
import { AddressInfo, Server, Socket, createServer } from 'node:net';
import Redis from 'ioredis';
import { REDIS_SOCKET_TIMEOUT_MS, createRedisClient } from '../../src/redis/redis.module';
import { connectUpstream } from '../support/tcp-pair';
import { waitFor } from '../support/wait-for';

// A Redis connection that drops after Redis ran a command but before its reply arrived: the
// app's client fails that command, and never sends it again on the next connection — the
// failed-sign-in and rate-limit counters are INCRs and scripts, which must count a request once.

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A TCP proxy to Redis that can swallow the next reply and drop the client's connection. */
async function startReplyDroppingProxy(target: URL): Promise<{
  url: string;
  loseNextReply(): void;
  /** From now on, replies are swallowed and the connection kept: a Redis that stopped answering. */
  stall(): void;
  close(): Promise<void>;
}> {
  let lose = false;
  let stalled = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const { upstream, end } = connectUpstream(
      client,
      { host: target.hostname, port: Number(target.port || 6379) },
      sockets,
    );
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (stalled) return;
      if (!lose) return void client.write(d);
      lose = false; // Redis has run it; the client never hears
      end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    loseNextReply: () => {
      lose = true;
    },
    stall: () => {
      stalled = true;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('Redis: a command whose reply was lost', () => {
  let direct: Redis;
  beforeAll(() => {
    direct = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    await direct.quit();
  });

  it('fails, and is not run a second time when the client reconnects; the new connection lives on', async () => {
    const proxy = await startReplyDroppingProxy(new URL(REDIS_URL));
    const client = createRedisClient(proxy.url, 'reply-lost-test');
    client.on('error', () => undefined);
    const key = `test:reply-lost:${randomUUID()}`;
    try {
      await waitFor('the client to connect', () => client.ping(), {
        timeoutMs: 5000,
        intervalMs: 50,
        retryErrors: true,
      });
      proxy.loseNextReply();
      await expect(client.incr(key)).rejects.toThrow();
      // back on a new connection: whatever it would resend has been sent before this answers
      await waitFor('the client to reconnect', () => client.ping(), {
        timeoutMs: 10_000,
        intervalMs: 50,
        retryErrors: true,
      });
      expect(await client.get(key)).toBe('1');
      expect(await direct.get(key)).toBe('1');
      // the lost connection's socket timer must not end the new, healthy one (ioredis kept it)
      const failures: string[] = [];
      const until = performance.now() + REDIS_SOCKET_TIMEOUT_MS + 1_000;
      while (performance.now() < until) {
        await client.ping().catch((e: Error) => failures.push(e.message));
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(failures).toEqual([]);
    } finally {
      client.disconnect();
      await proxy.close();
      await direct.del(key);
    }
  });

  it('a Redis that keeps the connection and stops answering: commands fail within the socket timeout, none pile up', async () => {
    const proxy = await startReplyDroppingProxy(new URL(REDIS_URL));
    const client = createRedisClient(proxy.url, 'stalled-test');
    client.on('error', () => undefined);
    try {
      await waitFor('the client to connect', () => client.ping(), {
        timeoutMs: 5000,
        intervalMs: 50,
        retryErrors: true,
      });
      proxy.stall();
      const started = performance.now();
      const outcomes = await Promise.allSettled(
        Array.from({ length: 200 }, (_, i) => client.get(`test:stalled:${i}`)),
      );
      const waited = performance.now() - started;
      expect(outcomes.every((o) => o.status === 'rejected')).toBe(true);
      // (the old client: never — every command waited on the connection for a reply)
      expect(waited).toBeLessThan(REDIS_SOCKET_TIMEOUT_MS + 2_000);
      expect((client as unknown as { commandQueue: { length: number } }).commandQueue.length).toBe(
        0,
      );
    } finally {
      client.disconnect();
      await proxy.close();
    }
  }, 20_000);
});
