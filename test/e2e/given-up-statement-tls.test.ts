import { type Socket, connect, createServer } from 'node:net';
import { TLSSocket } from 'node:tls';
import { Client, Pool, type PoolConfig } from 'pg';
import { dataSourceOptions } from '../../src/database/data-source-options';
import { isConnectionFailure } from '../../src/database/db-circuit-breaker';
import { stallAwareClient } from '../../src/database/stall-aware-client';
import { PrivatePostgres } from '../support/private-postgres';
import { outcomeAcrossStall } from '../support/event-loop-stall';
import { waitFor } from '../support/wait-for';

// (a statement of 0.3 s must answer under it with room for a stalled jest worker: at 600 ms, a
// stall of ~300 ms while it was out had it judged silent)
const SILENCE_MS = 2_000;

/**
 * A pass-through in front of PostgreSQL through which each close of the server's reaches the
 * client `lateMs` after it (a pooler, a longer path): the server's closing of a cancel request's
 * connection — it took the cancel — then comes after the cancelled statement's answer, never
 * before it, as it may on a machine where the two race.
 */
async function lateCloseProxy(port: number, lateMs: number) {
  const sockets = new Set<Socket>();
  // (half-open: a cancel request's client ends its side once it sent the request, and learns that
  // the server took it from the server's close)
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => upstream.write(chunk)).on('end', () => upstream.end());
    upstream.on('data', (chunk) => client.write(chunk));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => setTimeout(() => client.destroy(), lateMs));
    for (const s of [client, upstream])
      s.on('error', () => undefined).on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Managed PostgreSQL is reached over TLS, where node-postgres reads through a TLS socket wrapped
 * around the raw one. A statement given up for its silence on a server that is alive (it sleeps,
 * it waits on a lock) is cancelled on the server, and its connection is destroyed once the cancel
 * was taken; the answer to the cancel must not be read. The give-up paused the raw socket only:
 * over TLS the holder read the cancel's 57014, released the client as sound, and the pool handed
 * it to the next caller — whose statement the delayed destroy failed ("Query read timeout": a
 * connection failure, 503, counted by the circuit breaker), for a request that had done nothing.
 */
describe('a statement given up for its silence over TLS', () => {
  let pg: PrivatePostgres;

  beforeAll(async () => {
    pg = await PrivatePostgres.start({ ssl: true });
  });
  afterAll(async () => {
    await pg?.destroy();
  });

  it("fails its holder as a connection failure, and never the next caller's statement on that connection", async () => {
    // the app's pool options and client class (stallAwareClient), one connection: the next
    // caller gets the given-up one back unless the pool ends it
    const proxy = await lateCloseProxy(pg.port, 150);
    const url = `postgres://postgres@127.0.0.1:${proxy.port}/postgres?sslmode=no-verify`;
    const { extra } = dataSourceOptions(url, { queryTimeoutMs: SILENCE_MS, poolSize: 1 }) as {
      extra: PoolConfig;
    };
    const pool = new Pool({ ...extra, connectionString: url });
    pool.on('error', () => undefined);
    const admin = new Client({ connectionString: pg.url() });
    await admin.connect();
    try {
      const holder = await pool.connect();
      const stream = (holder as unknown as { connection: { stream: unknown } }).connection.stream;
      expect(stream).toBeInstanceOf(TLSSocket);
      // a live server that sends nothing back for longer than the limit
      const given = await holder.query('SELECT pg_sleep(5)').then(
        () => undefined,
        (err: unknown) => err,
      );
      holder.release(); // as TypeORM does after a failed statement: without an error

      const next = await pool.connect();
      // a statement still out when the given-up connection is destroyed (once its cancel was
      // taken: 150 ms after the server here), shorter than the silence limit, and one after
      const answers: string[] = [];
      for (const sql of ['SELECT pg_sleep(0.3), 1 AS one', 'SELECT 1 AS one'])
        answers.push(
          await next.query<{ one: number }>(sql).then(
            (r) => `answered ${r.rows[0].one}`,
            (err: Error) => err.message,
          ),
        );
      next.release();

      expect(answers).toEqual(['answered 1', 'answered 1']);
      expect(next).not.toBe(holder);
      expect(given).toMatchObject({ message: expect.stringMatching(/^Query read timeout/) });
      expect(isConnectionFailure(given)).toBe(true);
      // and the given-up statement was cancelled on the server, TLS or not
      await waitFor(
        'the given-up statement to be gone from the server',
        async () =>
          (
            await admin.query<{ n: number }>(
              "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(5)' AND state = 'active'",
            )
          ).rows[0].n,
        { until: (n) => n === 0, timeoutMs: 2_000, intervalMs: 50 },
      );
    } finally {
      await admin.end();
      await pool.end();
      await proxy.close();
    }
  });

  it('a statement the server wrote to (a notice) while this process was busy is not silent over TLS either: the bytes that came count', async () => {
    const StallAware = stallAwareClient(500);
    const client = new StallAware({
      connectionString: `${pg.url()}?sslmode=no-verify`,
    });
    client.on('error', () => undefined);
    await client.connect();
    try {
      const stream = (client as unknown as { connection: { stream: unknown } }).connection.stream;
      expect(stream).toBeInstanceOf(TLSSocket);
      // a notice at once, the answer at 0.9 s: no silence of 500 ms after the notice
      // busy until 0.7 s once the statement left (over TLS in a later phase of this turn), the
      // notice unread: the silence timer is due before the next read, the statement still out
      expect(
        await outcomeAcrossStall(
          client,
          `DO $$BEGIN RAISE NOTICE 'working'; PERFORM pg_sleep(0.9); END$$`,
          700,
        ),
      ).toBe('answered');
      await expect(client.query('SELECT pg_sleep(2)')).rejects.toThrow(
        /Query read timeout: PostgreSQL sent nothing for 500 ms/,
      );
    } finally {
      await client.end().catch(() => undefined);
    }
  });
});
