import type KeyvRedis from '@keyv/redis';
import { Logger } from '@nestjs/common';
import type { Cache } from 'cache-manager';
import type Redis from 'ioredis';
import { Clock } from '../common/time/clock';
import { AppConfig, loadConfig } from '../config/config';
import type { TransactionHost } from '../database/transaction-host';
import { payerOf } from './build-budget';
import { CatalogCache, createCatalogStore } from './catalog-cache';
import { MetricsService } from '../metrics/metrics.service';
import { mockOf } from '../../test/support/mocks';

/** Just enough of ioredis for the cache's version counter. */
function fakeRedis(): Redis {
  return mockOf<Redis>({ get: async () => '1', eval: async () => 2 }, 'redis');
}

/** The shared tier, always a miss. */
function fakeShared(): Cache {
  return mockOf<Cache>(
    { get: async () => undefined, set: async (_key: string, value: unknown) => value },
    'shared',
  );
}

/** Outside any transaction: work after a commit runs at once. */
const noTransaction = mockOf<TransactionHost>(
  { whenCommitted: (work: () => Promise<void>) => work() },
  'tx',
);

/** A CatalogCache over fakes: these, or a miss-only store, a version of 1, development's config. */
function cacheOf(
  parts: {
    redis?: Redis;
    shared?: Cache;
    config?: AppConfig;
    clock?: Clock;
    metrics?: MetricsService;
  } = {},
): CatalogCache {
  return new CatalogCache(
    parts.redis ?? fakeRedis(),
    parts.shared ?? fakeShared(),
    parts.config ?? loadConfig({ NODE_ENV: 'development' }),
    parts.clock ?? new Clock(),
    noTransaction,
    parts.metrics ?? new MetricsService(),
  );
}

describe('CatalogCache memory copies', () => {
  const config: AppConfig = loadConfig({ NODE_ENV: 'development' });
  const memoryOf = (cache: CatalogCache) => cache['memory'];

  it('holds at most 16 Mi characters of pages, however many distinct URLs are asked for', async () => {
    const cache = cacheOf({ config });
    const page = 'x'.repeat(900_000); // a listing page of 100 long items, give or take
    for (let i = 0; i < 60; i++) {
      // each asked for twice: a first miss is kept nowhere
      await cache.getOrBuild(`/v1/products?limit=100&q=${i}`, async () => page);
      await cache.getOrBuild(`/v1/products?limit=100&q=${i}`, async () => page);
    }
    const memory = memoryOf(cache);
    const chars = [...memory.entries()].reduce((n, [k, v]) => n + k.length + v.json.length, 0);
    expect(chars).toBeLessThanOrEqual(16 * 1024 * 1024);
    // the newest are kept, the oldest dropped
    expect(memory.has('/v1/products?limit=100&q=59')).toBe(true);
    expect(memory.has('/v1/products?limit=100&q=0')).toBe(false);
  });

  it('keeps small pages up to the entry bound, and never copies one answer over 1 Mi characters', async () => {
    const cache = cacheOf({ config });
    for (const _ of [1, 2])
      await cache.getOrBuild('/v1/products/huge', async () => 'y'.repeat(1_100_000));
    expect(memoryOf(cache).has('/v1/products/huge')).toBe(false);
    for (let i = 0; i < 2_100; i++) {
      for (const _ of [1, 2]) await cache.getOrBuild(`/v1/products?q=${i}`, async () => ({ i }));
    }
    expect(memoryOf(cache).size).toBe(2_000);
  });
});

describe('catalog_reads_total', () => {
  it('counts each read where it was answered: a build, the shared store, or the memory copy', async () => {
    const entries = new Map<string, unknown>();
    const shared = mockOf<Cache>(
      {
        get: async (k: string) => entries.get(k),
        set: async (k: string, v: unknown) => (entries.set(k, v), v),
      },
      'shared',
    );
    const metrics = new MetricsService();
    const sharing = () => cacheOf({ shared, metrics });
    const cache = sharing();
    const url = '/v1/products/x';
    for (let i = 0; i < 3; i++) await cache.getOrBuild(url, async () => ({ x: 1 }));
    // (another process of the same registry's shape: its first read finds the shared entry)
    await sharing().getOrBuild(url, async () => ({ x: 2 }));
    const values = (await metrics.registry.getSingleMetric('catalog_reads_total')!.get()).values;
    const count = (answered: string) =>
      values.find((v) => v.labels.answered === answered)?.value ?? 0;
    // a first miss and a second (stored from then on), then the memory copy, then the store
    expect([count('build'), count('memory'), count('store')]).toEqual([2, 1, 1]);
  });
});

describe('CatalogCache: one-off URLs', () => {
  const config: AppConfig = loadConfig({ NODE_ENV: 'development' });

  it('a first miss is answered and stored nowhere; the page is kept from its second miss on', async () => {
    const stored: string[] = [];
    const shared = mockOf<Cache>(
      { get: async () => undefined, set: async (k: string, v: unknown) => (stored.push(k), v) },
      'shared',
    );
    const cache = cacheOf({ shared, config });
    // a flood of distinct cursors (each a key of its own): nothing written to Redis, nothing kept
    for (let i = 0; i < 500; i++) {
      expect(await cache.getOrBuild(`/v1/products?cursor=c${i}`, async () => ({ i }))).toBe(
        JSON.stringify({ i }),
      );
    }
    expect(stored).toEqual([]);
    expect(cache['memory'].size).toBe(0);
    // a page asked for again is kept, in Redis and in memory
    let builds = 0;
    const home = async () => ((builds += 1), { home: true });
    await cache.getOrBuild('/v1/products', home);
    await cache.getOrBuild('/v1/products', home);
    expect(await cache.getOrBuild('/v1/products', home)).toBe('{"home":true}');
    expect(builds).toBe(2);
    expect(stored).toHaveLength(1);
    expect(stored[0]).toContain('/v1/products');
  });
});

describe('CatalogCache: a shared entry written by a host whose clock runs ahead', () => {
  it("is copied into memory for at most a second, not until the writer's clock says", async () => {
    const config: AppConfig = loadConfig({ NODE_ENV: 'development' });
    const now = Date.parse('2026-12-01T10:00:00Z');
    const clock = mockOf<Clock>({ now: () => new Date(now) }, 'clock');
    // written 10 minutes "from now" by a host 10 minutes fast
    const shared = mockOf<Cache>(
      {
        get: async () => ({ json: '"stale"', expiresAt: now + 10 * 60_000 }),
        set: async (_k: string, v: unknown) => v,
      },
      'shared',
    );
    const cache = cacheOf({ shared, config, clock });
    expect(await cache.getOrBuild('/v1/products/x', async () => 'fresh')).toBe('"stale"');
    const copy = cache['memory'].get('/v1/products/x');
    // (the copy's deadline is on this process's monotonic clock)
    // (a second past the Redis entry at most, however far ahead the writer's clock runs: with it
    // 5 s ahead the copy outlived the entry by 5 s — availability 12 s stale where 6 s is the bound)
    expect(copy!.expiresAt - performance.now()).toBeLessThanOrEqual(1_000);
  });
});

describe('CatalogCache: a shared entry of another form', () => {
  it('is a miss, rebuilt and stored over — never a thrown read (each one a 500)', async () => {
    const config: AppConfig = loadConfig({ NODE_ENV: 'development' });
    // what another build, an operator or a torn write may have left at the page's key
    const others: unknown[] = [
      { value: { body: '{"items":[]}', expiresAt: Date.now() + 5_000 } },
      { json: { items: [] }, expiresAt: Date.now() + 5_000 },
      { json: '"no deadline"' },
      { json: '"a deadline that is no number"', expiresAt: 'soon' },
      '{"items":[]}',
      42,
      null,
      [],
    ];
    for (const other of others) {
      const stored: unknown[] = [];
      const shared = mockOf<Cache>(
        {
          get: async () => other,
          set: async (_k: string, v: unknown) => (stored.push(v), v),
        },
        'shared',
      );
      const cache = cacheOf({ shared, config });
      expect([other, await cache.peek('/v1/categories')]).toEqual([other, null]);
      for (const _ of [1, 2])
        expect([
          other,
          await cache.getOrBuild('/v1/categories', async () => ({ built: true })),
        ]).toEqual([other, '{"built":true}']);
      // its second miss stores the page over it
      expect(stored).toEqual([{ json: '{"built":true}', expiresAt: expect.any(Number) }]);
    }
  });
});

describe('CatalogCache: a page another process built', () => {
  it('is read from Redis once for all the requests that find its memory copy gone at once', async () => {
    const config: AppConfig = loadConfig({ NODE_ENV: 'development' });
    let reads = 0;
    let answer: (entry: unknown) => void = () => undefined;
    const shared = mockOf<Cache>(
      {
        get: () => ((reads += 1), new Promise((resolve) => (answer = resolve))),
        set: async (_k: string, v: unknown) => v,
      },
      'shared',
    );
    const cache = cacheOf({ shared, config });
    let builds = 0;
    const build = async () => ((builds += 1), 'built here');
    const pending = Array.from({ length: 50 }, () => cache.getOrBuild('/v1/products/hot', build));
    await new Promise((resolve) => setImmediate(resolve));
    answer({ json: '"built elsewhere"', expiresAt: Date.now() + 5_000 });
    expect(await Promise.all(pending)).toEqual(Array(50).fill('"built elsewhere"'));
    expect([reads, builds]).toEqual([1, 0]);
    // and the next lapse asks again (the read under way is not kept)
    cache['memory'].clear();
    const next = cache.getOrBuild('/v1/products/hot', build);
    await new Promise((resolve) => setImmediate(resolve));
    answer({ json: '"rebuilt elsewhere"', expiresAt: Date.now() + 5_000 });
    expect(await next).toBe('"rebuilt elsewhere"');
    expect(reads).toBe(2);
  });
});

describe('CatalogCache version bump', () => {
  const config: AppConfig = loadConfig({ NODE_ENV: 'development' });

  it('outlasts a Redis reconnect, then keeps trying in the background until the bump lands', async () => {
    let failures = 8; // a reconnect longer than the write's own tries
    let bumped = 0;
    const redis = mockOf<Redis>(
      {
        get: async () => '1',
        eval: async () => {
          if (failures-- > 0)
            throw new Error("Stream isn't writeable and enableOfflineQueue options is false");
          return ++bumped;
        },
      },
      'redis',
    );
    const cache = cacheOf({ redis, config });
    const started = Date.now();
    await cache.invalidate(); // answers after ~1 s of tries, the bump still owed
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    expect(bumped).toBe(0);
    const deadline = Date.now() + 5_000;
    while (bumped === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(bumped).toBe(1);
  });

  it('a Redis that refuses writes (out of memory) but still serves reads: the version key is deleted, so the old pages stop at once', async () => {
    const refusal = Object.assign(
      new Error("OOM command not allowed when used memory > 'maxmemory'."),
      { name: 'ReplyError' },
    );
    const bump = jest.fn(async () => {
      throw refusal;
    });
    const del = jest.fn(async () => 1);
    const cache = cacheOf({
      redis: mockOf<Redis>({ get: async () => '7', eval: bump, del }, 'redis'),
      config,
    });
    const started = Date.now();
    await cache.invalidate();
    expect(Date.now() - started).toBeLessThan(500); // no retries: it took
    expect([bump.mock.calls.length, del.mock.calls.length]).toEqual([1, 1]);
    expect(cache['bumpOwed']).toBeUndefined();
  });

  it("a short blink costs no background work: the write's own tries land it", async () => {
    let failures = 3;
    const bump = jest.fn(async () => {
      if (failures-- > 0) throw new Error('ECONNRESET');
      return 2;
    });
    const cache = cacheOf({
      redis: mockOf<Redis>({ get: async () => '1', eval: bump }, 'redis'),
      config,
    });
    await cache.invalidate();
    expect(bump).toHaveBeenCalledTimes(4);
    expect(cache['bumpOwed']).toBeUndefined();
  });
});

describe('CatalogCache with the version unknown (Redis failed a moment ago)', () => {
  it('does not join a build already running: it may have begun before a write another process has since answered', async () => {
    const config: AppConfig = loadConfig({ NODE_ENV: 'development' });
    const redis = mockOf<Redis>(
      {
        get: async () => {
          throw new Error('ETIMEDOUT');
        },
        eval: async () => 2,
      },
      'redis',
    );
    const cache = cacheOf({ redis, config });
    let release!: () => void;
    const before = cache.getOrBuild(
      '/v1/products/p',
      () =>
        new Promise((r) => {
          release = () => r({ price: 100 });
        }),
    );
    await new Promise((r) => setImmediate(r)); // the first build is running
    // requests of one turn share a build begun after all of them arrived
    const builds = jest.fn(async () => ({ price: 110 }));
    const together = await Promise.all([
      cache.getOrBuild('/v1/products/q', builds),
      cache.getOrBuild('/v1/products/q', builds),
    ]);
    expect(together.map((j) => JSON.parse(j))).toEqual([{ price: 110 }, { price: 110 }]);
    expect(builds).toHaveBeenCalledTimes(1);
    // the write commits and answers elsewhere; a read that arrives now builds from the database
    const after = await cache.getOrBuild('/v1/products/p', async () => ({ price: 120 }));
    expect(JSON.parse(after)).toEqual({ price: 120 });
    release();
    expect(JSON.parse(await before)).toEqual({ price: 100 });
  });
});

describe('CatalogCache version counter', () => {
  it('is started from the clock when missing, so a counter deleted (or lost) never comes back to a number whose pages may still be stored', async () => {
    const config: AppConfig = loadConfig({ NODE_ENV: 'development' });
    const store = new Map<string, string>();
    let now = 1_000;
    const clock = mockOf<Clock>({ now: () => new Date(now) }, 'clock');
    const redis = mockOf<Redis>(
      {
        get: async (key: string) => store.get(key) ?? null,
        set: async (key: string, value: string, nx: string) => {
          if (nx === 'NX' && store.has(key)) return null;
          store.set(key, value);
          return 'OK';
        },
        // the bump's script: a counter started from the clock (ARGV[1]) when there is none
        eval: async (_script: string, _keys: number, key: string, start: string) => {
          if (!store.has(key)) store.set(key, start);
          const next = Number(store.get(key)) + 1;
          store.set(key, String(next));
          return next;
        },
        del: async (key: string) => Number(store.delete(key)),
      },
      'redis',
    );
    const cache = cacheOf({ redis, config, clock });
    const version = () => cache['versions'].current();
    expect(await version()).toBe('1000'); // first read: started from the clock, not 0
    await cache.invalidate();
    expect(await version()).toBe('1001');
    store.clear(); // deleted by a refused bump, or Redis lost its data
    now = 9_000;
    expect(await version()).toBe('9000'); // not 0, 1 or 1001 again
    // a write that finds no counter before any reader does starts it from the clock too
    store.clear();
    now = 20_000;
    await cache.invalidate();
    expect(await version()).toBe('20001'); // not 1
  });
});

describe('CatalogCache: pages shared by processes configured alike only', () => {
  it('a process selling in another currency (or serving images from another base URL) never reads pages another stored', async () => {
    /** One shared tier for every process: a Map behind cache-manager's get and set. */
    const entries = new Map<string, unknown>();
    const shared = mockOf<Cache>(
      {
        get: async (k: string) => entries.get(k),
        set: async (k: string, v: unknown) => (entries.set(k, v), v),
      },
      'shared',
    );
    const processUnder = (env: Record<string, string>) =>
      cacheOf({ shared, config: loadConfig({ NODE_ENV: 'development', ...env }) });
    const inr = processUnder({ SHOP_CURRENCY: 'INR' });
    const url = '/v1/products?sort=price_asc&limit=10';
    for (const _ of [1, 2]) await inr.getOrBuild(url, async () => ({ currency: 'INR' }));
    expect(entries.size).toBe(1);
    for (const [other, env] of [
      ['USD', { SHOP_CURRENCY: 'USD' }],
      ['images', { SHOP_CURRENCY: 'INR', STORAGE_BASE_URL: 'https://images.shop.example.in' }],
    ] as const) {
      const page = await processUnder(env).getOrBuild(url, async () => ({ built: other }));
      expect([other, JSON.parse(page)]).toEqual([other, { built: other }]);
    }
    // configured alike: the page is shared
    const alike = await processUnder({ SHOP_CURRENCY: 'INR' }).getOrBuild(url, async () => ({
      built: 'again',
    }));
    expect(JSON.parse(alike)).toEqual({ currency: 'INR' });
  });

  it("through a JWT key rotation's roll, processes that seal or open cursors under other keys never read each other's pages (a next cursor sealed under the writer's key; a cursor the reader refuses); processes configured alike share them", async () => {
    const entries = new Map<string, unknown>();
    const shared = mockOf<Cache>(
      {
        get: async (k: string) => entries.get(k),
        set: async (k: string, v: unknown) => (entries.set(k, v), v),
      },
      'shared',
    );
    const OLD = 'the-old-secret-0123456789-abcdefghij';
    const NEW = 'the-new-secret-0123456789-abcdefghij';
    const processUnder = (env: Record<string, string>) =>
      cacheOf({ shared, config: loadConfig({ NODE_ENV: 'development', ...env }) });
    const url = '/v1/products?sort=price_asc&limit=10';
    /** The page a process under `env` serves (asked twice: a page is stored once read again). */
    const pageOf = async (env: Record<string, string>, built: string) => {
      const reader = processUnder(env);
      let page = '';
      for (const _ of [1, 2]) page = await reader.getOrBuild(url, async () => ({ built }));
      return (JSON.parse(page) as { built: string }).built;
    };
    const before = { JWT_SECRET: OLD };
    const step1 = { JWT_SECRET: OLD, JWT_VERIFY_ONLY_SECRET: NEW };
    const step2 = { JWT_SECRET: NEW, JWT_VERIFY_ONLY_SECRET: OLD };
    const after = { JWT_SECRET: NEW };
    expect([
      await pageOf(before, 'before'),
      await pageOf(step1, 'step 1'),
      await pageOf(step2, 'step 2'),
      await pageOf(after, 'after'),
    ]).toEqual(['before', 'step 1', 'step 2', 'after']);
    // configured alike: shared
    for (const [env, page] of [
      [before, 'before'],
      [step1, 'step 1'],
      [step2, 'step 2'],
      [after, 'after'],
    ] as const) {
      expect(await pageOf(env, 'again')).toBe(page);
    }
    expect(entries.size).toBe(4);
    // and the keys themselves are in no cache key
    expect([...entries.keys()].join()).not.toMatch(/the-(old|new)-secret/);
  });
});

describe('createCatalogStore: Redis refusing its commands', () => {
  it('a READONLY reply moves it to a new client (once a second at most); refusals are logged once per 10 s', () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const store = createCatalogStore(loadConfig({ NODE_ENV: 'development' }), new MetricsService());
    const adapter = store.store as KeyvRedis<unknown>;
    try {
      const first = adapter.client;
      // (pipelined writes refused together: the first moves it, the rest of them nothing)
      for (let i = 0; i < 20; i++) {
        adapter.emit('error', new Error("READONLY You can't write against a read only replica."));
      }
      const second = adapter.client;
      expect(second).not.toBe(first);
      expect(first.isOpen).toBe(false); // destroyed
      expect(second.isOpen).toBe(true); // connecting
      // other refusals move nothing; a connection error is no refusal
      for (let i = 0; i < 20; i++) {
        adapter.emit('error', new Error('OOM command not allowed when used memory > maxmemory.'));
      }
      adapter.emit('error', new Error('connect ECONNREFUSED 127.0.0.1:6379'));
      expect(adapter.client).toBe(second);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0][0])).toMatch(/catalog pages not stored.*READONLY/);
    } finally {
      warn.mockRestore();
      void (async () => adapter.client.destroy())().catch(() => undefined);
    }
  });
});

describe('CatalogCache: a build its own client’s cap holds back', () => {
  it("is not joined: another client's miss of the same page builds it at once (slots free), not after that client's builds", async () => {
    const config: AppConfig = loadConfig({
      NODE_ENV: 'development',
      RATE_LIMIT_ENABLED: 'true',
      // (what a joined build would have waited: the bound below is half of it, room for a stall)
      DATABASE_POOL_WAIT_MS: '5000',
    });
    const cache = cacheOf({ config });
    const x = payerOf('198.51.100.7');
    let endSlow!: () => void;
    const slow = new Promise<void>((resolve) => (endSlow = resolve));
    // X's two slow searches hold both of its slots (BUILDS_PER_CLIENT) …
    const searches = [
      cache.getOrBuild('/v1/products?q=a', () => slow.then(() => 'a'), x),
      cache.getOrBuild('/v1/products?q=b', () => slow.then(() => 'b'), x),
    ];
    await new Promise((resolve) => setImmediate(resolve));
    // … so its miss of the listing waits for one of them, holding no slot
    const xPage = cache.getOrBuild('/v1/products', async () => ({ page: 1 }), x);
    await new Promise((resolve) => setImmediate(resolve));
    // Y's miss of the same page: the gate has free slots, and Y is not made to wait for X's
    // builds (it was: it joined X's build, waited out DATABASE_POOL_WAIT_MS, and got a 503)
    const started = performance.now();
    const yPage = await cache.getOrBuild(
      '/v1/products',
      async () => ({ page: 1 }),
      payerOf('203.0.113.9'),
    );
    expect(yPage).toBe('{"page":1}');
    expect(performance.now() - started).toBeLessThan(2_500);
    endSlow();
    expect(await Promise.all([...searches, xPage])).toEqual(['"a"', '"b"', '{"page":1}']);
  });
});
