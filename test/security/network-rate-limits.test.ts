import * as Policies from '../../src/common/throttling/rate-limit.policies';
import { signInLimitsAnswering } from '../support/auth';
import { HttpResponse, expectProblem } from '../support/http';
import { TestApp, bootTestApp } from '../support/test-app';

// `default-network`'s 76,800 a minute made small enough for a test to spend: the mechanism is
// tested here, the number in rate-limit.policies.spec.ts (a /56 household's worth of `default`)
jest.mock('../../src/common/throttling/rate-limit.policies', () => {
  const actual = jest.requireActual<typeof Policies>(
    '../../src/common/throttling/rate-limit.policies',
  );
  return {
    ...actual,
    RATE_LIMIT_POLICIES: actual.RATE_LIMIT_POLICIES.map((p) =>
      p.name === 'default-network' ? { ...p, limit: 40 } : p,
    ),
  };
});
/** `default-network`'s limit here. */
const NETWORK_LIMIT =
  Policies.RATE_LIMIT_POLICIES.find((p) => p.name === 'default-network')?.limit ?? 40;

/**
 * The per-IP `default` policy counts an IPv6 client per /64, and one host with a routed /48 (free
 * from a tunnel broker) is 65,536 /64s: it had 65,536 times the budget (cost review). Every route's
 * requests now count per /48 as well (`default-network`, IPv6 only), in Redis by the guards and in
 * memory by the cached reads' hook — which answers before them — and by its counter of requests no
 * route matches; IPv4 clients are counted per address as before.
 */
describe('per-network request limits (IPv6 /48)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp({ env: { RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: '127.0.0.1' } });
    await signInLimitsAnswering(t.http, { 'x-forwarded-for': '10.250.0.1' });
  });
  afterAll(async () => {
    await t?.close();
  });

  const from = (ip: string) => ({ headers: { 'x-forwarded-for': ip } });
  /** The i-th /64 of the /48 `prefix` (`2001:db8:N`). */
  const slash64 = (prefix: string, i: number) => `${prefix}:${(0x1000 + i).toString(16)}::1`;
  /** A request from each of `count` /64s of the /48, one after another; their statuses. */
  async function rotate(
    prefix: string,
    count: number,
    send: (ip: string) => Promise<HttpResponse>,
  ) {
    const statuses = [];
    for (let i = 0; i < count; i++) statuses.push((await send(slash64(prefix, i))).status);
    return statuses;
  }
  const expectRefused = (res: HttpResponse, policy: string) => {
    expectProblem(res, 429, 'RATE_LIMITED');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(res.headers.get('ratelimit-policy')).toContain(`"${policy}";q=${NETWORK_LIMIT};w=60`);
    expect(res.headers.get('ratelimit')).toMatch(new RegExp(`"${policy}";r=0;t=\\d+`));
  };

  it("refuses a /48 rotating through its /64s once the /48's requests are spent, each /64 far under its own; another /48 and an IPv4 client are served, and sign-in and health are not counted per /48", async () => {
    const me = (ip: string) => t.http.get('/v1/me', from(ip));
    expect(await rotate('2001:db8:a1', NETWORK_LIMIT, me)).toEqual(Array(NETWORK_LIMIT).fill(401));
    // a /64 never seen, of the spent /48
    const refused = await me(slash64('2001:db8:a1', NETWORK_LIMIT));
    expectRefused(refused, 'default-network');
    // another /48: its own budget, and each /64 its own `default` as ever
    const other = await me('2001:db8:a2::1');
    expect(other.status).toBe(401);
    expect(other.headers.get('ratelimit-policy')).toBe(
      `"default";q=300;w=60, "default-network";q=${NETWORK_LIMIT};w=60`,
    );
    expect(other.headers.get('ratelimit')).toMatch(
      new RegExp(`^"default";r=299;t=\\d+, "default-network";r=${NETWORK_LIMIT - 1};t=\\d+$`),
    );
    // an IPv4 client: per address only, as before
    const v4 = await me('192.0.2.61');
    expect(v4.status).toBe(401);
    expect(v4.headers.get('ratelimit-policy')).toBe('"default";q=300;w=60');
    // a sign-in from the spent /48 is not refused for it (a neighbour must never lock the owner
    // out), nor is a health probe counted
    const login = await t.http.post(
      '/v1/auth/login',
      { email: 'owner@network.test', password: 'wrong-password' },
      from(slash64('2001:db8:a1', NETWORK_LIMIT + 1)),
    );
    expect(login.status).toBe(401);
    expect(login.headers.get('ratelimit-policy')).not.toContain('network');
    const probe = await t.http.get('/health/live', from(slash64('2001:db8:a1', NETWORK_LIMIT + 2)));
    expect(probe.status).toBe(200);
    expect(probe.headers.get('ratelimit')).toBeNull();
  });

  it("counts a /48's cached reads in memory too (`cached-reads-network`, before the guards run), and its requests no route matches (`unrouted-network`)", async () => {
    const categories = (ip: string) => t.http.get('/v1/categories', from(ip));
    // cached: stored at its second miss
    for (const _ of [1, 2]) expect((await categories('192.0.2.62')).status).toBe(200);
    const hit = await categories('2001:db8:b1:ffff::1');
    expect(hit.headers.get('ratelimit-policy')).toBe(
      `"cached-reads";q=300;w=60, "cached-reads-network";q=${NETWORK_LIMIT};w=60`,
    );
    expect(hit.headers.get('ratelimit')).toMatch(
      new RegExp(
        `^"cached-reads";r=299;t=\\d+, "cached-reads-network";r=${NETWORK_LIMIT - 1};t=\\d+$`,
      ),
    );
    expect(await rotate('2001:db8:b1', NETWORK_LIMIT - 1, categories)).toEqual(
      Array(NETWORK_LIMIT - 1).fill(200),
    );
    expectRefused(await categories(slash64('2001:db8:b1', NETWORK_LIMIT)), 'cached-reads-network');
    expect((await categories('2001:db8:b2::1')).status).toBe(200);
    const v4 = await categories('192.0.2.63');
    expect(v4.status).toBe(200);
    expect(v4.headers.get('ratelimit-policy')).toBe('"cached-reads";q=300;w=60');

    const nowhere = (ip: string) => t.http.get('/no-such-route', from(ip));
    expect(await rotate('2001:db8:c1', NETWORK_LIMIT, nowhere)).toEqual(
      Array(NETWORK_LIMIT).fill(404),
    );
    expectRefused(await nowhere(slash64('2001:db8:c1', NETWORK_LIMIT)), 'unrouted-network');
    expect((await nowhere('2001:db8:c2::1')).status).toBe(404);
  });
});
