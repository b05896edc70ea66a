import type { RedisOptions } from 'ioredis';
import { clearSocketTimersOnClose, reconnectOnReadOnly } from '../redis/redis.module';

/**
 * How long a BullMQ connection waits for any reply while commands are out before it drops the
 * connection (ioredis `socketTimeout`) — above a worker's longest blocking wait for a job
 * (BZPOPMIN, at most 10 s in BullMQ 5, and its 1 s watchdog).
 */
export const QUEUE_SOCKET_TIMEOUT_MS = 20_000;

/**
 * The ioredis options of every BullMQ connection (queues, and the workers' main and blocking
 * connections), for REDIS_URL.
 *
 * A Redis gone without a reset (its host died; a failover behind one name) left the main
 * connections' commands — moving jobs, lock renewals, adds — unanswered for as long as TCP kept
 * retransmitting (~15 min): keepalives are not sent while data waits unacknowledged, and only
 * BullMQ's blocking connection has a watchdog. Every queue stalled, the sweeps with it; the shared
 * client already gave up after 3 s. Now such a connection is dropped after QUEUE_SOCKET_TIMEOUT_MS
 * and its commands sent again on the next one (`maxRetriesPerRequest: null`); an idle one is
 * probed by TCP keepalives after 10 s.
 */
export function queueConnectionOptions(url: string): RedisOptions {
  clearSocketTimersOnClose();
  return {
    ...redisOptionsFromUrl(url),
    maxRetriesPerRequest: null,
    // reconnect at most 5 s after Redis is back (BullMQ's default backs off to 20 s), so the
    // relay, the workers and the schedulers resume soon after an outage
    retryStrategy: (times: number) => Math.min(500 * times, 5_000),
    // a failover's demoted primary answers READONLY on the connections it keeps: move on
    reconnectOnError: reconnectOnReadOnly(2),
    socketTimeout: QUEUE_SOCKET_TIMEOUT_MS,
    keepAlive: 10_000,
  };
}

/** ioredis options from a redis:// or rediss:// URL, for BullMQ connections. */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const u = new URL(url);
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  return {
    // an IPv6 literal without its brackets (URL keeps them: `[fd00::5]` is no host name to look up)
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: Number.isFinite(db) ? db : 0,
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** Where every BullMQ key lives: `<REDIS_KEY_PREFIX>:bull` (queues, the board, depth metrics). */
export function bullPrefix(keyPrefix: string): string {
  return `${keyPrefix}:bull`;
}
