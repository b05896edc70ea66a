import { randomBytes } from 'node:crypto';
import { MetricsService } from '../../src/metrics/metrics.service';
import { RedisPathProxy, startRedisPathProxy } from '../support/redis-path-proxy';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

/**
 * A stop (a deploy, a scale-in) while Redis is silent: the catalog store's client closed by waiting
 * for its pending replies (node-redis's close), so the API's shutdown waited for Redis — until it
 * answered, or the forced exit (SHUTDOWN_TIMEOUT_MS, 10 s: exit code 1, its last requests cut).
 */
describe('the API stopping while Redis is silent', () => {
  let proxy: RedisPathProxy;
  let t: TestApp;
  beforeAll(async () => {
    proxy = await startRedisPathProxy(process.env.REDIS_URL as string);
    t = await bootTestApp({
      // (a prefix of its own: the harness's cleanup of the file's keys would ask the silent Redis)
      env: { REDIS_URL: proxy.url, REDIS_KEY_PREFIX: `silent${randomBytes(4).toString('hex')}` },
    });
  });
  afterAll(async () => {
    await proxy?.close();
    await t?.db.drop();
  });

  it('closes within seconds, not when Redis answers again', async () => {
    const failing = async () =>
      (await t.app.get(MetricsService).registry.getSingleMetric('catalog_store_failing')!.get())
        .values[0]?.value;
    proxy.stall(60_000);
    // the store has commands out that will not be answered (its heartbeat's, its next
    // connection's handshake)
    await waitFor('the catalog store to be failing', failing, {
      until: (v) => v === 1,
      timeoutMs: 15_000,
    });
    const started = performance.now();
    await t.app.close();
    // (the shared clients' own bounded quit: ~3 s)
    expect(performance.now() - started).toBeLessThan(8_000);
  }, 45_000);
});
