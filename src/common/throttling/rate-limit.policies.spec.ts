import {
  BOARD_FAILURES_PER_CLIENT,
  RATE_LIMIT_POLICIES,
  SIGN_IN_DELAY_BASE_MS,
  appliesTo,
  ipTracker,
  networkTracker,
  phaseOf,
  policyHeaderItem,
  progressiveDelayMs,
  signInBuckets,
  PASSWORD_CHANGE_FAILURES_PER_SESSION,
  stateHeaderItem,
  trackerFor,
} from './rate-limit.policies';

const policy = (name: string) => RATE_LIMIT_POLICIES.find((p) => p.name === name)!;

describe('rate-limit policies', () => {
  it('has unique names and the contract limits', () => {
    const names = RATE_LIMIT_POLICIES.map((p) => p.name);
    expect(new Set(names).size).toBe(names.length);
    expect(policy('default')).toMatchObject({
      limit: 300,
      windowSeconds: 60,
      tracker: 'ip',
      failClosed: false,
    });
    // per account, only registration (API.md): failed sign-ins are counted instead (signInBuckets),
    // so that a stranger's requests never lock an owner out of signing in
    expect(RATE_LIMIT_POLICIES.filter((p) => p.tracker === 'account').map((p) => p.name)).toEqual([
      'register-account',
    ]);
    expect(policy('register-account')).toMatchObject({
      limit: 10,
      windowSeconds: 3600,
      scope: 'register',
    });
    expect(policy('login-ip')).toMatchObject({
      limit: 20,
      windowSeconds: 60,
      tracker: 'ip',
      scope: 'login',
    });
    expect(policy('register-ip')).toMatchObject({
      limit: 10,
      windowSeconds: 3600,
      scope: 'register',
    });
    expect(policy('order-create')).toMatchObject({ tracker: 'user', scope: 'order-create' });
  });

  it('fails closed exactly for login, registration and password change', () => {
    const closed = RATE_LIMIT_POLICIES.filter((p) => p.failClosed)
      .map((p) => p.name)
      .sort();
    expect(closed).toEqual([
      'login-ip',
      'password-change',
      'password-change-ip',
      'register-account',
      'register-ip',
      'register-ip-day',
      'register-net',
      'register-net-day',
    ]);
  });

  it('applies unscoped policies everywhere and scoped ones only on their routes', () => {
    expect(appliesTo(policy('default'), undefined)).toBe(true);
    expect(appliesTo(policy('default'), 'login')).toBe(true);
    expect(appliesTo(policy('login-ip'), 'login')).toBe(true);
    expect(appliesTo(policy('login-ip'), undefined)).toBe(false);
    expect(appliesTo(policy('login-ip'), 'register')).toBe(false);
  });

  it('runs client policies before authentication and per-user ones after', () => {
    expect(phaseOf(policy('default'))).toBe('before-auth');
    expect(phaseOf(policy('login-ip'))).toBe('before-auth');
    expect(phaseOf(policy('order-create'))).toBe('after-auth');
    expect(phaseOf(policy('user-writes'))).toBe('after-auth');
    // by address, but after authentication: only a signed-in request reaches a password check
    expect(phaseOf(policy('password-change-ip'))).toBe('after-auth');
  });

  it("counts every other write of a signed-in user per account, and never an anonymous caller's", () => {
    expect(policy('user-writes')).toMatchObject({
      limit: 120,
      windowSeconds: 60,
      writesOnly: true,
      failClosed: false,
    });
    expect(appliesTo(policy('user-writes'), undefined)).toBe(true);
    expect(appliesTo(policy('user-writes'), 'order-create')).toBe(false); // its own budget
    expect(appliesTo(policy('user-writes'), 'password-change')).toBe(false);
    expect(trackerFor('signed-in', { ip: '203.0.113.7', userId: 'u-1' })).toBe('user:u-1');
    expect(trackerFor('signed-in', { ip: '203.0.113.7' })).toBeNull();
    // the day's writes: customers only (staff and admins are not counted)
    expect(policy('user-writes-day')).toMatchObject({
      limit: 2000,
      windowSeconds: 86_400,
      tracker: 'customer',
      writesOnly: true,
      failClosed: false,
    });
    expect(phaseOf(policy('user-writes-day'))).toBe('after-auth');
    expect(appliesTo(policy('user-writes-day'), 'order-create')).toBe(true); // else an order past the cap could be placed, not paid
    expect(appliesTo(policy('user-writes-day'), 'password-change')).toBe(false);
    expect(trackerFor('customer', { ip: '203.0.113.7', userId: 'u-1', role: 'customer' })).toBe(
      'user:u-1',
    );
    expect(trackerFor('customer', { ip: '203.0.113.7', userId: 'u-2', role: 'admin' })).toBeNull();
    expect(trackerFor('customer', { ip: '203.0.113.7' })).toBeNull();
  });

  it('counts an IPv6 /48 as well (registration, failed sign-ins): one host with a routed /48 is not 65,536 clients', () => {
    // a /56's worth of registrations (a home connection's allocation: one household cannot spend
    // its /48 neighbours' budget)
    expect(policy('register-net')).toMatchObject({
      tracker: 'network',
      scope: 'register',
      limit: policy('register-ip').limit * 256,
      windowSeconds: policy('register-ip').windowSeconds,
      failClosed: true,
    });
    expect(phaseOf(policy('register-net'))).toBe('before-auth');
    // no request limit per /48 (ARCHITECTURE.md says why): a /56 would spend it for all its
    // neighbours; the costly work is bounded per /48 instead
    expect(
      RATE_LIMIT_POLICIES.filter((p) => p.tracker === 'network')
        .map((p) => p.name)
        .sort(),
    ).toEqual(['register-net', 'register-net-day']);
    // and per day: 40 an address, a /56 household's worth a /48
    expect(policy('register-ip-day')).toMatchObject({ limit: 40, windowSeconds: 86_400 });
    expect(policy('register-net-day')).toMatchObject({
      tracker: 'network',
      limit: policy('register-ip-day').limit * 256,
      windowSeconds: 86_400,
    });
    const a = trackerFor('network', { ip: '2001:db8:1:2:aaaa::1' });
    expect(a).toBe('net:2001:db8:1::/48');
    expect(trackerFor('network', { ip: '2001:db8:1:ffff::7' })).toBe(a); // another /64 of the /48
    expect(trackerFor('network', { ip: '2001:db8:2::1' })).not.toBe(a);
    // IPv4 (mapped too): the address is the client, no network counted
    expect(trackerFor('network', { ip: '203.0.113.7' })).toBeNull();
    expect(trackerFor('network', { ip: '::ffff:203.0.113.7' })).toBeNull();
    // failed sign-ins with fresh emails: a ceiling per /48 as well, ten clients' worth
    const limits = { failuresPerClient: 5, failuresPerAccount: 100, failuresPerIp: 50 };
    const [, , client, network] = signInBuckets('login', 'a@b.io', '2001:db8:1:2::1', limits);
    expect(network).toMatchObject({ kind: 'window', limit: client.limit * 10 });
    expect(signInBuckets('login', 'x@b.io', '2001:db8:1:3::9', limits)[3].key).toBe(network.key);
    expect(signInBuckets('login', 'a@b.io', '203.0.113.7', limits)).toHaveLength(3);
    // the owner's own client: its pair, and the address's and network's ceilings count it but never
    // refuse it
    const own = signInBuckets('login', 'a@b.io', '2001:db8:1:2::1', limits, true);
    expect(own.map((b) => [b.key.split(':')[0], b.limit])).toEqual([
      ['signin-client', 5],
      ['signin-ip', Number.MAX_SAFE_INTEGER],
      ['signin-net', Number.MAX_SAFE_INTEGER],
    ]);
    expect(own[1].key).toBe(client.key);
  });

  describe('trackerFor', () => {
    it('counts IPv4 clients per address and IPv6 clients per /64', () => {
      expect(trackerFor('ip', { ip: '203.0.113.7' })).toBe('ip:203.0.113.7');
      expect(trackerFor('ip', { ip: '2001:db8:1:2:aaaa::1' })).toBe(
        trackerFor('ip', { ip: '2001:db8:1:2:bbbb::2' }),
      );
      expect(trackerFor('ip', { ip: '2001:db8:1:2::1' })).not.toBe(
        trackerFor('ip', { ip: '2001:db8:1:3::1' }),
      );
      expect(trackerFor('ip', { ip: '::ffff:203.0.113.7' })).toBe('ip:203.0.113.7');
    });

    it('counts accounts by normalized email, and skips a body without one', () => {
      expect(trackerFor('account', { ip: '1.1.1.1', body: { email: ' A@B.io ' } })).toBe(
        'account:a@b.io',
      );
      expect(trackerFor('account', { ip: '1.1.1.1', body: { email: 42 } })).toBeNull();
      expect(trackerFor('account', { ip: '1.1.1.1', body: undefined })).toBeNull();
      expect(trackerFor('account', { ip: '1.1.1.1', body: null })).toBeNull();
    });

    it('counts signed-in users by id, falling back to the IP', () => {
      expect(trackerFor('user', { ip: '1.1.1.1', userId: 'u-1' })).toBe('user:u-1');
      expect(trackerFor('user', { ip: '1.1.1.1' })).toBe('ip:1.1.1.1');
    });
  });

  it("ipTracker: an address as the 'ip' tracker counts it, and a client that has gone (no address left) one shared tracker, no TypeError", () => {
    expect(ipTracker('1.2.3.4')).toBe('ip:1.2.3.4');
    expect(ipTracker('2001:db8:1:2:3:4:5:6')).toBe(trackerFor('ip', { ip: '2001:db8:1:2::9' }));
    expect(ipTracker(undefined as unknown as string)).toBe('ip:gone');
  });

  it("networkTracker: an IPv6 client's /48 as the 'network' tracker counts it; none for IPv4, loopback or a client gone", () => {
    expect(networkTracker('2001:db8:1:2:3:4:5:6')).toBe('net:2001:db8:1::/48');
    expect(networkTracker('2001:db8:1:ffff::9')).toBe(
      trackerFor('network', { ip: '2001:db8:1:2::1' }),
    );
    for (const ip of ['1.2.3.4', '::ffff:1.2.3.4', '::1', undefined as unknown as string])
      expect(networkTracker(ip)).toBeUndefined();
  });

  it('formats IETF RateLimit-Policy and RateLimit items', () => {
    expect(policyHeaderItem('default', 300, 60)).toBe('"default";q=300;w=60');
    expect(stateHeaderItem('default', 299, 42)).toBe('"default";r=299;t=42');
    expect(stateHeaderItem('default', -3, 42)).toBe('"default";r=0;t=42');
  });
});

describe('failed sign-in buckets', () => {
  const limits = { failuresPerClient: 5, failuresPerAccount: 100, failuresPerIp: 50 };

  it('delays progressively from the limit-th failure: base, then doubling, up to the cap', () => {
    const bucket = { limit: 5, baseMs: 1_000, capMs: 15 * 60_000 };
    expect([1, 4, 5, 6, 7, 8].map((f) => progressiveDelayMs(f, bucket))).toEqual([
      0, 0, 1_000, 2_000, 4_000, 8_000,
    ]);
    expect(progressiveDelayMs(20, bucket)).toBe(15 * 60_000);
    expect(progressiveDelayMs(10_000, bucket)).toBe(15 * 60_000);
  });

  it('login: per (account, client) progressive, plus the per-account ceiling', () => {
    const [pair, account] = signInBuckets('login', ' A@B.io ', '203.0.113.7', limits);
    expect(pair).toMatchObject({ kind: 'progressive', limit: 5, baseMs: SIGN_IN_DELAY_BASE_MS });
    expect(account).toMatchObject({ kind: 'window', limit: 100 });
    // normalized email and client; another client of the same account shares only the ceiling
    const [samePair, sameAccount] = signInBuckets('login', 'a@b.io', '::ffff:203.0.113.7', limits);
    expect([samePair.key, sameAccount.key]).toEqual([pair.key, account.key]);
    const [otherPair, otherAccount] = signInBuckets('login', 'a@b.io', '198.51.100.1', limits);
    expect(otherPair.key).not.toBe(pair.key);
    expect(otherAccount.key).toBe(account.key);
    // no email in clear in Redis
    expect(JSON.stringify([pair, account])).not.toContain('a@b.io');
  });

  it("login: the client's ceiling over all accounts (fresh emails each try), not from the account's own clients", () => {
    const [, , ip] = signInBuckets('login', 'a@b.io', '203.0.113.7', limits);
    expect(ip).toMatchObject({ kind: 'window', limit: 50 });
    expect(signInBuckets('login', 'someone-else@b.io', '203.0.113.7', limits)[2].key).toBe(ip.key);
    expect(signInBuckets('login', 'a@b.io', '198.51.100.1', limits)[2].key).not.toBe(ip.key);
    // the owner's own client: counted in the address's ceiling as anyone (a failure at an account
    // used from here moves it as one at any email), never refused by it
    const own = signInBuckets('login', 'a@b.io', '203.0.113.7', limits, true);
    expect(own.map((b) => [b.key.split(':')[0], b.limit])).toEqual([
      ['signin-client', limits.failuresPerClient],
      ['signin-ip', Number.MAX_SAFE_INTEGER],
    ]);
  });

  it("password change: a progressive bucket per (account, session, client) and a ceiling per session, never login's pair or ceiling", () => {
    const [loginPair, loginCeiling] = signInBuckets('login', 'a@b.io', '203.0.113.7', limits);
    const change = (ip: string, session: string) =>
      signInBuckets('password-change', 'a@b.io', ip, limits, false, session);
    const buckets = change('203.0.113.7', 's-1');
    expect(buckets).toHaveLength(2);
    const [pair, ceiling] = buckets;
    // a stranger's wrong logins from the owner's address fill login's pair, not this one
    expect(pair).toMatchObject({ kind: 'progressive', limit: loginPair.limit });
    expect(pair.key).not.toBe(loginPair.key);
    expect(change('203.0.113.7', 's-2')[0].key).not.toBe(pair.key);
    expect(change('198.51.100.1', 's-1')[0].key).not.toBe(pair.key);
    expect(ceiling).toMatchObject({ kind: 'window', limit: PASSWORD_CHANGE_FAILURES_PER_SESSION });
    expect(ceiling.key).not.toBe(loginCeiling.key);
    expect(change('198.51.100.1', 's-1')[1].key).toBe(ceiling.key);
  });

  it('queue board: per client over all accounts, plus the ceiling it shares with login', () => {
    const [client, account] = signInBuckets('queue-board', 'a@b.io', '203.0.113.7', limits);
    expect(client).toMatchObject({ kind: 'window', limit: BOARD_FAILURES_PER_CLIENT });
    expect(signInBuckets('queue-board', 'c@d.io', '203.0.113.7', limits)[0].key).toBe(client.key);
    expect(account.key).toBe(signInBuckets('login', 'a@b.io', '10.0.0.1', limits)[1].key);
    // from the account's own client: login's pair only (not the address's bucket, which anyone
    // behind the address fills)
    const own = signInBuckets('queue-board', 'a@b.io', '203.0.113.7', limits, true);
    expect(own).toEqual([signInBuckets('login', 'a@b.io', '203.0.113.7', limits, true)[0]]);
    expect(own[0]).toMatchObject({ kind: 'progressive', limit: limits.failuresPerClient });
  });

  it("queue board over IPv6: the /48's ceiling it shares with login — each /64 a client of its own, fresh emails, had no bound", () => {
    const board = (ip: string, email: string) =>
      signInBuckets('queue-board', email, ip, limits).map((b) => b.key);
    const [client, , network] = board('2001:db8:77:1::1', 'a@b.io');
    const login = signInBuckets('login', 'z@b.io', '2001:db8:77:ffff::9', limits);
    expect(network).toBe(login.find((b) => b.key.startsWith('signin-net:'))?.key);
    const other = board('2001:db8:77:2::1', 'c@d.io');
    expect(other[0]).not.toBe(client);
    expect(other[2]).toBe(network);
    expect(board('2001:db8:78:1::1', 'a@b.io')[2]).not.toBe(network);
    // IPv4: no network of its own
    expect(board('203.0.113.7', 'a@b.io')).toHaveLength(2);
  });
});
