import { Global, Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import Redis from 'ioredis';
import { APP_CONFIG, AppConfig } from '../config/config';
import { watchCredentials } from './sign-in-refusal';

/** The shared ioredis client for cache, rate limits and health (not BullMQ, which has its own). */
export const REDIS = Symbol('REDIS');

/**
 * Fail fast instead of queueing: when Redis is down, callers get an error at once and
 * fall back (cache → database, health → 503) rather than hanging. A command whose reply the
 * dropped connection took is failed too, never sent again on the next connection
 * (`maxRetriesPerRequest: 0`): Redis may have run it already, and the counters here (failed
 * sign-ins, rate limits) must not count one request twice — the caller's error path decides.
 */
export function createRedisClient(url: string, name: string): Redis {
  clearSocketTimersOnClose();
  return new Redis(url, {
    connectionName: name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    // a Redis that keeps the connection but stops answering (stalled, or gone without a reset):
    // callers give up at once (withTimeout), but their commands stayed queued on the connection
    // until a reply that never came — every request added its own, and the heap filled. No data
    // for this long while commands wait: the connection is dropped, they fail, and it reconnects.
    socketTimeout: REDIS_SOCKET_TIMEOUT_MS,
    keepAlive: 10_000,
    // (not at once, even the first: ioredis counts afresh at every 'ready', and a connection
    // dropped on each READONLY reply (reconnectOnError) would reconnect once per refused command;
    // the fail-closed limits wait out this gap instead: whenConnected)
    retryStrategy: (times) => Math.min(times * 200, 2000),
    reconnectOnError: reconnectOnReadOnly(1),
  });
}

/** The part of ioredis's client the fix below reaches into (its own, unexported). */
interface SocketTimeoutInternals {
  socketTimeoutTimer?: NodeJS.Timeout;
  setSocketTimeout?: (this: SocketTimeoutInternals) => void;
  on(event: 'close', listener: () => void): unknown;
  [CLEARS_ON_CLOSE]?: true;
}
const CLEARS_ON_CLOSE = Symbol('socket timer cleared on close');
let socketTimeoutsBound = false;

/**
 * ioredis (5.11) arms a connection's `socketTimeout` timer and never clears it when that
 * connection closes for another reason: when it fires, it destroys whichever connection is
 * current — the healthy next one. BullMQ's blocking connection (a worker's wait for jobs) is
 * closed by BullMQ's own watchdog with a timer armed, so after a Redis restart each worker's
 * connections were dropped every ~20 s, each a warning, until the worker restarted (redis-loss
 * review); the shared client's next connection, up to 3 s after a reconnect. Every ioredis client
 * of the process — the shared one, and BullMQ's, which it makes itself — the first time it arms a
 * timer, gets one listener of its own 'close' that clears it. Called by whatever makes a client
 * (createRedisClient, queueConnectionOptions); once is enough.
 */
export function clearSocketTimersOnClose(): void {
  if (socketTimeoutsBound) return;
  socketTimeoutsBound = true;
  const proto = Redis.prototype as unknown as SocketTimeoutInternals;
  const arm = proto.setSocketTimeout;
  if (typeof arm !== 'function') return; // a release that has it no more (fixed, or reworked)
  proto.setSocketTimeout = function (this: SocketTimeoutInternals) {
    arm.call(this);
    if (this[CLEARS_ON_CLOSE]) return;
    this[CLEARS_ON_CLOSE] = true;
    this.on('close', () => {
      clearTimeout(this.socketTimeoutTimer);
      this.socketTimeoutTimer = undefined;
    });
  };
}

/**
 * After a failover the old primary may keep its clients' connections and answer every write
 * `READONLY` (it is a replica now; the URL's name points at the new primary), and ioredis
 * reconnects only when a connection drops: the client would stay on the replica for good. On that
 * reply it reconnects (`1`: the command fails, as any refused one; `2`, for clients that queue
 * and retry — BullMQ's — also sends it again on the new connection).
 */
export const reconnectOnReadOnly =
  (resend: 1 | 2) =>
  (err: Error): false | 1 | 2 =>
    isReadOnlyReply(err) ? resend : false;

/**
 * The reply of a demoted primary to a write (`READONLY You can't write against a read only
 * replica.`), on which every Redis client of the process moves to a new connection: the ioredis
 * ones (reconnectOnReadOnly) and the catalog store's node-redis one (leaveDemotedPrimary).
 */
export const isReadOnlyReply = (err: unknown): boolean =>
  err instanceof Error && /^READONLY\b/.test(err.message);

/** How long the shared client waits for any reply before it drops the connection (see above). */
export const REDIS_SOCKET_TIMEOUT_MS = 3_000;

@Global()
@Module({
  providers: [
    {
      provide: REDIS,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => {
        const client = createRedisClient(config.redis.url, `${config.redis.keyPrefix}:app`);
        // state is reported by health checks, not crashes: RedisHealthIndicator, which logs a
        // refusal of the client's credentials (and the boot's RedisCredentialsCheck refuses it)
        client.on('error', () => undefined);
        watchCredentials(client);
        return client;
      },
    },
  ],
  exports: [REDIS],
})
export class RedisModule implements OnApplicationShutdown {
  constructor(@Inject(REDIS) private readonly redis: Redis) {}

  async onApplicationShutdown(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
