import { Inject, Injectable, Logger } from '@nestjs/common';
import type Redis from 'ioredis';
import { APP_CONFIG, AppConfig } from '../config/config';
import { REDIS } from '../redis/redis.module';

/** Reads the catalog version and the entry for it in ONE round trip. */
const READ = `
local version = redis.call('GET', KEYS[1]) or '0'
return { version, redis.call('GET', KEYS[1] .. ':' .. version .. ':' .. ARGV[1]) }
`;

type VersionedRead = (versionKey: string, key: string) => Promise<[string, string | null]>;

/** Cached pages live briefly: availability (on_hand − reserved) moves with every order. */
export const CATALOG_TTL_MS = 5_000;

/**
 * Redis cache-aside for catalog reads, as JSON strings straight from Redis (measured cheaper
 * than cache-manager's extra (de)serialization layers for this one use).
 *
 * - Invalidation: every key embeds a catalog version; a write that changes what readers see
 *   bumps the version after its commit, so no reader gets the old data once the write returns.
 * - Stampedes: one rebuild per key at a time in this process (single flight), and TTL jitter so
 *   keys written together do not expire together.
 * - Availability may be up to CATALOG_TTL_MS stale in a cached page; orders always check stock
 *   under row locks, so staleness can never oversell.
 * - Redis down: reads go straight to PostgreSQL (the client fails fast), never a 500; the cache
 *   works again as soon as Redis answers.
 */
@Injectable()
export class CatalogCache {
  private readonly logger = new Logger(CatalogCache.name);
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly versionKey: string;
  private readonly enabled: boolean;

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.versionKey = `${config.redis.keyPrefix}:catalog:version`;
    this.enabled = config.catalogCacheEnabled;
    if (!('catalogRead' in this.redis)) {
      this.redis.defineCommand('catalogRead', { numberOfKeys: 1, lua: READ });
    }
  }

  /** The cached JSON for `key` if present (one round trip), else null. */
  async peek(key: string): Promise<string | null> {
    if (!this.enabled) return null;
    return (await this.read(key))?.[1] ?? null;
  }

  /** The cached JSON for `key`, or `build()`'s result (serialized and stored). */
  async getOrBuild(key: string, build: () => Promise<unknown>): Promise<string> {
    if (!this.enabled) return JSON.stringify(await build());
    const found = await this.read(key);
    const version = found?.[0];
    if (found?.[1]) return found[1];
    const fullKey = `${this.versionKey}:${version ?? '0'}:${key}`;
    const running = this.inflight.get(fullKey);
    if (running) return running;
    const rebuild = (async () => {
      const json = JSON.stringify(await build());
      if (version !== undefined) {
        const ttl = CATALOG_TTL_MS + Math.floor(Math.random() * CATALOG_TTL_MS * 0.2);
        await this.safe(() => this.redis.set(fullKey, json, 'PX', ttl));
      }
      return json;
    })().finally(() => this.inflight.delete(fullKey));
    this.inflight.set(fullKey, rebuild);
    return rebuild;
  }

  private read(key: string): Promise<[string, string | null] | undefined> {
    const read = (this.redis as unknown as { catalogRead: VersionedRead }).catalogRead;
    return this.safe(() => read.call(this.redis, this.versionKey, key));
  }

  /** Call after a committed write that changes what catalog readers see. */
  async invalidate(): Promise<void> {
    await this.safe(() => this.redis.incr(this.versionKey));
  }

  private async safe<T>(op: () => Promise<T>): Promise<T | undefined> {
    try {
      return await op();
    } catch (err) {
      this.logger.debug(`cache bypassed: ${String(err)}`);
      return undefined;
    }
  }
}
