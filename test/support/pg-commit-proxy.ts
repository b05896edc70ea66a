import { AddressInfo, Server, Socket, createServer } from 'node:net';
import { connectUpstream } from './tcp-pair';

/**
 * A TCP pass-through in front of PostgreSQL that can cut one connection around its next COMMIT:
 *
 * - `loseNextCommitAnswer()`: the server runs the COMMIT; the connection is cut as its answer
 *   (CommandComplete `COMMIT`) comes back, before the client sees it — the transaction committed,
 *   the client cannot know.
 * - `cutBeforeNextCommit()`: the connection is cut as a simple query ending in COMMIT goes out,
 *   before the server sees it — the server rolls back.
 *
 * Assumes no TLS (node-postgres without `ssl` sends no SSLRequest). Only simple-protocol
 * COMMITs are seen (how TransactionHost commits).
 */
export interface PgCommitProxy {
  /** The same connection string, through the proxy. */
  through(url: string): string;
  /**
   * With `after`: the next COMMIT answer on a connection that sent a statement matching it since
   * (the transaction of that statement, not whichever commits first).
   */
  loseNextCommitAnswer(after?: RegExp): Promise<void>;
  cutBeforeNextCommit(): Promise<void>;
  /**
   * The next statement matching `pattern` (simple query or Parse) runs, and its answer is lost:
   * held back until the server is ready for the next, then the connection is cut. Outside a
   * transaction the statement has committed; inside one, the cut ends (rolls back) it. Resolves
   * once that happened.
   */
  loseNextAnswer(pattern: RegExp): Promise<void>;
  /**
   * Until the returned function is called, the connection is cut as any statement matching
   * `pattern` goes out (simple query or Parse), before the server sees it: the database is
   * unreachable for that statement, every time.
   */
  cutStatements(pattern: RegExp): () => void;
  /**
   * The next statement matching `pattern` cuts its connection as it goes out, before the server
   * sees it — once (a blink: the statement's next run goes through). Resolves once that happened.
   */
  cutNextStatement(pattern: RegExp): Promise<void>;
  /**
   * The next connection opened is ended by the server the moment it is ready: its
   * ReadyForQuery and a FATAL 57P01 (an administrator's pg_terminate_backend, a failover) reach
   * the client in one packet, then the connection is cut. Resolves once that happened.
   */
  terminateNextConnectionWhenReady(): Promise<void>;
  /** Connections cut so far. */
  readonly cuts: number;
  /** Client connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

type Armed = { side: 'answer' | 'query'; done: () => void; after?: RegExp } | undefined;

/** An ErrorResponse as PostgreSQL sends it for pg_terminate_backend (FATAL 57P01). */
function adminShutdownMessage(): Buffer {
  const fields = Buffer.from(
    'SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0',
    'utf8',
  );
  const head = Buffer.alloc(5);
  head[0] = 0x45; // E
  head.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}

export async function startPgCommitProxy(url: string): Promise<PgCommitProxy> {
  const pg = new URL(url);
  const target = { host: pg.hostname, port: Number(pg.port || 5432) };
  let armed: Armed;
  let terminateNext: (() => void) | undefined;
  let blocked: RegExp | undefined;
  let cutOnce: { pattern: RegExp; done: () => void } | undefined;
  let answerLost: { pattern: RegExp; done: () => void } | undefined;
  let cuts = 0;
  let connections = 0;
  const sockets = new Set<Socket>();

  const server: Server = createServer((client) => {
    connections++;
    const doomed = terminateNext;
    terminateNext = undefined;
    const { upstream } = connectUpstream(client, target, sockets);
    const cut = () => {
      cuts++;
      client.destroy();
      upstream.destroy();
    };

    /** Whether this connection sent a statement matching the armed `after` since it was armed. */
    let sawAfter: Armed = undefined;
    /** This connection's answers are dropped until the server is ready, then it is cut. */
    let doomedAnswer: (() => void) | undefined;
    // client → server: the startup message has no type byte; every later one does
    let started = false;
    let fromClient = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      fromClient = Buffer.concat([fromClient, chunk]);
      for (;;) {
        const typed = started ? 1 : 0;
        if (fromClient.length < typed + 4) return;
        const length = fromClient.readInt32BE(typed) + typed;
        if (fromClient.length < length) return;
        const message = fromClient.subarray(0, length);
        fromClient = fromClient.subarray(length);
        const watched = blocked ?? cutOnce?.pattern ?? armed?.after ?? answerLost?.pattern;
        if (started && watched && (message[0] === 0x51 /* Q */ || message[0] === 0x50) /* P */) {
          const body = message.subarray(5);
          // Parse: statement name, then the query (NUL-terminated each); Query: the query
          const text = (message[0] === 0x50 ? body.subarray(body.indexOf(0) + 1) : body)
            .toString('utf8')
            .split('\0')[0];
          if (blocked?.test(text)) {
            cut();
            return;
          }
          if (cutOnce?.pattern.test(text)) {
            const { done } = cutOnce;
            cutOnce = undefined;
            cut();
            done();
            return;
          }
          if (armed?.after?.test(text)) sawAfter = armed;
          if (answerLost?.pattern.test(text)) {
            doomedAnswer = answerLost.done;
            answerLost = undefined;
          }
        }
        if (started && armed?.side === 'query' && message[0] === 0x51 /* Q */) {
          const text = message.subarray(5, message.length - 1).toString('utf8');
          if (/\bCOMMIT\s*;?\s*$/i.test(text)) {
            const { done } = armed;
            armed = undefined;
            cut();
            done();
            return;
          }
        }
        started = true;
        upstream.write(message);
      }
    });

    // server → client: typed messages from the start
    let fromServer = Buffer.alloc(0);
    upstream.on('data', (chunk: Buffer) => {
      fromServer = Buffer.concat([fromServer, chunk]);
      if (doomedAnswer) {
        // dropped, up to the server's ReadyForQuery: then the connection is cut
        for (let at = 0; fromServer.length - at >= 5;) {
          const length = fromServer.readInt32BE(at + 1) + 1;
          if (fromServer.length - at < length) break;
          if (fromServer[at] === 0x5a /* Z */) {
            const done = doomedAnswer;
            doomedAnswer = undefined;
            fromServer = Buffer.alloc(0);
            cut();
            done();
            return;
          }
          at += length;
        }
        return;
      }
      let forward = 0;
      while (fromServer.length - forward >= 5) {
        const length = fromServer.readInt32BE(forward + 1) + 1;
        if (fromServer.length - forward < length) break;
        const type = fromServer[forward];
        if (doomed && type === 0x5a /* Z: ready for query */) {
          const ready = fromServer.subarray(0, forward + length);
          fromServer = Buffer.alloc(0);
          client.write(Buffer.concat([ready, adminShutdownMessage()]), () => {
            cut();
            doomed();
          });
          return;
        }
        if (
          armed?.side === 'answer' &&
          (!armed.after || sawAfter === armed) &&
          type === 0x43 /* C */
        ) {
          const tag = fromServer.subarray(forward + 5, forward + length - 1).toString('utf8');
          if (tag === 'COMMIT') {
            const { done } = armed;
            armed = undefined;
            // what came before the COMMIT's answer (the statements sent with it) goes through
            client.write(fromServer.subarray(0, forward), () => {
              cut();
              done();
            });
            fromServer = Buffer.alloc(0);
            return;
          }
        }
        // a transaction ended without its COMMIT's answer lost (rolled back, run again elsewhere;
        // or the statement ran on its own): the next one on this connection is not the one meant
        if (sawAfter && type === 0x5a /* Z */ && fromServer[forward + 5] === 0x49 /* I: idle */)
          sawAfter = undefined;
        forward += length;
      }
      client.write(fromServer.subarray(0, forward));
      fromServer = fromServer.subarray(forward);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const arm = (side: 'answer' | 'query', after?: RegExp) =>
    new Promise<void>((done) => {
      if (armed) throw new Error('the proxy is already armed');
      armed = { side, done, after };
    });

  return {
    through: (url) => {
      const via = new URL(url);
      via.hostname = '127.0.0.1';
      via.port = String(port);
      return via.toString();
    },
    loseNextCommitAnswer: (after) => arm('answer', after),
    cutBeforeNextCommit: () => arm('query'),
    loseNextAnswer: (pattern) =>
      new Promise<void>((done) => {
        if (answerLost) throw new Error('the proxy is already armed');
        answerLost = { pattern, done };
      }),
    terminateNextConnectionWhenReady: () =>
      new Promise<void>((done) => {
        if (terminateNext) throw new Error('the proxy is already armed');
        terminateNext = done;
      }),
    cutNextStatement: (pattern) =>
      new Promise<void>((done) => {
        if (cutOnce) throw new Error('the proxy is already armed');
        cutOnce = { pattern, done };
      }),
    cutStatements: (pattern) => {
      blocked = pattern;
      return () => {
        blocked = undefined;
      };
    },
    get cuts() {
      return cuts;
    },
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
