import { TestApp, bootTestApp } from '../support/test-app';

/**
 * There is no request limit per IPv6 /48 (ARCHITECTURE.md, the rate limits, says why): one
 * sized for a /56 household (256 /64s) was spent by a single household or an attacker with a /56,
 * each of its /64s within its own budget, and then every neighbour on the /48 was refused every
 * route. An IPv6 client is counted per /64 only — by the guards, and in memory for cached reads
 * and unrouted requests; the costly work (catalog builds, argon2, registrations, failed sign-ins)
 * is bounded per /48 on its own (test/e2e/catalog-build-budget.test.ts for the builds).
 */
describe('no per-network request limit (IPv6 /48)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp({ env: { RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: '127.0.0.1' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  const from = (ip: string) => ({ headers: { 'x-forwarded-for': ip } });

  it("counts an IPv6 client's requests per /64 only: a route, a cached read and an unrouted request name no /48 budget", async () => {
    const me = await t.http.get('/v1/me', from('2001:db8:a1:1::1'));
    expect(me.status).toBe(401);
    expect(me.headers.get('ratelimit-policy')).toBe('"default";q=300;w=60');
    expect(me.headers.get('ratelimit')).toMatch(/^"default";r=299;t=\d+$/);

    // cached: stored at its second miss; a miss names both counters that counted it (this
    // process's cached reads, then the guard's), either of which may refuse the next request
    for (const _ of [1, 2]) {
      const miss = await t.http.get('/v1/categories', from('192.0.2.62'));
      expect(miss.status).toBe(200);
      expect(miss.headers.get('ratelimit-policy')).toBe(
        '"cached-reads";q=300;w=60, "default";q=300;w=60',
      );
      expect(miss.headers.get('ratelimit')).toMatch(
        /^"cached-reads";r=29[89];t=\d+, "default";r=29[89];t=\d+$/,
      );
    }
    const hit = await t.http.get('/v1/categories', from('2001:db8:b1:1::1'));
    expect(hit.status).toBe(200);
    expect(hit.headers.get('ratelimit-policy')).toBe('"cached-reads";q=300;w=60');
    expect(hit.headers.get('ratelimit')).toMatch(/^"cached-reads";r=299;t=\d+$/);

    // a /64 past its own budget of requests no route matches is refused for its /64 alone
    const nowhere = (ip: string) => t.http.get('/no-such-route', from(ip));
    for (let i = 0; i < 300; i++) expect((await nowhere('2001:db8:c1:1::1')).status).toBe(404);
    const refused = await nowhere('2001:db8:c1:1::1');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('ratelimit-policy')).toBe('"unrouted";q=300;w=60');
    // its neighbour on the /48 is not
    expect((await nowhere('2001:db8:c1:2::1')).status).toBe(404);
  });
});
