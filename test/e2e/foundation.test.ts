import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DatabaseHealthIndicator } from '../../src/health/database.health';
import { buildOpenApiDocument } from '../../src/openapi/openapi';
import { registerCustomer } from '../support/auth';
import { holdNextGatedRequest, slowRequestsStarted, withProbe } from '../support/probe.module';
import { expectProblem } from '../support/http';
import { waitFor } from '../support/wait-for';
import { TestApp, bootTestApp } from '../support/test-app';

describe('foundation: cross-cutting HTTP behaviour', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await bootTestApp({ module: withProbe });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers liveness and readiness when PostgreSQL and Redis are up', async () => {
    expect((await t.http.get('/health/live')).status).toBe(200);
    const ready = await t.http.get('/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.body.details).toEqual({
      database: { status: 'up', breaker: 'closed' },
      redis: { status: 'up' },
    });
  });

  it('a flood of readiness probes (public, not throttled) shares the checks running: no ping per probe queues on the pool', async () => {
    const db = t.app.get(DatabaseHealthIndicator);
    const check = db.isHealthy.bind(db);
    // a database slow to answer (when a flood hurts most): each check takes 300 ms
    const checks = jest.spyOn(db, 'isHealthy').mockImplementation(async (key, timeoutMs) => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      return check(key, timeoutMs);
    });
    try {
      const answers = await Promise.all(
        Array.from({ length: 100 }, () => t.http.get('/health/ready')),
      );
      expect(
        answers.every((r) => r.status === 200 && r.body.details.database.status === 'up'),
      ).toBe(true);
      expect(checks.mock.calls.length).toBeGreaterThanOrEqual(1);
      expect(checks.mock.calls.length).toBeLessThan(25);
      // one after another, each probe checks afresh (a change is seen by the next probe)
      checks.mockClear();
      await t.http.get('/health/ready');
      await t.http.get('/health/ready');
      expect(checks).toHaveBeenCalledTimes(2);
    } finally {
      checks.mockRestore();
    }
  });

  it('generates an X-Request-Id, and keeps a well-formed incoming one', async () => {
    const generated = await t.http.get('/health/live');
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const kept = await t.http.get('/health/live', {
      headers: { 'x-request-id': 'client-req-0001' },
    });
    expect(kept.headers.get('x-request-id')).toBe('client-req-0001');
    const replaced = await t.http.get('/health/live', { headers: { 'x-request-id': 'bad id!' } });
    expect(replaced.headers.get('x-request-id')).not.toBe('bad id!');
  });

  it('renders an unknown route as problem+json 404 with the request id', async () => {
    const res = await t.http.get('/v1/nowhere', { headers: { 'x-request-id': 'trace-12345678' } });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({
      status: 404,
      code: 'ROUTE_NOT_FOUND',
      requestId: 'trace-12345678',
    });
    expect(typeof res.body.type).toBe('string');
    expect(typeof res.body.title).toBe('string');
  });

  it('answers a path that exists, asked with a method it lacks, 405 with Allow (not 404), before reading the body', async () => {
    const id = '00000000-0000-4000-8000-000000000000';
    const cases: [string, string, string][] = [
      ['DELETE', '/v1/products', 'GET, HEAD'],
      ['POST', `/v1/products/${id}`, 'GET, HEAD'],
      ['GET', `/v1/orders/${id}/cancel`, 'POST'],
      ['PATCH', '/v1/cart', 'GET, HEAD, DELETE'],
      ['PUT', '/v1/auth/login', 'POST'],
      ['POST', '/health/live', 'GET, HEAD'],
    ];
    for (const [method, path, allow] of cases) {
      // anonymous, with a body no parser could read: the method is what is wrong
      const res = await t.http.request(method, path, undefined, {
        raw: method === 'GET' ? undefined : '{"broken',
      });
      expectProblem(res, 405, 'METHOD_NOT_ALLOWED');
      expect([method, path, res.headers.get('allow')]).toEqual([method, path, allow]);
      // with every answer's security headers, and CORS's (a browser app reads the 405 and its Allow)
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('content-security-policy')).toBeTruthy();
    }
    // counted under the route its path matched (another method's), not as `unmatched` beside scans
    const counted = (await t.metrics())
      .split('\n')
      .filter((l) => /^http_request_duration_seconds_count\{.*status="405"/.test(l));
    expect(counted).toEqual(
      expect.arrayContaining([
        'http_request_duration_seconds_count{method="DELETE",route="/v1/products",status="405"} 1',
        'http_request_duration_seconds_count{method="PUT",route="/v1/auth/login",status="405"} 1',
        expect.stringMatching(
          /^http_request_duration_seconds_count\{method="POST",route="\/v1\/products\/:\w+",status="405"\} 1$/,
        ),
      ]),
    );
    expect(counted.filter((l) => l.includes('unmatched'))).toEqual([]);
    const fromBrowser = await t.http.request('DELETE', '/v1/categories', undefined, {
      headers: { origin: 'https://shop.example' },
    });
    expectProblem(fromBrowser, 405, 'METHOD_NOT_ALLOWED');
    expect(fromBrowser.headers.get('access-control-allow-origin')).toBeTruthy();
    expect(fromBrowser.headers.get('access-control-expose-headers')).toMatch(/\bAllow\b/);
    // a static folder's files are its own: a file not there is a 404 under any method
    expectProblem(await t.http.request('POST', '/docs/nonexistent'), 404, 'ROUTE_NOT_FOUND');
    // no route under any method (CORS's OPTIONS-for-any-path counts for none): still 404
    // nor a path matched only with a parameter left empty (Nest's adapter routes none)
    for (const path of [
      '/v1/nowhere',
      `/v1/products/${id}/images/x`,
      `/v1/orders/${id}/refund`,
      '/v1/products/',
      '/v1/orders//cancel',
    ]) {
      const res = await t.http.request('DELETE', path);
      expect([path, res.status, res.headers.get('allow')]).toEqual([path, 404, null]);
      expectProblem(res, 404, 'ROUTE_NOT_FOUND');
    }
  });

  it('lists every invalid field in a 400 VALIDATION_FAILED', async () => {
    const res = await t.http.post('/v1/__probe/echo', { email: 'nope', quantity: 0, note: 'x' });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('VALIDATION_FAILED');
    const fields = res.body.errors.map((e: { field: string }) => e.field).sort();
    expect(fields).toEqual(['email', 'quantity']);
  });

  it('rejects properties that are not in the DTO (no mass assignment)', async () => {
    const res = await t.http.post('/v1/__probe/echo', {
      email: 'a@b.co',
      quantity: 1,
      note: 'x',
      role: 'admin',
    });
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([expect.objectContaining({ field: 'role' })]);
  });

  it('answers malformed JSON with a 400 problem, not a 500', async () => {
    const res = await t.http.request('POST', '/v1/__probe/echo', undefined, { raw: '{"email":' });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/problem\+json/);
    expect(res.body.code).toBe('BAD_REQUEST');
  });

  it('maps a domain error to its status with its extension members', async () => {
    const res = await t.http.get('/v1/__probe/domain');
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({
      code: 'INSUFFICIENT_STOCK',
      products: [{ productId: 'p1', available: 0 }],
    });
  });

  it('turns an unknown error into a 500 without internals', async () => {
    const res = await t.http.get('/v1/__probe/boom');
    expect(res.status).toBe(500);
    expect(res.body.code).toBe('INTERNAL_ERROR');
    expect(res.text).not.toMatch(/SELECT|password|secret|at .*\.ts/);
    expect(res.body.requestId).toBe(res.headers.get('x-request-id'));
  });

  it('records Prometheus HTTP duration histograms by route and status (served on METRICS_PORT)', async () => {
    await t.http.get('/health/live');
    expect(await t.metrics()).toMatch(
      /http_request_duration_seconds_bucket\{le="[^"]+",method="GET",route="\/health\/live",status="200"\}/,
    );
  });

  it("reports how far the host's clock is from PostgreSQL's and Redis's (clock_skew_seconds), a fast one too", async () => {
    const skew = async (against: string) =>
      Number(
        new RegExp(`^clock_skew_seconds\\{against="${against}"\\} (\\S+)$`, 'm').exec(
          await t.metrics(),
        )?.[1],
      );
    for (const against of ['postgres', 'redis']) expect(await skew(against)).toBeLessThan(1);
    // this host's clock ten minutes fast (the design allows five): seen against both
    const { Clock } = await import('../../src/common/time/clock');
    const fast = jest
      .spyOn(t.app.get(Clock), 'now')
      .mockImplementation(() => new Date(Date.now() + 600_000));
    try {
      for (const against of ['postgres', 'redis']) {
        const seen = await skew(against);
        expect([against, seen > 599 && seen < 601]).toEqual([against, true]);
      }
    } finally {
      fast.mockRestore();
    }
  });

  it('serves Swagger UI and an OpenAPI 3 document with bearer auth', async () => {
    const ui = await t.http.get('/docs');
    expect(ui.status).toBe(200);
    expect(ui.text).toMatch(/swagger/i);
    const doc = await t.http.get('/docs-json');
    expect(doc.body.openapi).toMatch(/^3\./);
    expect(doc.body.components.securitySchemes.bearer).toMatchObject({ scheme: 'bearer' });
    // unknown query parameters are a 400 on every route (API.md), these too (mounted outside
    // the Nest guard that refuses them elsewhere)
    for (const path of [
      '/docs-json?cb=1',
      '/docs?url=https://evil.example/spec.json',
      '/docs/swagger-ui-init.js?x=1',
    ]) {
      const refused = await t.http.get(path);
      expect([path, refused.status, refused.body.code]).toEqual([path, 400, 'VALIDATION_FAILED']);
      expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(refused.body.requestId).toBe(refused.headers.get('x-request-id'));
    }
    expect((await t.http.get('/docs/swagger-ui-init.js')).status).toBe(200);
  });

  it('serves /docs-json gzip-compressed to a client that takes it, the same document once decompressed', async () => {
    /** The raw answer to GET /docs-json with this Accept-Encoding (no client decompressing it). */
    const fetchRaw = (acceptEncoding?: string) =>
      new Promise<{ headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
        const headers = acceptEncoding === undefined ? {} : { 'accept-encoding': acceptEncoding };
        get(`${t.baseUrl}/docs-json`, { headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
        }).on('error', reject);
      });
    const plain = await fetchRaw();
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.headers.vary).toMatch(/Accept-Encoding/i);
    const document = JSON.parse(plain.body.toString('utf8'));
    expect(document.openapi).toMatch(/^3\./);
    for (const accepted of ['gzip', 'br, gzip;q=0.5', 'GZIP', '*']) {
      const compressed = await fetchRaw(accepted);
      expect([accepted, compressed.headers['content-encoding']]).toEqual([accepted, 'gzip']);
      expect(compressed.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(compressed.body.length).toBeLessThan(plain.body.length / 5);
      expect(JSON.parse(gunzipSync(compressed.body).toString('utf8'))).toEqual(document);
    }
    for (const refused of ['identity', 'gzip;q=0', 'br', '*;q=0'])
      expect([refused, (await fetchRaw(refused)).headers['content-encoding']]).toEqual([
        refused,
        undefined,
      ]);
  });
});

describe('foundation: committed openapi.json', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('matches what the code generates (run `npm run openapi` after an API change)', () => {
    const generated = JSON.parse(JSON.stringify(buildOpenApiDocument(t.app)));
    const committed = JSON.parse(readFileSync(join(__dirname, '..', '..', 'openapi.json'), 'utf8'));
    expect(generated).toEqual(committed);
  });
});

describe('foundation: readiness with Redis down', () => {
  let t: TestApp;
  beforeAll(async () => {
    // Nothing listens on this port: Redis is "down" for this app.
    t = await bootTestApp({ env: { REDIS_URL: 'redis://127.0.0.1:6390' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers 503 with details naming redis, quickly and without hanging', async () => {
    const started = Date.now();
    const res = await t.http.get('/health/ready');
    expect(res.status).toBe(503);
    expect(res.body.details.redis.status).toBe('down');
    expect(res.body.details.database.status).toBe('up');
    expect(res.headers.get('retry-after')).toBe('5'); // as the document declares for every 503
    expect(Date.now() - started).toBeLessThan(5000);
    expect((await t.http.get('/health/live')).status).toBe(200);
  });
});

describe('foundation: graceful shutdown', () => {
  it('finishes an in-flight request when the app closes', async () => {
    const t = await bootTestApp({ module: withProbe });
    const before = slowRequestsStarted();
    const inFlight = t.http.get('/v1/__probe/slow');
    await waitFor('the slow request to reach its handler', () => slowRequestsStarted() > before, {
      intervalMs: 10,
    });
    const closing = t.close();
    const res = await inFlight;
    await closing;
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ done: true });
    await expect(fetch(`${t.baseUrl}/health/live`)).rejects.toThrow();
  });

  it('refuses a request that arrives while the app closes as a 503 problem with a request id (not a bare 503), which a browser may read', async () => {
    const t = await bootTestApp({ env: { CORS_ORIGINS: 'https://app.shop.test' } });
    // a connection whose request is in transit when the close begins: it is not idle, so the
    // close waits for it, and its request reaches the router after the routes are closed
    const socket = connect(Number(new URL(t.baseUrl).port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString()));
    const ended = new Promise((resolve) => socket.once('close', resolve));
    socket.write('GET /v1/products HTTP/1.1\r\nHost: shop.test\r\n');
    // (Node's own list of connections whose request has begun: what its close leaves open)
    const server = t.app.getHttpServer();
    const connections = Object.getOwnPropertySymbols(server).find(
      (k) => k.description === 'http.server.connections',
    )!;
    const list = (server as unknown as Record<symbol, { active(): unknown[] }>)[connections];
    await waitFor('the request to be in transit', () => list.active().length, {
      until: (n) => n === 1,
      intervalMs: 10,
    });
    const closing = t.close();
    await waitFor('the server to stop listening', () => t.app.getHttpServer().listening, {
      until: (listening) => !listening,
      intervalMs: 10,
    });
    socket.write('Accept: application/json\r\nOrigin: https://app.shop.test\r\n\r\n');
    await ended;
    await closing;
    const [head, body] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 503 /);
    expect(head).toMatch(/\r\ncontent-type: application\/problem\+json/i);
    expect(head).toMatch(/\r\nretry-after: 1\r\n/i);
    expect(head).toMatch(/\r\nconnection: close\r\n/i);
    // CORS's headers: a browser client sees the 503 and its Retry-After, not an opaque failure
    expect(head).toMatch(/\r\naccess-control-allow-origin: https:\/\/app\.shop\.test\r\n/i);
    expect(head).toMatch(/\r\ncontent-security-policy: /i);
    const requestId = /\r\nx-request-id: ([^\r]+)/i.exec(head)?.[1];
    expect(JSON.parse(body)).toMatchObject({ status: 503, code: 'SERVICE_UNAVAILABLE', requestId });
  });

  it('authenticates a request that reaches its guard while the app is closing (no 500)', async () => {
    // Nest runs onModuleDestroy before it stops the HTTP server: the JWT strategy used to leave
    // passport there, and a request reaching the guard after that answered 500 "Unknown
    // authentication strategy". Held before its guard until the server no longer listens:
    const t = await bootTestApp({ module: withProbe });
    const me = await registerCustomer(t.http);
    const held = holdNextGatedRequest();
    const inFlight = t.http.get('/v1/__probe/gated', { token: me.accessToken });
    await held.arrived;
    const closing = t.close();
    await waitFor('the server to stop listening', () => t.app.getHttpServer().listening, {
      until: (listening) => !listening,
      intervalMs: 10,
    });
    held.open();
    const res = await inFlight;
    await closing;
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ userId: me.user.id });
  });
});
