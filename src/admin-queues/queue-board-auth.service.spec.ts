import { SecurityEvents } from '../auth/security-events';
import type { PasswordHasher } from '../auth/password-hasher';
import type { JwtStrategy } from '../auth/jwt.strategy';
import { Role, permissionsOf } from '../auth/permissions';
import { DomainError } from '../common/errors/domain-error';
import type { User, UserRepository } from '../users/user.repository';
import type { FailedAttemptLimiter } from '../common/throttling/failed-attempt-limiter';
import type { RefreshTokenRepository } from '../auth/refresh-token.repository';
import type { SessionIssuer } from '../auth/session-issuer';
import { BASIC_CACHE_TTL_MS, QueueBoardAuth, parseBasic } from './queue-board-auth.service';
import { mockOf } from '../../test/support/mocks';

const T0 = new Date('2026-01-01T10:00:00Z').getTime();
const admin: User = {
  id: 'u-1',
  email: 'boss@x.io',
  name: 'Boss',
  role: 'admin',
  passwordHash: 'hash',
  passwordEpoch: 'epoch-of-the-password1',
  createdAt: new Date(T0),
  updatedAt: new Date(T0),
};

const principalOf = (userId: string, role: Role) => ({
  userId,
  email: `${userId}@b.io`,
  role,
  permissions: permissionsOf(role),
});

const basic = (credentials: string) => `Basic ${Buffer.from(credentials).toString('base64')}`;

function setup() {
  let now = T0;
  const tokens = mockOf<JwtStrategy>({ verifyAccess: jest.fn() }, 'tokens');
  const users = mockOf<UserRepository>(
    { findByEmail: jest.fn().mockResolvedValue(admin) },
    'users',
  );
  const hasher = mockOf<PasswordHasher>(
    {
      verify: jest.fn().mockResolvedValue(true),
      verifyDummy: jest.fn().mockResolvedValue(false),
    },
    'hasher',
  );
  // the real one's dispatch, over the mocked verifications
  hasher.verifySignIn = jest.fn((account: { passwordHash: string } | null, password: string) =>
    account ? hasher.verify(account.passwordHash, password) : hasher.verifyDummy(password),
  ) as typeof hasher.verifySignIn;
  // the real limiter reserves an attempt, runs `verify`, and keeps it counted when it is null
  const settled: unknown[] = [];
  const signIns = mockOf<FailedAttemptLimiter>(
    {
      signIn: jest.fn(
        async (
          _channel: string,
          _account: string,
          _ip: string,
          verify: (client: { own: boolean }) => Promise<unknown>,
        ) => {
          const result = await verify({ own: false });
          settled.push(result);
          return result;
        },
      ),
    },
    'signIns',
  );
  const sessions = {
    clientKeysOf: () => ['client-key'],
    accountTag: () => 'account-tag',
  } as unknown as SessionIssuer;
  const refreshTokens = { openedFrom: async () => false } as unknown as RefreshTokenRepository;
  const auth = new QueueBoardAuth(
    tokens,
    users,
    hasher,
    { now: () => new Date(now) },
    signIns,
    sessions,
    refreshTokens,
    new SecurityEvents(),
  );
  return { auth, tokens, users, hasher, signIns, settled, advance: (ms: number) => (now += ms) };
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: unknown) => (e instanceof DomainError ? e.code : e),
  );

describe('parseBasic', () => {
  it('splits at the first colon, so passwords may contain colons', () => {
    expect(parseBasic(basic('a@b.io:p:w'))).toEqual({ email: 'a@b.io', password: 'p:w' });
  });

  it('refuses a header without a colon or that is not base64', () => {
    expect(parseBasic(basic('a@b.io'))).toBeNull();
    expect(parseBasic('Basic %%%')).toBeNull();
  });

  it('refuses credentials no account can hold: control characters (a NUL reached PostgreSQL: 400, not 401)', () => {
    expect(parseBasic(basic('a\u0000@b.io:password-12'))).toBeNull();
    expect(parseBasic(basic('a@b.io:pass\u0007word-12'))).toBeNull();
  });
});

describe('QueueBoardAuth', () => {
  it('answers UNAUTHENTICATED without credentials', async () => {
    const s = setup();
    expect(await failure(s.auth.authorize(undefined, '10.0.0.1'))).toBe('UNAUTHENTICATED');
  });

  it('verifies a bearer token like the API guard and requires queues:view', async () => {
    const s = setup();
    s.tokens.verifyAccess.mockResolvedValue(principalOf('u-1', 'admin'));
    expect(await s.auth.authorize('Bearer t0k3n', '10.0.0.1')).toMatchObject({ role: 'admin' });
    expect(s.tokens.verifyAccess).toHaveBeenCalledWith('t0k3n');

    s.tokens.verifyAccess.mockResolvedValue(principalOf('u-2', 'staff'));
    expect(await failure(s.auth.authorize('Bearer t0k3n', '10.0.0.1'))).toBe('FORBIDDEN');
  });

  it('checks Basic credentials with argon2 and normalizes the email', async () => {
    const s = setup();
    const principal = await s.auth.authorize(basic(' Boss@X.io :pw'), '10.0.0.1');
    expect(principal).toMatchObject({ userId: 'u-1', role: 'admin' });
    expect(principal.permissions).toContain('queues:view');
    expect(s.users.findByEmail).toHaveBeenCalledWith('boss@x.io');
    expect(s.hasher.verify).toHaveBeenCalledWith('hash', 'pw');
  });

  it('refuses a wrong password, and an unknown email after the same work', async () => {
    const s = setup();
    s.hasher.verify.mockResolvedValue(false);
    expect(await failure(s.auth.authorize(basic('boss@x.io:nope'), '10.0.0.1'))).toBe(
      'INVALID_CREDENTIALS',
    );
    s.users.findByEmail.mockResolvedValue(null);
    expect(await failure(s.auth.authorize(basic('who@x.io:pw'), '10.0.0.1'))).toBe(
      'INVALID_CREDENTIALS',
    );
    expect(s.hasher.verifyDummy).toHaveBeenCalledWith('pw');
  });

  it("answers a customer's right password exactly like a wrong one, and counts it as a failure", async () => {
    const s = setup();
    s.users.findByEmail.mockResolvedValue({ ...admin, role: 'customer' });
    const right = await s.auth.authorize(basic('boss@x.io:pw'), '10.0.0.1').catch((e) => e);
    s.hasher.verify.mockResolvedValue(false);
    const wrong = await s.auth.authorize(basic('boss@x.io:nope'), '10.0.0.1').catch((e) => e);
    expect(right).toMatchObject({ code: 'INVALID_CREDENTIALS', message: wrong.message });
    expect(s.settled).toEqual([null, null]); // both stay counted
  });

  it('verifies Basic credentials inside a counted queue-board sign-in attempt', async () => {
    const s = setup();
    await s.auth.authorize(basic(' Boss@X.io :pw'), '10.0.0.7');
    expect(s.signIns.signIn).toHaveBeenCalledWith(
      'queue-board',
      'boss@x.io',
      '10.0.0.7',
      expect.any(Function),
      // the account's password now: a client is the admin's own only under the one it signed in with
      { passwordEpoch: 'epoch-of-the-password1', ownClientOnRecord: expect.any(Function) },
    );
    // a refused attempt (429) verifies nothing
    s.signIns.signIn.mockRejectedValueOnce(new DomainError('RATE_LIMITED'));
    s.hasher.verify.mockClear();
    expect(await failure(s.auth.authorize(basic('boss@x.io:other'), '10.0.0.7'))).toBe(
      'RATE_LIMITED',
    );
    expect(s.hasher.verify).not.toHaveBeenCalled();
  });

  it('trusts a verified Basic header for BASIC_CACHE_TTL_MS, then verifies again', async () => {
    const s = setup();
    const header = basic('boss@x.io:pw');
    await s.auth.authorize(header, '10.0.0.1');
    s.advance(BASIC_CACHE_TTL_MS - 1);
    await s.auth.authorize(header, '10.0.0.1');
    expect(s.hasher.verify).toHaveBeenCalledTimes(1);
    s.advance(1);
    await s.auth.authorize(header, '10.0.0.1');
    expect(s.hasher.verify).toHaveBeenCalledTimes(2);
  });

  it('never caches a failure', async () => {
    const s = setup();
    s.hasher.verify.mockResolvedValueOnce(false);
    const header = basic('boss@x.io:pw');
    expect(await failure(s.auth.authorize(header, '10.0.0.1'))).toBe('INVALID_CREDENTIALS');
    expect(await s.auth.authorize(header, '10.0.0.1')).toMatchObject({ userId: 'u-1' });
  });
});
