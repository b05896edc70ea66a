import type { Socket } from 'node:net';
import { Client, type ClientConfig } from 'pg';

/**
 * A node-postgres Client that gives up on a server that went silent: while a statement is out and
 * nothing at all has come back for `silenceMs`, its connection is destroyed — the statement fails
 * (a connection failure: 503, counted by the circuit breaker) and the pool drops the client.
 *
 * A PostgreSQL that keeps its connections and stops answering (a disk stall, a frozen host) or
 * vanishes without a reset (a failover) otherwise holds every statement sent to it for as long as
 * TCP keeps trying — about 15 minutes: keepalives are not sent while data waits unacknowledged,
 * and the kernel of a frozen server still acknowledges. Each such statement kept its pool
 * connection (node-postgres' own `query_timeout` fails the caller but leaves the connection busy),
 * so a few of them wedged the pool and every request waited for a slot. Idle connections are left
 * alone: the server owes them nothing.
 */
export function stallAwareClient(silenceMs: number): typeof Client {
  return class StallAwareClient extends Client {
    constructor(config?: string | ClientConfig) {
      super(config);
      const self = this as unknown as { connection: { stream: Socket }; _activeQuery?: unknown };
      const stream = self.connection.stream;
      stream.setTimeout(silenceMs);
      stream.on('timeout', () => {
        if (!self._activeQuery) return;
        stream.destroy(
          new Error(`Query read timeout: PostgreSQL sent nothing for ${silenceMs} ms`),
        );
      });
    }
  };
}
