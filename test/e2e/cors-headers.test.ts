import { Logger } from '@nestjs/common';
import { CatalogCache } from '../../src/catalog/catalog-cache';
import { loadConfig } from '../../src/config/config';
import { createAdmin, registerCustomer } from '../support/auth';
import { createProduct } from '../support/catalog';
import type { HttpResponse } from '../support/http';
import { waitFor } from '../support/wait-for';
import { TestApp, bootTestApp } from '../support/test-app';

const WEB = 'https://web.shop.example';
const OTHER = 'https://evil.example';

/** The helmet headers every answer carries, whatever produced it. */
function expectSecurityHeaders(res: HttpResponse): void {
  const csp = res.headers.get('content-security-policy') ?? '';
  expect(csp).toContain("default-src 'self'");
  expect(csp).toContain("script-src 'self'");
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).not.toContain('unsafe-eval');
  expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  expect(res.headers.get('x-frame-options')).toBe('DENY');
  expect(res.headers.get('strict-transport-security')).toMatch(/max-age=\d+/);
  expect(res.headers.get('referrer-policy')).toBe('no-referrer');
}

function expectCorsAllowed(res: HttpResponse): void {
  expect(res.headers.get('access-control-allow-origin')).toBe(WEB);
  const exposed = (res.headers.get('access-control-expose-headers') ?? '').toLowerCase();
  for (const h of [
    'x-request-id',
    'idempotent-replayed',
    'retry-after',
    'ratelimit',
    'ratelimit-policy',
    'allow',
    'www-authenticate',
  ]) {
    expect(exposed.split(/\s*,\s*/)).toContain(h);
  }
  // no answer sets Location: a header named there would promise one
  expect(exposed.split(/\s*,\s*/)).not.toContain('location');
  expect(res.headers.get('access-control-allow-credentials')).toBeNull();
}

describe('CORS and security headers (CORS_ORIGINS allow-list)', () => {
  let t: TestApp;
  let admin: string;

  beforeAll(async () => {
    t = await bootTestApp({ env: { CORS_ORIGINS: `${WEB}, http://localhost:5173` } });
    admin = (await createAdmin(t)).accessToken;
  });
  afterAll(async () => {
    await t?.close();
  });

  it('allows a preflight from a listed origin, with the headers clients send', async () => {
    const res = await t.http.request('OPTIONS', '/v1/orders', undefined, {
      headers: {
        origin: WEB,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type, idempotency-key',
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(WEB);
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    const allowed = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase();
    for (const h of ['authorization', 'content-type', 'idempotency-key', 'x-request-id']) {
      expect(allowed).toContain(h);
    }
    expect(res.headers.get('vary')?.toLowerCase()).toContain('origin');
    expectSecurityHeaders(res);
  });

  it('an OPTIONS that is not a preflight is a 400 problem+json (not text/plain), with the security headers', async () => {
    const notPreflights: Record<string, string>[] = [
      {},
      { origin: WEB },
      { 'access-control-request-method': 'POST' },
    ];
    for (const headers of notPreflights) {
      const res = await t.http.request('OPTIONS', '/v1/orders', undefined, { headers });
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({ status: 400, code: 'BAD_REQUEST' });
      expect(res.headers.get('x-request-id')).toBeTruthy();
      expectSecurityHeaders(res);
    }
  });

  it("Fastify's own refusals before routing (414, malformed URL) carry the security and CORS headers too", async () => {
    for (const path of [`/v1/products/${'a'.repeat(200)}`, '/v1/products/%E0%A4%A']) {
      const res = await t.http.get(path, { headers: { origin: WEB } });
      expect([400, 414]).toContain(res.status);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expectSecurityHeaders(res);
      // a browser app reads the problem (without them, fetch fails with an opaque network error)
      expectCorsAllowed(res);
      const other = await t.http.get(path, { headers: { origin: OTHER } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
    }
  });

  it("the first hooks' refusals (a query that does not decode, a development instance reached through a proxy) carry the CORS headers too", async () => {
    const customer = await registerCustomer(t.http);
    const refusals = [
      // a bad percent-escape in the query: 400 before routing's hooks
      () => t.http.get('/v1/products?q=50%', { headers: { origin: WEB } }),
      () => t.http.get('/v1/products?q=%FF', { headers: { origin: WEB } }),
      // credentials through a proxy on a development instance on loopback: 403
      () =>
        t.http.get('/v1/me', {
          token: customer.accessToken,
          headers: { origin: WEB, 'x-forwarded-for': '203.0.113.7' },
        }),
    ];
    for (const [i, send] of refusals.entries()) {
      const res = await send();
      expect([i, res.status]).toEqual([i, i < 2 ? 400 : 403]);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.headers.get('x-request-id')).toBe(res.body.requestId);
      expectSecurityHeaders(res);
      // a browser app reads the problem (without them, fetch fails with an opaque network error)
      expectCorsAllowed(res);
      expect(res.headers.get('vary')?.toLowerCase()).toContain('origin');
    }
    // another origin gets no grant (and the answer still varies by Origin)
    const other = await t.http.get('/v1/products?q=50%', { headers: { origin: OTHER } });
    expect(other.status).toBe(400);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    expect(other.headers.get('vary')?.toLowerCase()).toContain('origin');
  });

  it('does not allow a preflight (or an answer) for an origin that is not listed', async () => {
    const pre = await t.http.request('OPTIONS', '/v1/orders', undefined, {
      headers: { origin: OTHER, 'access-control-request-method': 'POST' },
    });
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    const get = await t.http.get('/health/live', { headers: { origin: OTHER } });
    expect(get.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('puts CORS and security headers on a normal answer', async () => {
    const customer = await registerCustomer(t.http);
    const res = await t.http.get('/v1/me', {
      token: customer.accessToken,
      headers: { origin: WEB },
    });
    expect(res.status).toBe(200);
    expectCorsAllowed(res);
    expectSecurityHeaders(res);
  });

  it('puts them on a catalog answer served from the cache fast path', async () => {
    const p = await createProduct(t, admin);
    const path = `/v1/products/${p.id}`;
    // the route builds it twice: a first miss is kept nowhere, the second is cached (under load a
    // slow Redis answer makes the cache stand aside for a second, and that read is kept nowhere:
    // read until an answer comes from the early hook, which found the cached page)
    const peek = jest.spyOn(t.app.get(CatalogCache), 'peek');
    try {
      const res = await waitFor('an answer from the cache fast path', async () => {
        peek.mockClear();
        const answer = await t.http.get(path, { headers: { origin: WEB } });
        expect(answer.status).toBe(200);
        const found = peek.mock.calls.some(([key]) => key === path)
          ? await peek.mock.results[peek.mock.results.length - 1].value
          : null;
        return typeof found === 'string' ? answer : undefined;
      });
      expect(res.body.id).toBe(p.id);
      expectCorsAllowed(res);
      expectSecurityHeaders(res);
      expect(res.headers.get('x-request-id')).toBeTruthy();
    } finally {
      peek.mockRestore();
    }
  });

  it('puts them on a problem+json error', async () => {
    const res = await t.http.post(
      '/v1/admin/products',
      { sku: '' },
      { token: admin, headers: { origin: WEB } },
    );
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expectCorsAllowed(res);
    expectSecurityHeaders(res);
    const unauth = await t.http.get('/v1/me', { headers: { origin: WEB } });
    expect(unauth.status).toBe(401);
    expectCorsAllowed(unauth);
    expectSecurityHeaders(unauth);
    const notFound = await t.http.get('/v1/no-such-route', { headers: { origin: WEB } });
    expect(notFound.status).toBe(404);
    expectCorsAllowed(notFound);
    expectSecurityHeaders(notFound);
  });

  it('token answers and answers to credentialed requests are no-store; a public catalog answer is not marked', async () => {
    const email = `nostore-${Date.now()}@test.local`;
    const registered = await t.http.post('/v1/auth/register', {
      email,
      password: 'correct-horse-battery',
      name: 'N',
    });
    expect(registered.status).toBe(201);
    const loggedIn = await t.http.post('/v1/auth/login', {
      email,
      password: 'correct-horse-battery',
    });
    const refreshed = await t.http.post('/v1/auth/refresh', {
      refreshToken: loggedIn.body.refreshToken,
    });
    const refused = await t.http.post('/v1/auth/login', { email, password: 'wrong-horse-battery' });
    expect([loggedIn.status, refreshed.status, refused.status]).toEqual([200, 200, 401]);
    const me = await t.http.get('/v1/me', { token: registered.body.accessToken });
    const p = await createProduct(t, admin);
    // (read until cached: a first miss is kept nowhere, the second is — unless a slow Redis answer
    // under load made the cache stand aside for a second)
    const anonymous = await waitFor('the product page cached', async () => {
      const answer = await t.http.get(`/v1/products/${p.id}`);
      return (await t.app.get(CatalogCache).peek(`/v1/products/${p.id}`)) ? answer : undefined;
    });
    expect(anonymous.status).toBe(200);
    expect(anonymous.headers.get('cache-control')).toBeNull();
    // (the same page again, from the cache's fast path, to a request with a token)
    const withToken = await t.http.get(`/v1/products/${p.id}`, {
      token: registered.body.accessToken,
    });
    for (const res of [registered, loggedIn, refreshed, refused, me, withToken]) {
      expect(res.headers.get('cache-control')).toBe('no-store');
    }
  });

  it('a 401 names the Bearer scheme (a bad token as invalid_token)', async () => {
    const none = await t.http.get('/v1/me');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    const bad = await t.http.get('/v1/me', { token: 'not-a-token' });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    // a token that verifies, of an account gone since: refused as a token too
    const gone = await registerCustomer(t.http);
    await t.db.pool.query(`DELETE FROM users WHERE id = $1`, [gone.user.id]);
    const orphan = await t.http.get('/v1/me', { token: gone.accessToken });
    // (its session gone with it: TOKEN_INVALID — or, where this process had seen the session
    // lately, UNAUTHENTICATED from the route, which finds no account)
    expect(orphan.status).toBe(401);
    expect(['TOKEN_INVALID', 'UNAUTHENTICATED']).toContain(orphan.body.code);
    expect(orphan.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
  });

  it('a bearer token after more than one space (RFC 6750: 1*SP) is the same token everywhere: the API, the queue board, the 401 challenge', async () => {
    const customer = await registerCustomer(t.http);
    for (const authorization of [
      `Bearer  ${customer.accessToken}`,
      `bearer   ${customer.accessToken}`,
    ]) {
      const me = await t.http.get('/v1/me', { headers: { authorization } });
      expect([authorization, me.status, me.body.id]).toEqual([
        authorization,
        200,
        customer.user.id,
      ]);
    }
    const board = await t.http.get('/admin/queues/api/queues', {
      headers: { authorization: `Bearer  ${admin}` },
    });
    expect(board.status).toBe(200);
    // a token that does not verify, after two spaces: refused as a token (TOKEN_INVALID), not as
    // none sent
    const bad = await t.http.get('/v1/me', { headers: { authorization: 'Bearer  not-a-token' } });
    expect([bad.status, bad.body.code]).toEqual([401, 'TOKEN_INVALID']);
    expect(bad.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    // what is no bearer token (a tab, two words) is refused as none, and the challenge says so too
    for (const authorization of [`Bearer\t${customer.accessToken}`, 'Bearer a b']) {
      const none = await t.http.get('/v1/me', { headers: { authorization } });
      expect([authorization, none.status, none.body.code]).toEqual([
        authorization,
        401,
        'UNAUTHENTICATED',
      ]);
      expect(none.headers.get('www-authenticate')).toBe('Bearer');
    }
  });
});

describe('CORS_ORIGINS defaults and validation', () => {
  const secrets = {
    JWT_SECRET: 'kg/gZguEarn5kkz6PARVmRmO53qFHydM66J5ee2yAe8=',
    STORAGE_ENDPOINT: 'https://storage.shop.example.test',
    STORAGE_ACCESS_KEY_ID: 'shop-images-writer',
    STORAGE_SECRET_ACCESS_KEY: 'y'.repeat(40),
    STORAGE_WEBHOOK_TOKEN: 'Zq8rT3vW9xK2mP5nLs6Jd1Hf',
    STRIPE_SECRET_KEY: 'sk_test_123',
    STRIPE_TEST_MODE: 'true',
    STRIPE_WEBHOOK_SECRET: 'whsec_Rk7Tq2Wv9Xz4Mn8Pb3Ls6Jd1Hf5Gc0Ya',
    SMTP_URL: 'smtp://mail.example.test:587',
    MAIL_FROM: 'Shop <orders@cornershop-mail.in>',
  };

  /** What a deployment also gives (required outside development; a booted test app has its own). */
  const services = {
    DATABASE_URL: 'postgres://shop:pw@db.internal:5432/shop?sslmode=verify-full',
    REDIS_URL: 'rediss://cache.internal:6379',
  };

  it('allows no origin by default outside development, any origin in development', () => {
    expect(loadConfig({ NODE_ENV: 'production', ...secrets, ...services }).corsOrigins).toEqual([]);
    expect(loadConfig({ ...secrets, ...services }).corsOrigins).toEqual([]);
    expect(loadConfig({ NODE_ENV: 'development' }).corsOrigins).toBe('*');
    expect(loadConfig({ NODE_ENV: 'development', CORS_ORIGINS: WEB }).corsOrigins).toEqual([WEB]);
    expect(
      loadConfig({ NODE_ENV: 'production', ...secrets, ...services, CORS_ORIGINS: '*' })
        .corsOrigins,
    ).toBe('*');
    expect(
      loadConfig({
        NODE_ENV: 'production',
        ...secrets,
        ...services,
        CORS_ORIGINS: 'https://Web.Shop.Example:443/',
      }).corsOrigins,
    ).toEqual([WEB]);
  });

  it('refuses at boot what is not a bare origin', () => {
    for (const bad of [
      'web.shop.example',
      'https://web.shop.example/app',
      'ftp://x.example',
      'https://a.example,*',
    ]) {
      expect(() =>
        loadConfig({ NODE_ENV: 'production', ...secrets, ...services, CORS_ORIGINS: bad }),
      ).toThrow(/CORS_ORIGINS/);
    }
  });

  it('refuses a wildcard anywhere but alone (`https://*.shop.example` was taken as an origin no browser sends, and matched nothing)', () => {
    for (const nodeEnv of ['production', 'development']) {
      const env = nodeEnv === 'production' ? { ...secrets, ...services } : {};
      for (const bad of [
        'https://*.shop.example',
        '*.shop.example',
        'http://localhost:*',
        `${WEB},https://*.web.shop.example`,
        '**',
      ]) {
        expect(() => loadConfig({ ...env, NODE_ENV: nodeEnv, CORS_ORIGINS: bad })).toThrow(
          /CORS_ORIGINS: "[^"]*\*[^"]*" — a wildcard matches no origin here/,
        );
      }
      // alone, any origin (as before)
      expect(loadConfig({ ...env, NODE_ENV: nodeEnv, CORS_ORIGINS: '*' }).corsOrigins).toBe('*');
    }
  });

  it('production default: a cross-origin preflight gets no CORS grant, and the logs say so (at boot, and each refused origin once a minute)', async () => {
    const warned: string[] = [];
    const spy = jest.spyOn(Logger.prototype, 'warn').mockImplementation(function (
      this: Logger,
      message: unknown,
    ) {
      warned.push(String(message));
    });
    const t = await bootTestApp({
      env: { NODE_ENV: 'production', ...secrets, STRIPE_API_URL: 'http://127.0.0.1:9' },
    });
    try {
      expect(warned.filter((w) => w.startsWith('CORS_ORIGINS is empty'))).toHaveLength(1);
      const pre = await t.http.request('OPTIONS', '/v1/products', undefined, {
        headers: { origin: WEB, 'access-control-request-method': 'GET' },
      });
      expect(pre.headers.get('access-control-allow-origin')).toBeNull();
      // each origin once a minute: the same origin again is not logged again, another origin is
      // (a scanner's preflight each minute hid the misspelt real origin)
      await t.http.request('OPTIONS', '/v1/orders', undefined, {
        headers: { origin: WEB, 'access-control-request-method': 'POST' },
      });
      await t.http.request('OPTIONS', '/v1/orders', undefined, {
        headers: { origin: 'https://other.example', 'access-control-request-method': 'POST' },
      });
      await t.http.request('OPTIONS', '/v1/products', undefined, {
        headers: { origin: 'https://other.example', 'access-control-request-method': 'GET' },
      });
      expect(warned.filter((w) => w.startsWith('a preflight from origin'))).toEqual([
        `a preflight from origin "${WEB}" was refused: it is not in CORS_ORIGINS (empty); this origin is said once a minute at most`,
        'a preflight from origin "https://other.example" was refused: it is not in CORS_ORIGINS (empty); this origin is said once a minute at most',
      ]);
      const get = await t.http.get('/health/live', { headers: { origin: WEB } });
      expect(get.status).toBe(200);
      expect(get.headers.get('access-control-allow-origin')).toBeNull();
      expectSecurityHeaders(get);
    } finally {
      spy.mockRestore();
      await t.close();
    }
  });
});
