import { type Socket, connect } from 'node:net';
import { Client, type ClientConfig } from 'pg';

/**
 * Marks a statement that may legitimately be silent for minutes (batch work over a whole table:
 * the recommendations' recomputation): TypeORM's `.comment(LONG_RUNNING)` puts it first in the
 * statement's text, and stallAwareClient allows such a statement `longRunningMs` of silence.
 */
export const LONG_RUNNING = 'long-running';
const LONG_RUNNING_PREFIX = `/* ${LONG_RUNNING} */`;

/**
 * A node-postgres Client that gives up on a server that went silent: while a statement is out and
 * nothing at all has come back for `silenceMs` — for a statement marked LONG_RUNNING, once its
 * silences of that length add up to `longRunningMs` — its connection is destroyed: the statement
 * fails (a connection failure: 503, counted by the circuit breaker) and the pool drops the client.
 *
 * A PostgreSQL that keeps its connections and stops answering (a disk stall, a frozen host) or
 * vanishes without a reset (a failover) otherwise holds every statement sent to it for as long as
 * TCP keeps trying — about 15 minutes: keepalives are not sent while data waits unacknowledged,
 * and the kernel of a frozen server still acknowledges. Each such statement kept its pool
 * connection (node-postgres' own `query_timeout` fails the caller but leaves the connection busy),
 * so a few of them wedged the pool and every request waited for a slot. Idle connections are left
 * alone: the server owes them nothing. Only the marked statements get the long allowance: the
 * worker's ordinary ones (the outbox relay's claims, expiries, email claims) give up as soon as
 * the API's, so a stalled server does not stop its jobs for the batch statements' allowance.
 */
export function stallAwareClient(silenceMs: number, longRunningMs = silenceMs): typeof Client {
  return class StallAwareClient extends Client {
    constructor(config?: string | ClientConfig) {
      super(config);
      const self = this as unknown as {
        connection: { stream: Socket };
        _activeQuery?: { text?: unknown };
      };
      // (the raw socket: over TLS, node-postgres reads from a TLS socket wrapped around it, whose
      // traffic still refreshes this one's idle timer)
      const stream = self.connection.stream;
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
        silentMs += silenceMs;
        const allowed =
          typeof active.text === 'string' && active.text.startsWith(LONG_RUNNING_PREFIX)
            ? longRunningMs
            : silenceMs;
        if (silentMs < allowed) {
          stream.setTimeout(silenceMs); // (fires again after another silence of that length)
          return;
        }
        // the server's side first: its backend may be alive (a statement waiting on a lock, a
        // long one), holding the transaction's locks — an idempotency key's, hot rows' — until it
        // next writes to the socket dropped here (or a timeout ends it): asked to cancel, it ends
        // at once and gives them up
        // — and the socket is closed only once the cancel was taken (a pooler such as PgBouncer
        // closes its server connection when the client leaves, backend running, and then drops a
        // cancel whose client is gone); the answer to the cancelled statement is not read
        stream.pause();
        void cancelOnServer(this).then(() =>
          stream.destroy(
            new Error(`Query read timeout: PostgreSQL sent nothing for ${silentMs} ms`),
          ),
        );
      });
    }
  };
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
