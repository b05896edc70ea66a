import Redis from 'ioredis';
import { counterKey } from '../../src/common/throttling/rate-limit.policies';
import { HttpResponse, expectProblem } from '../support/http';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * Swagger UI (`/docs`, its files under `/docs/`) and the document (`/docs-json`) are mounted on
 * Fastify, outside the Nest guards, and CORS preflights are answered by @fastify/cors before any
 * route: none was counted — one client pulled the 290 KB document 550–590 times a second (160 MB/s
 * out, ~0.9 core), and the UI's bundle is 1.5 MB a request (cost review). The docs now count
 * against the client's per-IP `default` budget like every route, answered 429 problem+json past
 * it with Retry-After and the RateLimit headers. Preflights are never counted nor refused: a
 * refused preflight has no CORS headers, a network error to the browser, whose app could never
 * read the 429 — the request that follows is counted instead. The health probes stay exempt: load
 * balancers probe them every few seconds from a handful of addresses.
 */
describe('rate limits of the routes outside the Nest guards (docs, CORS preflights)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp({
      env: {
        RATE_LIMIT_ENABLED: 'true',
        TRUST_PROXY: '127.0.0.1',
        DOCS_ENABLED: 'true',
        CORS_ORIGINS: 'https://shop.example',
      },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  const from = (ip: string, headers: Record<string, string> = {}) => ({
    headers: { 'x-forwarded-for': ip, ...headers },
  });
  const preflight = (ip: string) =>
    t.http.request(
      'OPTIONS',
      '/v1/orders',
      undefined,
      from(ip, {
        origin: 'https://shop.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type, idempotency-key',
      }),
    );

  /** The client's `default` budget for this minute spent but for `left` requests. */
  async function spend(ip: string, left: number): Promise<void> {
    const redis = new Redis(t.config.redis.url);
    try {
      await redis.set(
        `${t.config.redis.keyPrefix}:rl:${counterKey('default', `ip:${ip}`)}`,
        String(300 - left),
        'PX',
        60_000,
      );
    } finally {
      redis.disconnect();
    }
  }

  const expectRefused = (res: HttpResponse) => {
    expectProblem(res, 429, 'RATE_LIMITED');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(res.headers.get('ratelimit-policy')).toBe('"default";q=300;w=60');
    expect(res.headers.get('ratelimit')).toMatch(/^"default";r=0;t=\d+$/);
  };

  it('counts /docs-json, the UI and its files against the per-IP budget: 429 past it', async () => {
    const ip = '10.31.0.1';
    const first = await t.http.get('/docs-json', from(ip));
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-policy')).toBe('"default";q=300;w=60');
    expect(first.headers.get('ratelimit')).toMatch(/^"default";r=299;t=\d+$/);
    await spend(ip, 3);
    for (const path of ['/docs', '/docs/swagger-ui-bundle.js', '/docs-json'])
      expect({ path, status: (await t.http.get(path, from(ip))).status }).toEqual({
        path,
        status: 200,
      });
    for (const path of ['/docs-json', '/docs', '/docs/swagger-ui-bundle.js', '/docs/nothing.js'])
      expectRefused(await t.http.get(path, from(ip)));
    // another client is served
    expect((await t.http.get('/docs-json', from('10.31.0.2'))).status).toBe(200);
  });

  it('never counts nor refuses a CORS preflight: past the budget it answers 204 with the CORS headers, and the request that follows is refused readably', async () => {
    const ip = '10.31.1.1';
    const first = await preflight(ip);
    expect(first.status).toBe(204);
    expect(first.headers.get('access-control-allow-origin')).toBe('https://shop.example');
    expect(first.headers.get('ratelimit')).toBeNull();
    await spend(ip, 0);
    // a refused preflight would carry no Access-Control-Allow-Origin: the browser would see a
    // network error, and the web app could never read Retry-After or RateLimit
    for (const _ of [1, 2, 3]) {
      const res = await preflight(ip);
      expect(res.status).toBe(204);
      expect(res.headers.get('access-control-allow-origin')).toBe('https://shop.example');
      expect(res.headers.get('access-control-allow-methods')).toContain('POST');
      expect(res.headers.get('ratelimit')).toBeNull();
    }
    // nor counted: the budget is where it was left
    const redis = new Redis(t.config.redis.url);
    try {
      expect(
        await redis.get(`${t.config.redis.keyPrefix}:rl:${counterKey('default', `ip:${ip}`)}`),
      ).toBe('300');
    } finally {
      redis.disconnect();
    }
    // the request the preflight was for is counted, and its 429 readable by the page
    const real = await t.http.post(
      '/v1/orders',
      {},
      from(ip, { origin: 'https://shop.example', 'idempotency-key': 'preflighted-1' }),
    );
    expectRefused(real);
    expect(real.headers.get('access-control-allow-origin')).toBe('https://shop.example');
    expect(real.headers.get('access-control-expose-headers')?.toLowerCase()).toEqual(
      expect.stringMatching(/retry-after.*ratelimit|ratelimit.*retry-after/),
    );
    // an OPTIONS that is no preflight is refused as before, for what it is (400), not counted
    expectProblem(
      await t.http.request('OPTIONS', '/v1/orders', undefined, from(ip)),
      400,
      'BAD_REQUEST',
    );
  });

  it('leaves the health probes exempt: a client past its budget is still answered, with no RateLimit headers', async () => {
    const ip = '10.31.2.1';
    await spend(ip, 0);
    expectRefused(await t.http.get('/docs-json', from(ip)));
    for (const path of ['/health/live', '/health/ready']) {
      const res = await t.http.get(path, from(ip));
      expect({ path, status: res.status }).toEqual({ path, status: 200 });
      expect(res.headers.get('ratelimit')).toBeNull();
    }
  });
});
