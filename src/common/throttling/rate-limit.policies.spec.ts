import {
  RATE_LIMIT_POLICIES,
  appliesTo,
  phaseOf,
  policyHeaderItem,
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
    expect(policy('login-account')).toMatchObject({
      limit: 5,
      windowSeconds: 60,
      tracker: 'account',
      scope: 'login',
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
    expect(closed).toEqual(['login-account', 'login-ip', 'password-change', 'register-ip']);
  });

  it('applies unscoped policies everywhere and scoped ones only on their routes', () => {
    expect(appliesTo(policy('default'), undefined)).toBe(true);
    expect(appliesTo(policy('default'), 'login')).toBe(true);
    expect(appliesTo(policy('login-account'), 'login')).toBe(true);
    expect(appliesTo(policy('login-account'), undefined)).toBe(false);
    expect(appliesTo(policy('login-account'), 'register')).toBe(false);
  });

  it('runs client policies before authentication and per-user ones after', () => {
    expect(phaseOf(policy('default'))).toBe('before-auth');
    expect(phaseOf(policy('login-account'))).toBe('before-auth');
    expect(phaseOf(policy('order-create'))).toBe('after-auth');
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

  it('formats IETF RateLimit-Policy and RateLimit items', () => {
    expect(policyHeaderItem('default', 300, 60)).toBe('"default";q=300;w=60');
    expect(stateHeaderItem('default', 299, 42)).toBe('"default";r=299;t=42');
    expect(stateHeaderItem('default', -3, 42)).toBe('"default";r=0;t=42');
  });
});
