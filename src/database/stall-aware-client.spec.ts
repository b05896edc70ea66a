import { createServer, type Server, type Socket } from 'node:net';
import { Client, Pool } from 'pg';
import { isConnectionFailure } from './db-circuit-breaker';
import { connectBoundedClient } from './stall-aware-client';

describe('connectBoundedClient', () => {
  // a server that accepts and never answers: a connect to it hangs until someone gives up
  let server: Server;
  const sockets: Socket[] = [];
  let port: number;
  beforeAll(async () => {
    server = createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it("gives up a hanging connect after its own timeout, not after the pool's (longer) queue wait", async () => {
    const pool = new Pool({
      host: '127.0.0.1',
      port,
      user: 'x',
      database: 'x',
      max: 1,
      connectionTimeoutMillis: 30_000, // the queue wait (DATABASE_POOL_WAIT_MS)
      Client: connectBoundedClient(Client, 200),
    });
    pool.on('error', () => undefined);
    const startedAt = Date.now();
    const err = await pool.connect().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(Date.now() - startedAt).toBeLessThan(5_000);
    expect(err).toBeInstanceOf(Error);
    expect(isConnectionFailure(err)).toBe(true);
    await pool.end();
  });
});
