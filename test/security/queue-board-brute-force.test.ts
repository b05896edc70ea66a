import { randomUUID } from 'node:crypto';
import { AccountService } from '../../src/auth/account.service';
import { HASH_PLACES_PER_NETWORK, PasswordHasher } from '../../src/auth/password-hasher';
import {
  BOARD_FAILURES_PER_CLIENT,
  knownClientsKey,
} from '../../src/common/throttling/rate-limit.policies';
import { TEST_PASSWORD, registerCustomer } from '../support/auth';
import type { HttpResponse } from '../support/http';
import { TestApp, bootTestApp } from '../support/test-app';
import type Redis from 'ioredis';
import { REDIS } from '../../src/redis/redis.module';
import { UserRepository } from '../../src/users/user.repository';

// Issue 10, finding 2: the queue board's HTTP Basic sign-in was a brute-forceable password
// oracle (limit checked before and counted after argon2, per process, 403 vs 401).

const basic = (email: string, password: string) =>
  `Basic ${Buffer.from(`${email}:${password}`).toString('base64')}`;
/** As client `ip` behind the trusted proxy (TRUST_PROXY=127.0.0.1). */
const asClient = (ip: string, authorization: string) => ({
  headers: { 'x-forwarded-for': ip, authorization },
});
const board = (t: TestApp, ip: string, authorization: string) =>
  t.http.get('/admin/queues', asClient(ip, authorization));

async function newAccount(t: TestApp, role: 'admin' | 'customer') {
  const email = `${role}-${randomUUID()}@test.local`;
  await t.app.get(AccountService).ensureAccount(email, TEST_PASSWORD, role, `Test ${role}`);
  return email;
}

/** Counts argon2 verifications (PasswordHasher.verify, also behind verifyDummy) in one app. */
function countVerifications(t: TestApp) {
  return jest.spyOn(t.app.get(PasswordHasher), 'verify');
}

const problemOf = (res: HttpResponse) => {
  const {
    requestId: _requestId,
    instance: _instance,
    ...rest
  } = res.body as Record<string, unknown>;
  return {
    status: res.status,
    body: rest,
    challenge: res.headers.get('www-authenticate'),
    contentType: res.headers.get('content-type'),
  };
};

describe('queue board Basic sign-in against brute force (two API instances, one Redis)', () => {
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    const env = { RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: '127.0.0.1' };
    a = await bootTestApp({ env });
    b = await bootTestApp({
      db: a.db,
      env: { ...env, REDIS_KEY_PREFIX: a.config.redis.keyPrefix },
    });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });
  afterEach(() => jest.restoreAllMocks());

  it('60 concurrent wrong guesses from one client over both instances: at most the budget is verified, then even the right password is refused for that client', async () => {
    const admin = await newAccount(a, 'admin');
    // the verifications that ran (one the argon2 gate refused, 503, verified nothing)
    let ran = 0;
    for (const t of [a, b]) {
      const hasher = t.app.get(PasswordHasher);
      const verify = hasher.verify.bind(hasher);
      jest.spyOn(hasher, 'verify').mockImplementation(async (...args) => {
        const ok = await verify(...args);
        ran += 1;
        return ok;
      });
    }
    const responses = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        board(i % 2 ? b : a, '10.20.0.1', basic(admin, `guess-${i}-guess`)),
      ),
    );
    const verifications = () => ran;
    const statuses = responses.map((r) => r.status);

    expect(verifications()).toBeLessThanOrEqual(BOARD_FAILURES_PER_CLIENT);
    expect(statuses.filter((s) => s === 401)).toHaveLength(verifications());
    // the rest refused unverified: by the budget (429) — or by the argon2 gate (503), where one
    // IPv4 address holds HASH_PLACES_PER_NETWORK places per instance at most; its refusals were
    // given back, nothing verified
    expect(statuses.filter((s) => s !== 401 && s !== 429 && s !== 503)).toEqual([]);
    const refused = responses.find((r) => r.status === 429)!;
    expect(refused.body).toMatchObject({ status: 429, code: 'RATE_LIMITED' });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    // what the gate gave back is spent one guess at a time
    for (let i = 0; i < BOARD_FAILURES_PER_CLIENT; i++) {
      if ((await board(a, '10.20.0.1', basic(admin, `more-${i}-guess`))).status !== 401) break;
    }
    expect(verifications()).toBe(BOARD_FAILURES_PER_CLIENT);

    // the budget is spent for this client on every instance: the right password is refused
    // without being verified
    for (const t of [a, b]) {
      expect((await board(t, '10.20.0.1', basic(admin, TEST_PASSWORD))).status).toBe(429);
    }
    expect(verifications()).toBe(BOARD_FAILURES_PER_CLIENT);
    // the admin's own client is unaffected
    expect((await board(b, '10.20.0.2', basic(admin, TEST_PASSWORD))).status).toBe(200);
  });

  it("answers a customer's right password exactly like a wrong one (no credential oracle), and counts it as a failure", async () => {
    const customer = await registerCustomer(a.http, {
      headers: { 'x-forwarded-for': '10.21.0.1' },
    });
    const right = await board(a, '10.21.0.2', basic(customer.email, customer.password));
    const wrong = await board(a, '10.21.0.3', basic(customer.email, 'wrong-password'));
    expect(problemOf(right)).toEqual(problemOf(wrong));
    expect(right.status).toBe(401);
    expect(right.body.code).toBe('INVALID_CREDENTIALS');

    // each right customer password spends the client's budget like a wrong guess
    const statuses = [];
    for (let i = 0; i <= BOARD_FAILURES_PER_CLIENT; i++) {
      statuses.push(
        (await board(i % 2 ? b : a, '10.21.0.4', basic(customer.email, TEST_PASSWORD))).status,
      );
    }
    expect(statuses).toEqual([...Array(BOARD_FAILURES_PER_CLIENT).fill(401), 429]);
  });
});

describe('queue board: the per-IP request limit of every route', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp({ env: { RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: '127.0.0.1' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('counts every board request against `default` (300 a minute per client) before any database read: a client past its sign-in budget cannot keep PostgreSQL busy', async () => {
    const lookups = jest.spyOn(t.app.get(UserRepository), 'findByEmail');
    const statuses: number[] = [];
    let last: HttpResponse | undefined;
    // (at most the address's places in the argon2 gate at once: more are refused 503 there, not
    // by the limits asked here)
    for (let round = 0; round < 320 / HASH_PLACES_PER_NETWORK; round++) {
      const batch = await Promise.all(
        Array.from({ length: HASH_PLACES_PER_NETWORK }, (_, i) =>
          board(t, '10.30.0.1', basic(`nobody-${round}-${i}@x.io`, 'guess-guess')),
        ),
      );
      statuses.push(...batch.map((r) => r.status));
      last = batch[batch.length - 1];
    }
    // the first BOARD_FAILURES_PER_CLIENT are verified (401), the rest of the first 300 refused
    // by the sign-in budget, and past 300 by the per-IP limit, without reading anything
    expect(statuses.filter((s) => s === 401)).toHaveLength(BOARD_FAILURES_PER_CLIENT);
    // (refused by the limits, 429 — or, should Redis not answer the sign-in limiter within its
    // 500 ms on a loaded machine, by that limiter failing closed, 503: a full run saw 307 of 310)
    const refused = statuses.filter((s) => s !== 401);
    expect(refused.filter((s) => s !== 429 && s !== 503)).toEqual([]);
    expect(refused.filter((s) => s === 429).length).toBeGreaterThanOrEqual(300);
    expect(lookups.mock.calls.length).toBeLessThanOrEqual(300);
    expect(last!.body).toMatchObject({ status: 429, code: 'RATE_LIMITED' });
    expect(last!.headers.get('ratelimit-policy')).toMatch(/"default";q=300;w=60/);
    expect(Number(last!.headers.get('retry-after'))).toBeGreaterThan(0);
    // another client is not affected
    expect((await board(t, '10.30.0.2', '')).status).toBe(401);
    lookups.mockRestore();
  });
});

describe('queue board Basic sign-in: the account ceiling', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp({
      env: {
        RATE_LIMIT_ENABLED: 'true',
        TRUST_PROXY: '127.0.0.1',
        SIGN_IN_FAILURES_PER_ACCOUNT: '8',
      },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('refuses every client once the account has SIGN_IN_FAILURES_PER_ACCOUNT failures, login failures included', async () => {
    const admin = await newAccount(t, 'admin');
    const verify = countVerifications(t);
    // 3 failed logins + 20 concurrent board guesses, each from its own client
    for (let i = 0; i < 3; i++) {
      const res = await t.http.post(
        '/v1/auth/login',
        { email: admin, password: `guess-${i}-guess` },
        { headers: { 'x-forwarded-for': `10.23.0.${i + 1}` } },
      );
      expect(res.status).toBe(401);
    }
    const guesses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => board(t, `10.23.1.${i + 1}`, basic(admin, `g-${i}`))),
    );
    expect(guesses.filter((r) => r.status === 401)).toHaveLength(5);
    expect(guesses.filter((r) => r.status === 429)).toHaveLength(15);
    expect(verify).toHaveBeenCalledTimes(8);
    expect((await board(t, '10.23.2.1', basic(admin, TEST_PASSWORD))).status).toBe(429);
  });

  it("a stranger spending the ceiling never locks the admin out of the board from the admin's own clients", async () => {
    const admin = await newAccount(t, 'admin');
    // a verified Basic header is served from a cache whatever the client: each check below
    // spells the email its own way (emails are case-insensitive), so each is verified afresh
    const spelling = (n: number) => admin.slice(0, n).toUpperCase() + admin.slice(n);
    // the admin's own clients: one signed in to the board, one to the API
    expect((await board(t, '10.26.0.1', basic(admin, TEST_PASSWORD))).status).toBe(200);
    const login = await t.http.post(
      '/v1/auth/login',
      { email: admin, password: TEST_PASSWORD },
      { headers: { 'x-forwarded-for': '10.26.0.2' } },
    );
    expect(login.status).toBe(200);
    // a stranger on many addresses spends the account's ceiling (8 here) and more
    const guesses = await Promise.all(
      Array.from({ length: 12 }, (_, i) => board(t, `10.26.1.${i + 1}`, basic(admin, `g-${i}`))),
    );
    expect(guesses.filter((r) => r.status === 429).length).toBeGreaterThan(0);
    // the stranger's next guess, and the right password from a new client, are refused unverified
    expect((await board(t, '10.26.2.1', basic(spelling(1), TEST_PASSWORD))).status).toBe(429);
    // the admin's own clients still get in
    expect((await board(t, '10.26.0.1', basic(spelling(2), TEST_PASSWORD))).status).toBe(200);
    expect((await board(t, '10.26.0.2', basic(spelling(3), TEST_PASSWORD))).status).toBe(200);
    // and a wrong password from an own client still counts there (login's pair for the address)
    expect((await board(t, '10.26.0.2', basic(admin, 'wrong-guess'))).status).toBe(401);
  });

  it("others' failures for other accounts from the admin's own address (one NAT; a customer trying the board with their own right password) no longer lock the admin out of it there; the admin's password guessed from it stays bounded (login's pair for the address)", async () => {
    const admin = await newAccount(t, 'admin');
    const customer = await newAccount(t, 'customer');
    const login = await t.http.post(
      '/v1/auth/login',
      { email: admin, password: TEST_PASSWORD },
      { headers: { 'x-forwarded-for': '10.28.0.1' } },
    );
    expect(login.status).toBe(200);
    // the address's budget over all accounts, spent by others: a customer's right password
    // (twice: under the account's ceiling of 8 here) and guesses for other emails
    const others = [
      basic(customer, TEST_PASSWORD),
      basic(customer, TEST_PASSWORD),
      ...Array.from({ length: BOARD_FAILURES_PER_CLIENT }, (_, i) =>
        basic(`nobody-${i}-${randomUUID()}@test.local`, 'guess-guess'),
      ),
    ];
    const statuses = [];
    for (const header of others) statuses.push((await board(t, '10.28.0.1', header)).status);
    expect(statuses.slice(0, BOARD_FAILURES_PER_CLIENT)).toEqual(
      Array(BOARD_FAILURES_PER_CLIENT).fill(401),
    );
    expect(statuses.slice(BOARD_FAILURES_PER_CLIENT)).toEqual([429, 429]);
    // the admin still gets in from there
    expect((await board(t, '10.28.0.1', basic(admin, TEST_PASSWORD))).status).toBe(200);
    // the admin's own password guessed from there: the (account, address) pair's budget, then
    // refused (login's progressive delay)
    const guesses = [];
    for (let i = 0; i < 8; i++)
      guesses.push(
        (await board(t, '10.28.0.1', basic(admin.toUpperCase(), `guess-${i}-guess`))).status,
      );
    expect(guesses).toContain(429);
    expect(guesses.filter((s) => s === 401).length).toBeLessThanOrEqual(
      t.config.signIn.failuresPerClient,
    );
  });

  it("Redis losing its marks of the admin's clients does not let a stranger lock the admin out of the board: the sessions on record still know them", async () => {
    const admin = await newAccount(t, 'admin');
    const login = await t.http.post(
      '/v1/auth/login',
      { email: admin, password: TEST_PASSWORD },
      { headers: { 'x-forwarded-for': '10.27.0.2' } },
    );
    expect(login.status).toBe(200);
    // Redis comes back without the marks (only those: the other keys of this shared Redis stay)
    const redis = t.app.get<Redis>(REDIS);
    const marks = `${t.config.redis.keyPrefix}:rl:${knownClientsKey(admin)}`;
    expect(await redis.hlen(marks)).toBeGreaterThan(0);
    await redis.del(marks);
    const guesses = await Promise.all(
      Array.from({ length: 12 }, (_, i) => board(t, `10.27.1.${i + 1}`, basic(admin, `g-${i}`))),
    );
    expect(guesses.filter((r) => r.status === 429).length).toBeGreaterThan(0);
    expect((await board(t, '10.27.2.1', basic(admin, TEST_PASSWORD))).status).toBe(429);
    // the client the admin signed in from (recorded with its session) still gets in
    expect((await board(t, '10.27.0.2', basic(admin.toUpperCase(), TEST_PASSWORD))).status).toBe(
      200,
    );
  });
});

describe('queue board Basic sign-in: bounded argon2 work', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp({
      env: { RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: '127.0.0.1', PASSWORD_HASH_CONCURRENCY: '1' },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers an anonymous burst from many clients with 503 + Retry-After beyond the queue, never more argon2 at once than PASSWORD_HASH_CONCURRENCY', async () => {
    // the real argon2 binding, wrapped to measure how many computations overlap
    const argon2 = jest.requireActual<typeof import('@node-rs/argon2')>('@node-rs/argon2');
    const original = argon2.verify;
    let running = 0;
    let peak = 0;
    // the first verification is held until the burst has been refused in part, so the queue fills
    // however slowly a loaded machine brings the requests to it (unheld, a full run once verified
    // every guess as it trickled in and refused none); at most 10 s, after which the test fails
    let release!: () => void;
    const refusedOne = new Promise<void>((resolve) => (release = resolve));
    let held = false;
    const spy = jest.spyOn(argon2, 'verify').mockImplementation(async (...args) => {
      running += 1;
      peak = Math.max(peak, running);
      try {
        if (!held) {
          held = true;
          await Promise.race([refusedOne, new Promise((resolve) => setTimeout(resolve, 10_000))]);
        }
        return await original(...args);
      } finally {
        running -= 1;
      }
    });
    try {
      const burst = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          board(t, `10.24.${i}.1`, basic(`nobody-${randomUUID()}@test.local`, 'guess-guess')).then(
            (r) => {
              if (r.status === 503) release();
              return r;
            },
          ),
        ),
      );
      const busy = burst.filter((r) => r.status === 503);
      // (the others by status and code, should any be neither: what a failure must show)
      expect(
        burst
          .filter((r) => r.status !== 401 && r.status !== 503)
          .map((r) => [r.status, (r.body as { code?: unknown } | undefined)?.code]),
      ).toEqual([]);
      expect(busy.length).toBeGreaterThan(0);
      expect(busy[0].headers.get('content-type')).toMatch(/problem\+json/);
      expect(busy[0].body).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
      expect(Number(busy[0].headers.get('retry-after'))).toBeGreaterThan(0);
      expect(spy.mock.calls.length).toBe(burst.length - busy.length);
      expect(peak).toBe(1);
    } finally {
      spy.mockRestore();
    }
    // the refused attempts were given back: the server answers normally afterwards
    const admin = await newAccount(t, 'admin');
    expect((await board(t, '10.24.0.1', basic(admin, TEST_PASSWORD))).status).toBe(200);
  });
});

describe('queue board Basic sign-in with Redis unreachable', () => {
  let t: TestApp;
  beforeAll(async () => {
    // nothing listens on 6390: the counters cannot be reached
    t = await bootTestApp({
      env: { RATE_LIMIT_ENABLED: 'true', REDIS_URL: 'redis://127.0.0.1:6390' },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('fails closed like login: 503 with Retry-After at once (a dependency down), no password verified', async () => {
    const admin = await newAccount(t, 'admin');
    const verify = countVerifications(t);
    const started = Date.now();
    const res = await t.http.get('/admin/queues', {
      headers: { authorization: basic(admin, TEST_PASSWORD) },
    });
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(verify).not.toHaveBeenCalled();
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
