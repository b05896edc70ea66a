import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { AccountService } from '../../src/auth/account.service';
import { SecurityEvents } from '../../src/auth/security-events';
import { QUEUES } from '../../src/queue/queues';
import { QueueBoardQueues } from '../../src/admin-queues/queue-board-queues';
import { TEST_PASSWORD, createAdmin, createStaff, registerCustomer } from '../support/auth';
import { TestApp, bootTestApp } from '../support/test-app';

/** A GET whose request target is sent as written (fetch would normalise it). */
function rawGet(
  base: string,
  target: string,
  token: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(base);
    const req = request(
      { host: hostname, port, path: target, headers: { authorization: `Bearer ${token}` } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const basic = (email: string, password: string) =>
  `Basic ${Buffer.from(`${email}:${password}`).toString('base64')}`;

const expectProblem = (
  res: { status: number; headers: Headers; body: any },
  status: number,
  code: string,
) => {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, code, requestId: expect.any(String) });
};

describe('admin: queue board at /admin/queues', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('asks for credentials: 401 problem with a Basic challenge', async () => {
    for (const path of ['/admin/queues', '/admin/queues/api/queues', '/admin/queues/static/x.js']) {
      const res = await t.http.get(path);
      expectProblem(res, 401, 'UNAUTHENTICATED');
      expect(res.headers.get('www-authenticate')).toBe('Basic realm="queues", charset="UTF-8"');
    }
  });

  it('refuses an invalid bearer token with 401 TOKEN_INVALID', async () => {
    const res = await t.http.get('/admin/queues', { token: 'not-a-jwt' });
    expectProblem(res, 401, 'TOKEN_INVALID');
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic /);
  });

  it("refuses a customer's token with 403 FORBIDDEN, and a customer's password like a wrong one (401)", async () => {
    const customer = await registerCustomer(t.http);
    expectProblem(
      await t.http.get('/admin/queues', { token: customer.accessToken }),
      403,
      'FORBIDDEN',
    );
    // a right password of an account that may not view the queues tells nothing more than a
    // wrong one (no credential oracle)
    expectProblem(
      await t.http.get('/admin/queues', {
        headers: { authorization: basic(customer.email, customer.password) },
      }),
      401,
      'INVALID_CREDENTIALS',
    );
  });

  it('refuses staff (no queues:view) with 403 FORBIDDEN', async () => {
    const staff = await createStaff(t);
    expectProblem(
      await t.http.get('/admin/queues/api/queues', { token: staff.accessToken }),
      403,
      'FORBIDDEN',
    );
  });

  it('serves the board and its API to an admin bearer token, listing every queue', async () => {
    const admin = await createAdmin(t);
    const page = await t.http.get('/admin/queues', { token: admin.accessToken });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.text).toContain('/admin/queues/');

    const api = await t.http.get('/admin/queues/api/queues', { token: admin.accessToken });
    expect(api.status).toBe(200);
    const names = (api.body.queues as { name: string; readOnlyMode: boolean }[]).map((q) => q.name);
    expect([...names].sort()).toEqual([...QUEUES].sort());
    expect(api.body.queues.every((q: { readOnlyMode: boolean }) => q.readOnlyMode)).toBe(true);
  });

  it("answers the board's own refusals and failures as problems: a malformed query value 400, an unknown queue 4xx, never a raw 500", async () => {
    const admin = await createAdmin(t);
    for (const path of [
      '/admin/queues/api/queues?activeQueue=%25',
      '/admin/queues/api/job-schedulers?queueName=%25',
    ]) {
      const res = await t.http.get(path, { token: admin.accessToken });
      expect([path, res.status]).toEqual([path, 400]);
      expectProblem(res, 400, 'BAD_REQUEST');
    }
    // paging Redis cannot take (a 500 before), or too large a page to read in one script
    for (const query of [
      'page=1e300',
      'jobsPerPage=1e300',
      'page=99999999999999999999',
      'jobsPerPage=100000000',
      'page=0',
      'page=1.5',
    ]) {
      const res = await t.http.get(
        `/admin/queues/api/queues?activeQueue=orders&status=waiting&${query}`,
        { token: admin.accessToken },
      );
      expect([query, res.status]).toEqual([query, 400]);
      expectProblem(res, 400, 'VALIDATION_FAILED');
    }
    // the same route spelled otherwise (the router decodes %61 to `a`, and drops an absolute
    // form's scheme and host): the check is the route's, not the raw target's
    for (const target of [
      '/admin/queues/%61pi/queues?activeQueue=orders&status=waiting&page=1e300',
      `${t.baseUrl}/admin/queues/api/queues?activeQueue=orders&status=waiting&page=1e300`,
    ]) {
      const res = await rawGet(t.baseUrl, target, admin.accessToken);
      expect([target, res.status]).toEqual([target, 400]);
      expect(JSON.parse(res.body)).toMatchObject({ status: 400, code: 'VALIDATION_FAILED' });
    }
    expect(
      (
        await t.http.get(
          '/admin/queues/api/queues?activeQueue=orders&status=waiting&page=2&jobsPerPage=50',
          { token: admin.accessToken },
        )
      ).status,
    ).toBe(200);
    const unknown = await t.http.get('/admin/queues/api/queues/no-such-queue/no-such-job', {
      token: admin.accessToken,
    });
    expect(unknown.status).toBeGreaterThanOrEqual(400);
    expect(unknown.status).toBeLessThan(500);
    // as every problem: UTF-8 named, a detail that says what the status says (not "Bad request" for a 404)
    expect(unknown.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
    expect(unknown.body.requestId).toBe(unknown.headers.get('x-request-id'));
    if (unknown.status === 404) expect(unknown.body.detail).not.toMatch(/bad request/i);
    // what the board's UI reads of its own refusals is still there
    expect(unknown.body).toHaveProperty('error');
    const logs = await t.http.get('/admin/queues/api/queues/x/y/logs', {
      token: admin.accessToken,
    });
    // a queue it does not know, on a route it has: not found, named — not "No such route"
    expect([logs.status, logs.body.code, logs.body.detail]).toEqual([
      404,
      'NOT_FOUND',
      'Queue not found.',
    ]);
    expect(logs.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
    const [queue] = t.app.get(QueueBoardQueues).queues;
    const job = await t.http.get(`/admin/queues/api/queues/${queue.name}/no-such-job`, {
      token: admin.accessToken,
    });
    expect([job.status, job.body.code, job.body.detail]).toEqual([
      404,
      'NOT_FOUND',
      'Job not found.',
    ]);
    // a route the board does not have is one
    const route = await t.http.get('/admin/queues/api/no-such-route', {
      token: admin.accessToken,
    });
    expect([route.status, route.body.code]).toEqual([404, 'ROUTE_NOT_FOUND']);
  });

  it('Redis lost during a board request (after the readiness check), or answering "not now" (BUSY, LOADING, MASTERDOWN): 503 with Retry-After, not a 500', async () => {
    const admin = await createAdmin(t);
    const [queue] = t.app.get(QueueBoardQueues).queues;
    for (const said of [
      'Connection is closed.',
      'BUSY Redis is busy running a script. You can only call SCRIPT KILL or FUNCTION KILL.',
      'LOADING Redis is loading the dataset in memory',
      "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    ]) {
      const spy = jest.spyOn(queue, 'getJobCounts').mockRejectedValue(new Error(said));
      try {
        const res = await t.http.get('/admin/queues/api/queues', { token: admin.accessToken });
        expectProblem(res, 503, 'SERVICE_UNAVAILABLE');
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
        expect(JSON.stringify(res.body)).not.toContain(said.slice(0, 12));
      } finally {
        spy.mockRestore();
      }
    }
    expect(
      (await t.http.get('/admin/queues/api/queues', { token: admin.accessToken })).status,
    ).toBe(200);
  });

  it('serves the board to an admin signing in with HTTP Basic (email:password); the sign-in is a security event', async () => {
    const admin = await createAdmin(t);
    const events = jest.spyOn(t.app.get(SecurityEvents), 'record');
    const authorization = basic(admin.email.toUpperCase(), TEST_PASSWORD);
    const page = await t.http.get('/admin/queues', { headers: { authorization } });
    expect(page.status).toBe(200);
    expect(events.mock.calls.map(([e]) => e)).toEqual([
      expect.objectContaining({ event: 'sign_in', door: 'queue-board', role: 'admin' }),
    ]);
    events.mockRestore();
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    // the page's assets and API calls reuse the verified header
    const api = await t.http.get('/admin/queues/api/queues', { headers: { authorization } });
    expect(api.status).toBe(200);
    expect(api.body.queues).toHaveLength(QUEUES.length);
  });

  it('a verified Basic header stops working the moment the password changes or the role is taken away', async () => {
    const admin = await createAdmin(t);
    const old = basic(admin.email, TEST_PASSWORD);
    expect(
      (await t.http.get('/admin/queues/api/queues', { headers: { authorization: old } })).status,
    ).toBe(200);
    // the admin changes a leaked password: the old one must not open the board any more
    const changed = await t.http.post(
      '/v1/me/password',
      { currentPassword: TEST_PASSWORD, newPassword: 'fresh-password-42' },
      { token: admin.accessToken },
    );
    expect(changed.status).toBe(204);
    expectProblem(
      await t.http.get('/admin/queues/api/queues', { headers: { authorization: old } }),
      401,
      'INVALID_CREDENTIALS',
    );
    const fresh = basic(admin.email, 'fresh-password-42');
    expect(
      (await t.http.get('/admin/queues/api/queues', { headers: { authorization: fresh } })).status,
    ).toBe(200);
    // demoted to a customer: the header it just verified is refused too
    await t.db.pool.query(`UPDATE users SET role = 'customer' WHERE id = $1`, [admin.user.id]);
    expectProblem(
      await t.http.get('/admin/queues/api/queues', { headers: { authorization: fresh } }),
      401,
      'INVALID_CREDENTIALS',
    );
  });

  it('answers 401 INVALID_CREDENTIALS for a wrong password or an unknown email', async () => {
    const admin = await createAdmin(t);
    for (const authorization of [
      basic(admin.email, 'wrong-password'),
      basic('nobody@test.local', TEST_PASSWORD),
    ]) {
      const res = await t.http.get('/admin/queues', { headers: { authorization } });
      expectProblem(res, 401, 'INVALID_CREDENTIALS');
      expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm="queues"/);
    }
  });

  it('is read-only: changes are refused with 405 even for an admin', async () => {
    const admin = await createAdmin(t);
    const res = await t.http.put('/admin/queues/api/queues/orders/pause', undefined, {
      token: admin.accessToken,
    });
    expectProblem(res, 405, 'METHOD_NOT_ALLOWED');
    expect(res.headers.get('allow')).toBe('GET, HEAD');
    // the board's routes are its own: a change it has a route for is signed in first (401 with its
    // challenge), then refused 405; one it has none for is a 404 to anyone — never the app's
    // 405 before the sign-in, naming methods a prefix's second spelling does not have
    for (const [method, path, status] of [
      ['PUT', '/admin/queues/api/queues/orders/pause', 401],
      ['POST', '/admin/queues/', 404],
      ['DELETE', '/admin/queues/api/queues', 404],
    ] as const) {
      const anonymous = await t.http.request(method, path);
      expect([method, path, anonymous.status]).toEqual([method, path, status]);
      const signedIn = await t.http.request(method, path, undefined, { token: admin.accessToken });
      expect([method, path, signedIn.status]).toEqual([method, path, status === 401 ? 405 : 404]);
    }
  });

  it('a refused bearer token is named in the 401 challenge beside the Basic one (the board takes both)', async () => {
    const res = await t.http.get('/admin/queues/api/queues', {
      headers: { authorization: 'Bearer abc.def.ghi' },
    });
    expectProblem(res, 401, 'TOKEN_INVALID');
    expect(res.headers.get('www-authenticate')).toBe(
      'Basic realm="queues", charset="UTF-8", Bearer error="invalid_token"',
    );
  });

  it('a Basic header with a control character in it is a failed sign-in (401), not a database error (400)', async () => {
    for (const email of ['a\u0000@shop.test', 'a@shop.test\u0007']) {
      const res = await t.http.get('/admin/queues', {
        headers: { authorization: basic(email, 'password-12') },
      });
      expectProblem(res, 401, 'UNAUTHENTICATED');
      expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm="queues"/);
    }
  });

  it('stays out of the OpenAPI document', async () => {
    const doc = await t.http.get('/docs-json');
    expect(doc.status).toBe(200);
    expect(Object.keys(doc.body.paths).filter((p) => p.startsWith('/admin'))).toEqual([]);
  });
});

describe('admin: queue board with Redis down', () => {
  let t: TestApp;
  beforeAll(async () => {
    // Nothing listens on this port: Redis is "down" for this app (and for its queues).
    t = await bootTestApp({ env: { REDIS_URL: 'redis://127.0.0.1:6390' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('boots, serves the page, and answers the board API 503 quickly instead of hanging', async () => {
    expect((await t.http.get('/v1/products')).status).toBe(200);
    // login fails closed without Redis, so no token: the board's Basic sign-in still works here
    // (RATE_LIMIT_ENABLED=false in tests; with it on, Basic sign-ins fail closed like login)
    const email = `admin-${randomUUID()}@test.local`;
    await t.app.get(AccountService).ensureAccount(email, TEST_PASSWORD, 'admin', 'Admin');
    const authorization = basic(email, TEST_PASSWORD);
    expect((await t.http.get('/admin/queues', { headers: { authorization } })).status).toBe(200);
    const started = Date.now();
    const api = await t.http.get('/admin/queues/api/queues', { headers: { authorization } });
    expectProblem(api, 503, 'SERVICE_UNAVAILABLE');
    expect(api.headers.get('retry-after')).toBe('5');
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
