import { randomUUID } from 'node:crypto';
import { registerCustomer, TEST_PASSWORD } from '../support/auth';
import { TestApp, bootTestApp } from '../support/test-app';

const xff = (ip: string) => ({ headers: { 'x-forwarded-for': ip } });

describe('rate limits (Redis-backed, shared by every instance)', () => {
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    a = await bootTestApp({ env: { RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: '127.0.0.1' } });
    // a second API instance on the same database and the same Redis key space
    b = await bootTestApp({
      db: a.db,
      env: { RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: '127.0.0.1', REDIS_KEY_PREFIX: a.config.redis.keyPrefix },
    });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it('the sixth rapid login for one account gets 429 with Retry-After; another account from another IP is unaffected', async () => {
    const victim = await registerCustomer(a.http, xff('10.0.0.1'));
    const bystander = await registerCustomer(a.http, xff('10.0.0.2'));
    const responses = [];
    for (let i = 0; i < 6; i++) {
      responses.push(
        await a.http.post('/v1/auth/login', { email: victim.email, password: 'wrong-password' }, xff(`10.1.0.${i}`)),
      );
    }
    expect(responses.map((r) => r.status)).toEqual([401, 401, 401, 401, 401, 429]);
    expect(responses[5].body.code).toBe('RATE_LIMITED');
    expect(Number(responses[5].headers.get('retry-after'))).toBeGreaterThan(0);

    const other = await a.http.post('/v1/auth/login', { email: bystander.email, password: TEST_PASSWORD }, xff('10.2.0.1'));
    expect(other.status).toBe(200);
    expect(other.headers.get('ratelimit-policy')).toMatch(/"login-account";q=5;w=60/);
    expect(other.headers.get('ratelimit')).toMatch(/"login-account";r=4;t=\d+/);
  });

  it('counts across two API instances', async () => {
    const s = await registerCustomer(a.http, xff('10.3.0.1'));
    const apps = [a, b, a, b, a, b];
    const statuses = [];
    for (const [i, app] of apps.entries()) {
      statuses.push((await app.http.post('/v1/auth/login', { email: s.email, password: 'nope-nope' }, xff(`10.4.0.${i}`))).status);
    }
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429]);
  });

  it('limits registration per client IP', async () => {
    const ip = '10.5.0.1';
    const statuses = [];
    for (let i = 0; i < 11; i++) {
      statuses.push(
        (await a.http.post('/v1/auth/register', { email: `${randomUUID()}@x.io`, password: 'short' }, xff(ip))).status,
      );
    }
    expect(statuses.slice(0, 10).every((s) => s === 400)).toBe(true);
    expect(statuses[10]).toBe(429);
  });
});

describe('rate limits without a trusted proxy', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp({ env: { RATE_LIMIT_ENABLED: 'true' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('ignores a spoofed X-Forwarded-For: the socket address is the client', async () => {
    const statuses = [];
    for (let i = 0; i < 11; i++) {
      statuses.push(
        (await t.http.post('/v1/auth/register', { email: `${randomUUID()}@x.io`, password: 'short' }, xff(`10.9.${i}.1`))).status,
      );
    }
    expect(statuses[10]).toBe(429);
  });
});

describe('rate limits with Redis unreachable', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp({ env: { RATE_LIMIT_ENABLED: 'true', REDIS_URL: 'redis://127.0.0.1:6390' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('fails closed for login (429 with Retry-After, never a 500 or a hang) and open for everything else', async () => {
    const started = Date.now();
    const login = await t.http.post('/v1/auth/login', { email: 'a@b.io', password: 'whatever-pass' });
    expect(login.status).toBe(429);
    expect(login.headers.get('retry-after')).toBeTruthy();
    const register = await t.http.post('/v1/auth/register', { email: `${randomUUID()}@x.io`, password: TEST_PASSWORD, name: 'x' });
    expect(register.status).toBe(429);
    expect((await t.http.get('/health/live')).status).toBe(200);
    expect((await t.http.get('/v1/me')).status).toBe(401); // default policy fails open; auth still applies
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
