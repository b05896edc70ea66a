import type { Pool } from 'pg';
import { DataSource } from 'typeorm';
import { registerCustomer } from '../support/auth';
import { AppBehindSilentProxy, SilentProxy, bootBehindSilentProxy } from '../support/silent-proxy';
import type { TestApp } from '../support/test-app';

// (the requests after the give-up are told from ones that waited out a silence by time: at 2 s, a
// fresh connection's answer took 1,150 ms once in a full run on a slow day, near the bound)
const SILENCE_MS = 4_000;

/**
 * A cut that sends no reset — a network path dropping packets for a moment, a failover behind a
 * load balancer — silences the pool's idle connections with the one a request is using. That
 * request's statement is given up after DATABASE_QUERY_TIMEOUT_MS (503); the next request then
 * took one of the dead idle connections and stalled as long, and the next one the next (the blink
 * review: 503, 503, 503, 201, each after a full timeout at DATABASE_QUERY_TIMEOUT_MS=3000 —
 * minutes at 60 s with a pool of 20). A give-up now drops every connection idle in the pool,
 * and the requests after it open fresh ones through the path that answers.
 */
describe("the pool's idle connections after a silent cut", () => {
  let app: AppBehindSilentProxy;
  let t: TestApp;
  let proxy: SilentProxy;

  beforeAll(async () => {
    app = await bootBehindSilentProxy({
      DATABASE_QUERY_TIMEOUT_MS: String(SILENCE_MS),
      DB_BREAKER_FAILURES: '100', // (the requests' answers, not the breaker's)
    });
    ({ t, proxy } = app);
  });
  afterAll(async () => {
    await app?.close();
  });

  it('one request waits out the silence limit (503); the ones after it answer at once on fresh connections', async () => {
    const { accessToken: token } = await registerCustomer(t.http);
    // a warm pool, every connection idle when the cut falls
    await app.warmPool();
    expect((await t.http.get('/v1/me', { token })).status).toBe(200);
    const pool: Pool = (t.app.get(DataSource).driver as unknown as { master: Pool }).master;
    const warmIdle = pool.idleCount;
    expect(warmIdle).toBeGreaterThanOrEqual(8);

    // a blink: every connection open goes silent for good, new ones answer after 200 ms
    proxy.silence(200);
    const timed = async () => {
      const started = performance.now();
      const res = await t.http.get('/v1/me', { token });
      return { status: res.status, ms: Math.round(performance.now() - started) };
    };
    const first = await timed();
    expect(first.status).toBe(503);
    expect(first.ms).toBeGreaterThanOrEqual(SILENCE_MS - 50);

    // as many requests as there were idle connections, one after another: none waits out a
    // silence of its own on a dead one (each was a 503 after SILENCE_MS)
    const after: { status: number; ms: number }[] = [];
    for (let i = 0; i < warmIdle; i++) after.push(await timed());
    expect(after.map((r) => r.status)).toEqual(Array(warmIdle).fill(200));
    // (a request that waited out a silence takes SILENCE_MS at least)
    for (const r of after) expect(r.ms).toBeLessThan(SILENCE_MS - 100);
  }, 60_000);
});
