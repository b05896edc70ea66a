import type { RedisOptions } from 'ioredis';

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
