import { Logger } from '@nestjs/common';
import type { EventEmitter } from 'node:events';
import { type Socket, connect } from 'node:net';
import { Client, type ClientConfig } from 'pg';

/**
 * Marks a statement that may legitimately be silent for minutes (batch work over a whole table:
 * the recommendations' recomputation): TypeORM's `.comment(LONG_RUNNING)` puts it first in the
 * statement's text, and stallAwareClient allows such a statement `longRunningMs` of silence.
 */
export const LONG_RUNNING = 'long-running';
const LONG_RUNNING_PREFIX = `/* ${LONG_RUNNING} */`;

/** Marks the error an idle connection is dropped with after another's silence (isDroppedIdle). */
const DROPPED_IDLE = Symbol('dropped idle');

/**
 * Whether `err` is the one a pool re-emits for an idle connection dropped after another one's
 * silence (stallAwareClient): logged once for all of them by the give-up, not once each.
 */
export function isDroppedIdle(err: unknown): boolean {
  return typeof err === 'object' && err !== null && DROPPED_IDLE in err;
}

const logger = new Logger('Database');

/**
 * A node-postgres Client that gives up on a server that went silent: while a statement is out and
 * nothing at all has come back for `silenceMs` — for a statement marked LONG_RUNNING, once its
 * silences of that length add up to `longRunningMs` — its connection is destroyed: the statement
 * fails (a connection failure: 503, counted by the circuit breaker) and the pool drops the client.
 * Silence is judged once what already came is read (a stall of this process is not the server's).
 *
 * A PostgreSQL that keeps its connections and stops answering (a disk stall, a frozen host) or
 * vanishes without a reset (a failover) otherwise holds every statement sent to it for as long as
 * TCP keeps trying — about 15 minutes: keepalives are not sent while data waits unacknowledged,
 * and the kernel of a frozen server still acknowledges. Each such statement kept its pool
 * connection (node-postgres' own `query_timeout` fails the caller but leaves the connection busy),
 * so a few of them wedged the pool and every request waited for a slot. Only the marked
 * statements get the long allowance: the worker's ordinary ones (the outbox relay's claims,
 * expiries, email claims) give up as soon as the API's, so a stalled server does not stop its jobs
 * for the batch statements' allowance.
 *
 * An idle connection's own silence is no sign of anything (the server owes it nothing), but one
 * given up on is: a cut that sends no reset (packets dropped for a moment, a failover behind a
 * load balancer) silences the pool's idle connections with it, and each later request took one of
 * them and stalled a full `silenceMs` before its 503 — the next one on the next (503, 503, 503,
 * 201 at DATABASE_QUERY_TIMEOUT_MS=3000: minutes of stalls at 60 s with a pool of 20, after a
 * blink of a few hundred milliseconds). So the give-up also drops every connection of the same
 * pool idle in it at that moment, however recently opened: when the cut fell is not known — any
 * time after the statement was sent, so one opened while it was out is as dead as an older one
 * (keeping those opened in the last `silenceMs` left the next caller a full stall on one) — and a
 * reconnect costs milliseconds where a dead connection costs the whole limit. A server that was
 * only slow loses its idle connections too: a statement silent for the whole limit on a live
 * server is abnormal in itself, and the cost is the reconnects. The next requests open fresh ones
 * (a server still unreachable fails their connect after its own timeout, a failure the breaker
 * counts). Connections handed out are left alone, even between two statements of a transaction:
 * a statement out has its own silence timer, and a long one — LONG_RUNNING's allowance — must not
 * be cut short for another's silence. The clients of one pool are one class (this function is
 * called once per pool: dataSourceOptions), which knows which of them are idle in the pool — see
 * `release`.
 */
export function stallAwareClient(silenceMs: number, longRunningMs = silenceMs): typeof Client {
  /** The clients idle in the pool now (released, not handed out again, not ended). */
  const idle = new Set<StallAwareClient>();

  class StallAwareClient extends Client {
    /** The `release` pg-pool gave the holder of this checkout, as wrapped by the setter below. */
    private releaseThisCheckout?: (err?: Error | boolean) => void;
    /** The connection's TCP socket (under TLS's, if any). */
    private readonly socket: Socket;

    constructor(config?: string | ClientConfig) {
      super(config);
      const self = this as unknown as {
        connection: { stream: Socket };
        _activeQuery?: { text?: unknown };
        /** node-postgres' own mark of a failed connection, which pg-pool reads on release. */
        _queryable: boolean;
      };
      // (the raw socket: over TLS, node-postgres reads from a TLS socket wrapped around it, whose
      // traffic still refreshes this one's idle timer)
      const stream = self.connection.stream;
      this.socket = stream;
      this.once('end', () => idle.delete(this));
      // the silence of the statement out, in whole timeouts: a statement's own, so counted anew
      // for each statement — not reset by the raw socket's 'data', which over TLS never comes
      let counted: unknown;
      let silentMs = 0;
      stream.setTimeout(silenceMs);
      stream.on('timeout', () => {
        const active = self._activeQuery;
        if (!active) {
          counted = undefined; // (not holding on to a finished statement and its rows)
          return;
        }
        if (active !== counted) {
          counted = active;
          silentMs = 0;
        }
        const allowed =
          typeof active.text === 'string' && active.text.startsWith(LONG_RUNNING_PREFIX)
            ? longRunningMs
            : silenceMs;
        // the pool's idle connections, when this silence would be the last one allowed: dropped
        // now, in this turn, so that none is handed out before the judgment below
        const dropped = silentMs + silenceMs >= allowed ? StallAwareClient.dropAllIdle() : 0;
        // judged after what already came is read: timers run before the event loop reads its
        // sockets, so after a stall of this process (a long GC, a busy loop) as long as the limit,
        // an answer that came during it was taken for the server's silence and a live statement
        // cut — read in this turn's poll phase, before its immediates
        const readBefore = bytesRead();
        setImmediate(() => {
          // ended, released with an error or given up meanwhile: nothing of it to judge
          if (stream.destroyed || self.connection.stream.destroyed || !self._queryable) {
            if (dropped > 0)
              logger.warn(
                `PostgreSQL sent nothing for ${silentMs + silenceMs} ms on a pool connection, closed since: dropped the pool's ${dropped} idle connection(s)`,
              );
            return;
          }
          if (self._activeQuery !== active || bytesRead() !== readBefore) {
            if (dropped > 0)
              logger.warn(
                `an answer from PostgreSQL came as a statement's silence limit (${silenceMs} ms) ran out, or was read late (this process busy): the pool's ${dropped} idle connection(s) dropped as for a silence`,
              );
            stream.setTimeout(silenceMs); // (no silence: counted from now)
            return;
          }
          silentMs += silenceMs;
          if (silentMs < allowed) {
            stream.setTimeout(silenceMs); // (fires again after another silence of that length)
            return;
          }
          if (dropped > 0)
            logger.warn(
              `PostgreSQL sent nothing for ${silentMs} ms on a pool connection: dropped the pool's ${dropped} idle connection(s)`,
            );
          this.giveUp(silentMs);
        });
      });
      /** Bytes read on the raw socket and, over TLS, on the TLS socket that reads from it. */
      const bytesRead = () =>
        stream.bytesRead +
        (self.connection.stream === stream ? 0 : self.connection.stream.bytesRead);
    }

    /** Gives up on the statement out after `silentMs` of silence (stream.on('timeout') above). */
    private giveUp(silentMs: number): void {
      const self = this as unknown as { connection: { stream: Socket }; _queryable: boolean };
      const stream = this.socket;
      // the server's side first: its backend may be alive (a statement waiting on a lock, a
      // long one), holding the transaction's locks — an idempotency key's, hot rows' — until it
      // next writes to the socket dropped here (or a timeout ends it): asked to cancel, it ends
      // at once and gives them up
      // — and the socket is closed only once the cancel was taken (a pooler such as PgBouncer
      // closes its server connection when the client leaves, backend running, and then drops a
      // cancel whose client is gone); the answer to the cancelled statement is not read: over
      // TLS node-postgres reads from the TLS socket (`connection.stream` since the upgrade),
      // which reads the raw one's bytes itself, so pausing the raw socket stopped nothing — the
      // holder got the cancel's 57014, released a client that looked sound, and the pool handed
      // it to the next caller, whose statement the destroy below then failed. Both are paused,
      // and the client is marked not queryable, as node-postgres marks one whose connection
      // failed: whatever its holder gets, pg-pool ends it on release instead of idling it
      // (the holder gets the destroy's error, a connection failure: 503, counted by the breaker)
      stream.pause();
      self.connection.stream.pause();
      self._queryable = false;
      void cancelOnServer(this).then(() =>
        stream.destroy(new Error(`Query read timeout: PostgreSQL sent nothing for ${silentMs} ms`)),
      );
    }

    /**
     * pg-pool sets `client.release` on each checkout (its documented `client.release()`), just
     * before it hands the client out, and the holder calls it to give the client back: the one
     * place where the client learns it left the pool's idle list and came back to it, at the very
     * moment it does (the pool's own list is private). The client counts as idle from just before
     * the pool takes it back — the pool may hand it out again in the same call — until the next
     * checkout or its end; a holder's second call is passed on as it is (pg-pool throws on it).
     * A client never checked out by a pool (used on its own) is never idle here — nor any, should
     * a pg-pool stop setting `release` so: nothing is dropped then, as before.
     */
    get release(): ((err?: Error | boolean) => void) | undefined {
      return this.releaseThisCheckout;
    }
    set release(poolRelease: ((err?: Error | boolean) => void) | undefined) {
      idle.delete(this);
      if (!poolRelease) {
        this.releaseThisCheckout = undefined;
        return;
      }
      let released = false;
      this.releaseThisCheckout = (err) => {
        if (!released) {
          released = true;
          // (with an error the pool ends it instead: end() below takes it off again)
          idle.add(this);
        }
        poolRelease(err);
      };
    }

    override end(): Promise<void>;
    override end(callback: (err: Error) => void): void;
    override end(callback?: (err: Error) => void): Promise<void> | void {
      idle.delete(this);
      return callback ? super.end(callback) : super.end();
    }

    /** Drops every client idle in the pool now: how many. */
    private static dropAllIdle(): number {
      const dropped = [...idle];
      for (const client of dropped) client.dropIdle();
      return dropped.length;
    }

    /**
     * Drops this idle client the way pg-pool drops one whose server went away: an 'error' while
     * idle, on which the pool takes it off its idle list and out of its count, synchronously, and
     * ends it — it is never released, so never released twice. The socket is destroyed first: a
     * polite end waits for an answer from the silent server. (The pool re-emits the error as its
     * own 'error', which must have a listener: dataSourceOptions' poolErrorHandler.)
     */
    private dropIdle(): void {
      idle.delete(this);
      // (a client given back with its statement still out — one of several run at once on a
      // connection failed — has a backend that may hold locks: asked to cancel it, as a give-up does)
      if ((this as unknown as { _activeQuery?: unknown })._activeQuery) void cancelOnServer(this);
      this.socket.destroy();
      (this as unknown as { connection: EventEmitter }).connection.emit(
        'error',
        Object.assign(
          new Error('idle pool connection dropped: PostgreSQL went silent on another'),
          {
            [DROPPED_IDLE]: true,
          },
        ),
      );
    }
  }

  return StallAwareClient;
}

/** How long a cancel request may take to be taken (a frozen server never accepts it). */
const CANCEL_TIMEOUT_MS = 2_000;
/** The protocol's CancelRequest code (1234 << 16 | 5678). */
const CANCEL_REQUEST_CODE = 80877102;

/**
 * Asks the server, on a connection of its own, to cancel what `client`'s backend is running (the
 * protocol's CancelRequest, authenticated by the backend's secret key: it can cancel nothing
 * else, whoever has its process id since). Resolves once the server (or pooler) closed that
 * connection — it has taken the cancel — or after CANCEL_TIMEOUT_MS: a server that does not take
 * it (frozen, unreachable) has nothing running to give up, or will notice the dropped socket.
 * Never rejects. (With synchronous replication, a COMMIT waiting for its standby is cancelled
 * too: committed locally, as PostgreSQL warns — the outcome check already called it committed.)
 */
function cancelOnServer(client: Client): Promise<void> {
  const c = client as unknown as {
    processID: number | null;
    secretKey: number | null;
    host: string;
    port: number;
  };
  if (c.processID === null || c.secretKey === null) return Promise.resolve();
  const request = Buffer.alloc(16);
  request.writeInt32BE(16, 0);
  request.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  request.writeInt32BE(c.processID, 8);
  request.writeInt32BE(c.secretKey, 12);
  return new Promise((resolve) => {
    const socket = c.host.startsWith('/')
      ? connect(`${c.host}/.s.PGSQL.${c.port}`)
      : connect(c.port, c.host);
    socket.setTimeout(CANCEL_TIMEOUT_MS, () => socket.destroy());
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
    socket.on('connect', () => socket.end(request));
  });
}

/**
 * `base` with its own connect timeout: pg-pool hands each client the pool's options, whose
 * `connectionTimeoutMillis` is also how long a caller waits in the pool's queue. A queue seconds
 * long in front of a database that answers (a sale on one hot product) answered 503 "database
 * unavailable" after the connect timeout; the wait now has its own budget (DATABASE_POOL_WAIT_MS)
 * while a connect that hangs still fails after `connectTimeoutMs` (`timeout expired`).
 */
export function connectBoundedClient(base: typeof Client, connectTimeoutMs: number): typeof Client {
  return class ConnectBoundedClient extends base {
    constructor(config?: string | ClientConfig) {
      super(
        typeof config === 'object'
          ? { ...config, connectionTimeoutMillis: connectTimeoutMs }
          : config,
      );
      // Always a listener for 'error': pg-pool takes its own off a client as it hands a new one
      // out, and TypeORM adds its listener a turn later. A server that ends the connection the
      // moment it is ready (its ReadyForQuery and a FATAL in one packet: a failover, an
      // administrator's pg_terminate_backend of every backend) emitted 'error' in between, with
      // no listener: an uncaught exception that ended the API or worker process. The error is
      // not lost: the client is closed, and its next statement fails (503, as any dropped
      // connection's); the pool and TypeORM still add their own listeners.
      this.on('error', () => undefined);
    }
  };
}
