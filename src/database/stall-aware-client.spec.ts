import { Logger } from '@nestjs/common';
import { createServer, type Server, type Socket } from 'node:net';
import { Client, Pool, type PoolClient } from 'pg';
import { isConnectionFailure } from './db-circuit-breaker';
import { connectBoundedClient, isDroppedIdle, stallAwareClient } from './stall-aware-client';

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

/**
 * A PostgreSQL of a few lines: trust sign-in, every simple statement answered `SELECT 0` but one
 * calling pg_sleep (never answered: the server still working on it), a cancel request taken
 * (closed). `silence()` cuts every connection open now without a reset, the way a network path
 * dropping packets does: nothing read or sent on them any more; later ones answer.
 */
async function fakePostgres() {
  const frame = (type: string, body: Buffer) => {
    const head = Buffer.alloc(5);
    head.write(type, 0, 'latin1');
    head.writeInt32BE(body.length + 4, 1);
    return Buffer.concat([head, body]);
  };
  const int32 = (...values: number[]) => {
    const b = Buffer.alloc(4 * values.length);
    values.forEach((v, i) => b.writeInt32BE(v, 4 * i));
    return b;
  };
  const ready = frame('Z', Buffer.from('I'));
  const conns = new Set<{ socket: Socket; silent: boolean }>();
  let pid = 1;
  const server = createServer((socket) => {
    const c = { socket, silent: false };
    conns.add(c);
    socket.on('close', () => conns.delete(c)).on('error', () => undefined);
    let started = false;
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      if (c.silent) return;
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const typed = started ? 1 : 0; // (the startup message and a cancel have no type byte)
        if (pending.length < typed + 4) return;
        const length = pending.readInt32BE(typed) + typed;
        if (pending.length < length) return;
        const message = pending.subarray(0, length);
        pending = pending.subarray(length);
        if (!started) {
          if (message.readInt32BE(4) === 80877102) return void socket.end(); // a cancel: taken
          started = true;
          socket.write(Buffer.concat([frame('R', int32(0)), frame('K', int32(pid++, 7)), ready]));
        } else if (message[0] === 0x51 /* Query */) {
          if (message.includes('pg_sleep')) continue;
          socket.write(Buffer.concat([frame('C', Buffer.from('SELECT 0\0')), ready]));
        } else if (message[0] === 0x58 /* Terminate */) {
          socket.end();
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    silence: () => conns.forEach((c) => (c.silent = true)),
    close: async () => {
      conns.forEach((c) => c.socket.destroy());
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe("stallAwareClient: a give-up drops the pool's idle connections the silence cut too", () => {
  // (3 s: the fake server answers from this process, and the first test must open and use a
  // connection within half of it — 300 ms of a 600 ms limit left a stall of the worker no room)
  const SILENCE_MS = 3_000;
  let pg: Awaited<ReturnType<typeof fakePostgres>>;
  beforeAll(async () => {
    pg = await fakePostgres();
  });
  afterAll(() => pg.close());

  /** A pool of `max` stall-aware clients on the fake server. */
  const poolOf = (max: number, longRunningMs = SILENCE_MS) =>
    new Pool({
      host: '127.0.0.1',
      port: pg.port,
      user: 'x',
      database: 'x',
      max,
      Client: connectBoundedClient(stallAwareClient(SILENCE_MS, longRunningMs), 2_000),
    });
  /** Ends `pool` (a client still held — a failed expectation — would keep its end waiting). */
  const end = (pool: Pool) =>
    Promise.race([pool.end(), new Promise((resolve) => setTimeout(resolve, 2_000))]);

  it('drops every one idle in the pool, opened before the silence or since; one handed out is kept', async () => {
    const pool = poolOf(6, 10 * SILENCE_MS);
    const poolErrors: unknown[] = [];
    pool.on('error', (err) => poolErrors.push(err));
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      // three connections, opened before the cut
      const [victim, handedOut, idleOld] = await Promise.all([
        pool.connect(),
        pool.connect(),
        pool.connect(),
      ]);
      for (const c of [victim, handedOut, idleOld]) await c.query('SELECT 1');
      const socketOf = (c: object) =>
        (c as unknown as { connection: { stream: Socket } }).connection.stream;

      pg.silence();
      const given = victim.query('SELECT 1').then(
        () => 'answered',
        (err: Error) => err.message,
      );
      // a connection opened after the cut, through a path that answers, and idle again: when the
      // cut fell is not known (see the next test), so it goes too — a reconnect is cheap
      await new Promise((resolve) => setTimeout(resolve, SILENCE_MS / 2));
      const fresh = await pool.connect();
      await fresh.query('SELECT 1');
      const freshRelease = fresh.release;
      fresh.release();
      // (given back only now, or the pool would have handed it out again for the fresh one)
      idleOld.release();
      expect(pool.idleCount).toBe(2);

      expect(await given).toMatch(
        `Query read timeout: PostgreSQL sent nothing for ${SILENCE_MS} ms`,
      );
      // both idle ones are out of the pool (the give-up's own is still held)
      expect(pool.idleCount).toBe(0);
      expect(pool.totalCount).toBe(2);
      expect(socketOf(idleOld).destroyed).toBe(true);
      expect(socketOf(fresh).destroyed).toBe(true);
      expect(poolErrors).toHaveLength(2);
      expect(poolErrors.every(isDroppedIdle)).toBe(true);
      // one line for the give-up's drops (the pool's error for each is not logged: poolErrorHandler)
      expect(warn.mock.calls.map(([line]) => line)).toEqual([
        `PostgreSQL sent nothing for ${SILENCE_MS} ms on a pool connection: dropped the pool's 2 idle connection(s)`,
      ]);
      // the one handed out (its statement not sent yet) is its holder's, left to its own timer
      expect(socketOf(handedOut).destroyed).toBe(false);
      victim.release(new Error('given up'));
      expect(pool.totalCount).toBe(1);
      // (a dropped one's holder calling its release again is told so by the pool, as ever)
      expect(() => freshRelease()).toThrow(/already been released/);

      // the next caller gets a new connection, which answers
      const next = await pool.connect();
      expect([idleOld, fresh]).not.toContain(next);
      await expect(next.query('SELECT 1')).resolves.toBeDefined();
      next.release();
      handedOut.release(new Error('its path is cut'));
      expect(pool.totalCount).toBe(1);
      expect(pool.idleCount).toBe(1);
    } finally {
      warn.mockRestore();
      await end(pool);
    }
  });

  it('drops them in the turn the silence is found: a caller asking at that very moment gets a fresh connection, never a dead one', async () => {
    const pool = poolOf(6);
    pool.on('error', () => undefined);
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      const socketOf = (c: object) =>
        (c as unknown as { connection: { stream: Socket } }).connection.stream;
      const [victim, idleOld] = await Promise.all([pool.connect(), pool.connect()]);
      for (const c of [victim, idleOld]) await c.query('SELECT 1');
      idleOld.release();
      pg.silence();
      const given = victim.query('SELECT 1').then(
        () => 'answered',
        (err: Error) => err.message,
      );
      // asked from the silence timer's own turn (its listener after the client's): the pool hands
      // an idle client out on the next tick — the dead one, were the drop left to the judgment
      const asked = new Promise<PoolClient>((resolve, reject) =>
        socketOf(victim).once('timeout', () => void pool.connect().then(resolve, reject)),
      );
      const next = await asked;
      expect(next === idleOld).toBe(false); // (a client printed is pages long)
      await expect(next.query('SELECT 1')).resolves.toBeDefined();
      next.release();
      expect(await given).toMatch(/Query read timeout/);
      victim.release(new Error('given up'));
    } finally {
      warn.mockRestore();
      await end(pool);
    }
  });

  it('drops one opened while the given-up statement was out, before the cut: the next caller does not wait out a silence on it', async () => {
    const pool = poolOf(4);
    pool.on('error', () => undefined);
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    try {
      const victim = await pool.connect();
      // a statement out, the server working on it (it answers when done)
      const given = victim.query('SELECT pg_sleep(10)').then(
        () => 'answered',
        (err: Error) => err.message,
      );
      // meanwhile a connection is opened, used and given back; then the cut falls, before the
      // statement's answer: the silence the give-up sees began when the statement was sent, the
      // cut after the connection was opened — it is as dead as the others
      await sleep(50);
      const during = await pool.connect();
      await during.query('SELECT 1');
      during.release();
      await sleep(100);
      pg.silence();
      expect(await given).toMatch(
        `Query read timeout: PostgreSQL sent nothing for ${SILENCE_MS} ms`,
      );
      victim.release(new Error('given up'));

      const next = await pool.connect();
      const answer = await next.query('SELECT 1').then(
        () => 'answered',
        (err: Error) => err.message,
      );
      next.release();
      // (not a Query read timeout after the silence on the dead one)
      expect(answer).toBe('answered');
      expect(next).not.toBe(during);
    } finally {
      warn.mockRestore();
      await end(pool);
    }
  });
});
