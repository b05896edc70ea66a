import Redis from 'ioredis';
import { loadConfig } from '../../src/config/config';
import { SoldOutMarks } from '../../src/inventory/sold-out';
import { PrivateRedis } from '../support/private-redis';
import { waitFor } from '../support/wait-for';

const PRODUCT = '0b7f7e3c-6a47-4d4c-9e4e-2f0a4b1c9d01';

/**
 * A Redis at its `maxmemory` under `noeviction` refuses every command that may grow its data — the
 * first of a script's too. A clear of sold-out marks began by replacing the generation (a SET): it
 * was refused whole, and every API process went on refusing buyers of a product whose stock had
 * come back until the mark expired (5 s). Its DEL now goes first — it frees memory — and Redis lets
 * a script that has written go on.
 */
describe('sold-out marks when Redis is full', () => {
  let server: PrivateRedis;
  let redis: Redis;
  let admin: Redis;
  let marks: SoldOutMarks;
  beforeAll(async () => {
    server = await PrivateRedis.start();
    redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
    admin = new Redis(server.url);
    marks = new SoldOutMarks(
      redis,
      loadConfig({ NODE_ENV: 'development', REDIS_KEY_PREFIX: 'full', REDIS_URL: server.url }),
    );
  });
  afterAll(async () => {
    marks?.onApplicationShutdown();
    redis?.disconnect();
    admin?.disconnect();
    await server?.down();
  });

  it('a clear still takes the marks away (and moves the generation on)', async () => {
    const mark = `full:stock:sold-out:${PRODUCT}`;
    await admin.set('full:stock:generation', 'g1');
    marks.markSoldOut([PRODUCT], 'g1');
    await waitFor('the mark', () => admin.pttl(mark), { until: (ttl) => ttl > 0 });
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    await admin.config('SET', 'maxmemory', '1'); // every write that may grow the data is refused
    try {
      await expect(admin.set('full:probe', 'x')).rejects.toThrow(/OOM/);
      marks.cleared([PRODUCT]);
      // the clear's one round trip (or its retry a second later, on a loaded machine) — well
      // before the mark's 5 s would have taken it away
      const cleared = performance.now();
      await waitFor('the mark to be gone', () => admin.exists(mark), {
        until: (n) => n === 0,
        timeoutMs: 3_500,
      });
      expect(performance.now() - cleared).toBeLessThan(3_500);
      expect(await admin.get('full:stock:generation')).not.toBe('g1');
    } finally {
      await admin.config('SET', 'maxmemory', '0');
    }
  });
});
