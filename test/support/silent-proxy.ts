import { AddressInfo, Server, Socket, connect, createServer } from 'node:net';
import { TransactionHost } from '../../src/database/transaction-host';
import { TestApp, bootTestApp } from './test-app';
import { createTestDatabase } from './test-database';

/**
 * A TCP pass-through in front of PostgreSQL that can go silent the way a network path does when
 * it drops packets for a moment: no reset, nothing forwarded any more on any connection open at
 * that moment (each waits for its own timeout), and new connections held back for `holdMs`, then
 * served. `silenceAfter(match)`: the next simple-protocol statement whose text matches runs on the
 * server, and the cut falls as its answer comes back (a COMMIT committed, its answer lost);
 * `silence()`: the cut falls now.
 */
export interface SilentProxy {
  /** `url` with its host and port replaced by the proxy's. */
  through(url: string): string;
  /** Resolves once the cut has fallen (the statement ran; its answer was dropped). */
  silenceAfter(match: RegExp, holdMs?: number): Promise<void>;
  /** The cut falls now: every connection open goes silent, new ones are held for `holdMs`. */
  silence(holdMs?: number): void;
  close(): Promise<void>;
}

interface Conn {
  client: Socket;
  upstream: Socket;
  silent: boolean;
  /** The armed statement went through this connection: its answer is awaited, to be dropped. */
  holding: boolean;
}

async function startSilentProxy(url: string): Promise<SilentProxy> {
  const pg = new URL(url);
  const conns = new Set<Conn>();
  let holdUntil = 0;
  let armed: { match: RegExp; holdMs: number; fell: () => void } | undefined;

  const silence = (holdMs: number) => {
    holdUntil = Date.now() + holdMs;
    for (const c of conns) c.silent = true;
  };

  const server: Server = createServer((client) => {
    if (Date.now() < holdUntil) {
      client.pause();
      setTimeout(() => client.resume(), holdUntil - Date.now());
    }
    const upstream = connect(Number(pg.port || 5432), pg.hostname);
    const c: Conn = { client, upstream, silent: false, holding: false };
    conns.add(c);
    const end = () => {
      client.destroy();
      upstream.destroy();
      conns.delete(c);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);

    let started = false;
    let fromClient = Buffer.alloc(0);
    let arming: typeof armed;
    client.on('data', (chunk: Buffer) => {
      if (c.silent) return;
      fromClient = Buffer.concat([fromClient, chunk]);
      for (;;) {
        const typed = started ? 1 : 0; // the startup message has no type byte
        if (fromClient.length < typed + 4) return;
        const length = fromClient.readInt32BE(typed) + typed;
        if (fromClient.length < length) return;
        const message = fromClient.subarray(0, length);
        fromClient = fromClient.subarray(length);
        if (started && message[0] === 0x51 /* Query */ && armed) {
          const text = message
            .subarray(5, message.length - 1)
            .toString('utf8')
            .trim();
          if (armed.match.test(text)) {
            arming = armed;
            armed = undefined;
            c.holding = true;
          }
        }
        started = true;
        upstream.write(message);
      }
    });
    let fromServer = Buffer.alloc(0);
    upstream.on('data', (chunk: Buffer) => {
      if (c.silent) return;
      if (!c.holding) {
        client.write(chunk);
        return;
      }
      // the armed statement's answer, up to its ReadyForQuery: dropped, and the path goes silent
      fromServer = Buffer.concat([fromServer, chunk]);
      for (let at = 0; fromServer.length - at >= 5;) {
        if (fromServer[at] === 0x5a /* ReadyForQuery */) {
          c.holding = false;
          silence(arming!.holdMs);
          arming!.fell();
          return;
        }
        at += fromServer.readInt32BE(at + 1) + 1;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    through: (u) => {
      const via = new URL(u);
      via.hostname = '127.0.0.1';
      via.port = String(port);
      return via.toString();
    },
    silenceAfter: (match, holdMs = 10) =>
      new Promise<void>((fell) => {
        armed = { match, holdMs, fell };
      }),
    silence: (holdMs = 10) => silence(holdMs),
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of conns) {
          c.client.destroy();
          c.upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

/** An API app whose database is reached through a silent proxy (startSilentProxy). */
export interface AppBehindSilentProxy {
  t: TestApp;
  proxy: SilentProxy;
  /** Eight pool connections opened and idle: the ones a cut silences. */
  warmPool(): Promise<void>;
  close(): Promise<void>;
}

/** A test database, a silent proxy in front of it and an API app reaching it through the proxy. */
export async function bootBehindSilentProxy(
  env: Record<string, string>,
): Promise<AppBehindSilentProxy> {
  const db = await createTestDatabase();
  const proxy = await startSilentProxy(db.url);
  const t = await bootTestApp({ db, env: { DATABASE_URL: proxy.through(db.url), ...env } });
  return {
    t,
    proxy,
    warmPool: async () => {
      const tx = t.app.get(TransactionHost);
      await Promise.all(Array.from({ length: 8 }, () => tx.query('SELECT pg_sleep(0.3)')));
    },
    close: async () => {
      // the silenced connections first (reset): a pool's end waits for each of its connections
      await proxy.close();
      await t.close();
      await t.db.drop();
    },
  };
}
