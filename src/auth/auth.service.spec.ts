import { DomainError } from '../common/errors/domain-error';
import type { AccountRateLimit } from '../common/throttling/account-rate-limit';
import type { FailedAttemptLimiter } from '../common/throttling/failed-attempt-limiter';
import type { TransactionHost } from '../database/transaction-host';
import type { User, UserRepository } from '../users/user.repository';
import { AuthService } from './auth.service';
import type { PendingRevocations } from './pending-revocations';
import type { PasswordHasher } from './password-hasher';
import type { RefreshTokenRepository } from './refresh-token.repository';
import type { RevokedSessions } from './revoked-sessions';
import type { SecurityEvents } from './security-events';
import type { SessionIssuer } from './session-issuer';
import { mockOf } from '../../test/support/mocks';

const NOW = new Date('2026-01-01T10:00:00Z');
const user: User = {
  id: 'u-1',
  email: 'a@b.io',
  name: 'A',
  role: 'customer',
  passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$salt$hash',
  passwordEpoch: 'epoch-of-the-password1',
  createdAt: NOW,
  updatedAt: NOW,
};

function setup() {
  const users = mockOf<UserRepository>(
    {
      create: jest.fn(),
      findByEmail: jest.fn(),
      findById: jest.fn(),
      setPasswordHash: jest.fn().mockResolvedValue(true),
      lockPassword: jest.fn(async () => ({
        passwordHash: user.passwordHash,
        passwordEpoch: user.passwordEpoch,
        role: 'customer',
      })),
    },
    'users',
  );
  const refreshTokens = mockOf<RefreshTokenRepository>(
    {
      spend: jest.fn(),
      revokeFamily: jest.fn(),
      markReuse: jest.fn().mockResolvedValue(true),
      familyOfToken: jest.fn().mockResolvedValue({ familyId: 'f-1', userId: 'u-1', spent: false }),
      lockLiveFamily: jest.fn().mockResolvedValue(true),
    },
    'refreshTokens',
  );
  const revoked = mockOf<RevokedSessions>(
    { add: jest.fn().mockResolvedValue(undefined), isRevoked: jest.fn().mockResolvedValue(false) },
    'revoked',
  );
  const sessions = mockOf<SessionIssuer>(
    {
      open: jest.fn().mockResolvedValue({ familyId: 'f-new', refreshToken: 'r-new' }),
      rotate: jest.fn().mockResolvedValue({ familyId: 'f-1', refreshToken: 'r-next' }),
      hashOf: jest.fn((t: string) => `hash(${t})`),
      clientKeyOf: jest.fn((email: string, ip: string) => `client(${email},${ip})`),
      clientKeysOf: jest.fn((email: string, ip: string) => [`client(${email},${ip})`]),
      accountTag: jest.fn((email: string) => `tag(${email})`),
      deviceOf: jest.fn(() => null),
      newDevice: jest.fn(() => 'device-1'),
      deviceTokenFor: jest.fn((email: string, device: string) => `token(${email},${device})`),
      tokensFor: jest.fn((u: User, s: { refreshToken: string }) =>
        Promise.resolve({
          user: u,
          accessToken: 'a',
          refreshToken: s.refreshToken,
          expiresIn: 900,
        }),
      ),
    },
    'sessions',
  );
  const hasher = mockOf<PasswordHasher>(
    {
      hash: jest.fn().mockResolvedValue('new-hash'),
      verify: jest.fn(),
      verifyDummy: jest.fn().mockResolvedValue(false),
      needsRehash: jest.fn().mockReturnValue(false),
    },
    'hasher',
  );
  // the real one's dispatch, over the mocked verifications
  hasher.verifySignIn = jest.fn((account: { passwordHash: string } | null, password: string) =>
    account ? hasher.verify(account.passwordHash, password) : hasher.verifyDummy(password),
  ) as typeof hasher.verifySignIn;
  const events = mockOf<SecurityEvents>(
    {
      record: jest.fn(),
      // (the sign-in's own outcome: what it records is the e2e tests')
      signIn: jest.fn((_door: unknown, _who: unknown, _client: unknown, attempt: () => unknown) =>
        attempt(),
      ) as unknown as SecurityEvents['signIn'],
    },
    'events',
  );
  const tx = mockOf<TransactionHost>(
    {
      run: jest.fn(<T>(work: () => Promise<T>) => work()),
      runOwn: jest.fn(<T>(work: () => Promise<T>) => work()),
    },
    'tx',
  );
  const clock = { now: () => NOW };
  // the real limiter runs `verify` between reserving and settling an attempt
  const signIns = mockOf<FailedAttemptLimiter>(
    {
      signIn: jest.fn(
        (
          _channel: string,
          _account: string,
          _ip: string,
          verify: (client: { own: boolean }) => Promise<unknown>,
        ) => verify({ own: false }),
      ),
      rememberClient: jest.fn(),
      rememberDevice: jest.fn(),
      forgetDevices: jest.fn(),
    },
    'signIns',
  );
  const pendingRevocations = mockOf<PendingRevocations>(
    { revokeFamily: jest.fn(), recordAhead: jest.fn().mockResolvedValue(undefined) },
    'pendingRevocations',
  );
  /** The account counters taken and not given back, by policy. */
  const counted: string[] = [];
  const accountLimits = mockOf<AccountRateLimit>(
    {
      take: jest.fn(async (policy: string, _u: string, _e?: string, hits?: string[]) => {
        counted.push(policy);
        hits?.push(policy);
      }),
      refuseIfSpent: jest.fn(async () => undefined),
      giveBack: jest.fn(async (hits: string[]) => {
        for (const key of hits.splice(0)) counted.splice(counted.indexOf(key), 1);
      }),
      rethrowGivingBackUnserved: jest.fn(async (_hits: string[], err: unknown) => {
        throw err;
      }),
    },
    'accountLimits',
  );
  const service = new AuthService(
    users,
    refreshTokens,
    sessions,
    hasher,
    events,
    tx,
    clock,
    revoked,
    signIns,
    pendingRevocations,
    accountLimits,
  );
  return {
    service,
    accountLimits,
    counted,
    users,
    refreshTokens,
    sessions,
    hasher,
    events,
    tx,
    revoked,
    signIns,
    pendingRevocations,
  };
}

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: unknown) => (e instanceof DomainError ? e.code : e),
  );

describe('AuthService', () => {
  describe('register', () => {
    it('creates a customer with a normalized email and opens a session in one transaction', async () => {
      const s = setup();
      s.users.create.mockResolvedValue(user);
      const res = await s.service.register(
        { email: ' A@B.io ', password: 'pw-pw-pw-pw', name: 'A' },
        '10.0.0.7',
      );
      expect(s.users.create).toHaveBeenCalledWith({
        email: 'a@b.io',
        name: 'A',
        role: 'customer',
        passwordHash: 'new-hash',
      });
      expect(s.sessions.open).toHaveBeenCalledWith('u-1', NOW, expect.any(String));
      expect(s.tx.run).toHaveBeenCalledTimes(1);
      expect(res.refreshToken).toBe('r-new');
      // the client it registered from is the account's own (the ceiling of failures spares it)
      expect(s.signIns.rememberClient).toHaveBeenCalledWith(
        user.email,
        '10.0.0.7',
        user.passwordEpoch,
      ); // the epoch the new row was given
    });

    it('answers EMAIL_TAKEN when the unique index refuses the email', async () => {
      const s = setup();
      s.users.create.mockResolvedValue(null);
      expect(
        await codeOf(
          s.service.register({ email: 'a@b.io', password: 'pw-pw-pw-pw', name: 'A' }, '10.0.0.7'),
        ),
      ).toBe('EMAIL_TAKEN');
      expect(s.sessions.open).not.toHaveBeenCalled();
    });
  });

  describe('login', () => {
    it('verifies an unknown email against the dummy hash and answers INVALID_CREDENTIALS', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(null);
      const err = await s.service
        .login({ email: 'x@y.io', password: 'guess-guess' }, '10.0.0.1')
        .catch((e: DomainError) => e);
      expect(s.hasher.verifyDummy).toHaveBeenCalledWith('guess-guess');
      expect(s.hasher.verify).not.toHaveBeenCalled();
      expect(err).toMatchObject({ code: 'INVALID_CREDENTIALS' });

      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(false);
      const wrong = await s.service
        .login({ email: 'a@b.io', password: 'guess-guess' }, '10.0.0.1')
        .catch((e: DomainError) => e);
      expect(wrong).toMatchObject({
        code: 'INVALID_CREDENTIALS',
        message: (err as DomainError).message,
      });
      expect(s.sessions.open).not.toHaveBeenCalled();
    });

    it('looks the account up by normalized email', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(null);
      await codeOf(s.service.login({ email: '  A@B.IO ', password: 'x' }, '10.0.0.1'));
      expect(s.users.findByEmail).toHaveBeenCalledWith('a@b.io');
    });

    it('verifies inside a counted sign-in attempt for the account and client', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(false);
      await codeOf(s.service.login({ email: ' A@B.io', password: 'guess-guess' }, '10.0.0.9'));
      expect(s.signIns.signIn).toHaveBeenCalledWith(
        'login',
        'a@b.io',
        '10.0.0.9',
        expect.any(Function),
        // the account's password now: a client is the owner's only under the one it signed in with
        // no device token sent: no device (counted as the address)
        {
          passwordEpoch: user.passwordEpoch,
          ownClientOnRecord: expect.any(Function),
          device: null,
        },
      );
      // a refused attempt (429) verifies nothing
      s.signIns.signIn.mockRejectedValueOnce(new DomainError('RATE_LIMITED'));
      s.hasher.verify.mockClear();
      expect(await codeOf(s.service.login({ email: 'a@b.io', password: 'x' }, '10.0.0.9'))).toBe(
        'RATE_LIMITED',
      );
      expect(s.hasher.verify).not.toHaveBeenCalled();
    });

    it("asks whether the account's day is spent before anything is verified or counted: a spent day refuses a right password and a wrong one alike", async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.accountLimits.refuseIfSpent.mockRejectedValue(new DomainError('RATE_LIMITED'));
      for (const right of [true, false]) {
        s.hasher.verify.mockResolvedValue(right);
        expect(await codeOf(s.service.login({ email: 'a@b.io', password: 'pw' }, '10.0.0.9'))).toBe(
          'RATE_LIMITED',
        );
      }
      expect(s.accountLimits.refuseIfSpent).toHaveBeenCalledWith(
        'login-account-day',
        user.id,
        user.passwordEpoch,
      );
      expect(s.hasher.verify).not.toHaveBeenCalled();
      expect(s.signIns.signIn).not.toHaveBeenCalled();
      expect(s.counted).toEqual([]);
      // an unknown email is asked too (the same round trip), under no account
      s.users.findByEmail.mockResolvedValue(null);
      s.accountLimits.refuseIfSpent.mockResolvedValue(undefined);
      expect(await codeOf(s.service.login({ email: 'x@y.io', password: 'pw' }, '10.0.0.9'))).toBe(
        'INVALID_CREDENTIALS',
      );
      expect(s.accountLimits.refuseIfSpent).toHaveBeenLastCalledWith(
        'login-account-day',
        null,
        undefined,
      );
    });

    it("issues the role read under the session's lock, not the one first read (an admin lowered while the password was verified)", async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue({ ...user, role: 'admin' });
      s.hasher.verify.mockResolvedValue(true);
      s.hasher.needsRehash.mockReturnValue(false);
      s.users.lockPassword.mockResolvedValue({
        passwordHash: user.passwordHash,
        passwordEpoch: user.passwordEpoch,
        role: 'customer',
      });
      const tokens = await s.service.login(
        { email: 'a@b.io', password: 'the-password' },
        '10.0.0.1',
      );
      expect(tokens.user.role).toBe('customer');
      expect(s.sessions.tokensFor).toHaveBeenCalledWith(
        expect.objectContaining({ id: user.id, role: 'customer' }),
        expect.anything(),
      );
    });

    it('reports success to the sign-in limits only once the session committed: a change that won the race counts as a failure', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValueOnce(true).mockResolvedValueOnce(false); // the old password, then the new hash
      s.users.lockPassword.mockResolvedValue({
        passwordHash: 'the-new-hash',
        passwordEpoch: 'epoch-of-a-new-password',
        role: 'customer',
      });
      let answered: unknown = 'not called';
      s.signIns.signIn.mockImplementationOnce(async (_c, _a, _i, verify) => {
        answered = await verify({ own: false });
        return answered;
      });
      expect(
        await codeOf(s.service.login({ email: 'a@b.io', password: 'the-old-one' }, '10.0.0.9')),
      ).toBe('INVALID_CREDENTIALS');
      expect(answered).toBeNull(); // counted as a failed guess, the client not remembered as the owner's
      expect(s.sessions.open).not.toHaveBeenCalled();
    });

    it('re-hashes a password whose hash has weaker parameters', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(true);
      s.hasher.needsRehash.mockReturnValue(true);
      await s.service.login({ email: 'a@b.io', password: 'pw-pw-pw-pw' }, '10.0.0.1');
      expect(s.hasher.hash).toHaveBeenCalledWith('pw-pw-pw-pw', { client: '10.0.0.1' });
      // only over the hash it verified: a change committed meanwhile is never overwritten
      expect(s.users.setPasswordHash).toHaveBeenCalledWith(
        'u-1',
        'new-hash',
        NOW,
        user.passwordHash,
        'rehash',
      );
      // the row locked FOR NO KEY UPDATE for that write (FOR SHARE, two twins' updates deadlocked)
      expect(s.users.lockPassword).toHaveBeenCalledWith('u-1', true);
      // the same password: its epoch stays, and with it every mark of the owner's other clients
      expect(s.signIns.rememberClient).not.toHaveBeenCalled();
      expect(s.signIns.rememberDevice).toHaveBeenCalledWith(
        'a@b.io',
        'device-1',
        user.passwordEpoch,
      );
    });

    it("counts a sign-in with the account's device token as that device, and answers the token back; without one, a new device", async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(true);
      s.hasher.needsRehash.mockReturnValue(false);
      s.sessions.deviceOf.mockImplementation((token: string | null | undefined, email: string) =>
        token === 'token-of-dev-9' && email === 'a@b.io' ? 'dev-9' : null,
      );
      const withToken = await s.service.login(
        { email: 'a@b.io', password: 'pw-pw-pw-pw', deviceToken: 'token-of-dev-9' },
        '10.0.0.1',
      );
      expect(s.signIns.signIn).toHaveBeenCalledWith(
        'login',
        'a@b.io',
        '10.0.0.1',
        expect.any(Function),
        expect.objectContaining({ device: 'dev-9' }),
      );
      expect(withToken.deviceToken).toBe('token(a@b.io,dev-9)');
      // the device is the owner's under the password it signed in with
      expect(s.signIns.rememberDevice).toHaveBeenCalledWith('a@b.io', 'dev-9', user.passwordEpoch);

      const without = await s.service.login(
        { email: 'a@b.io', password: 'pw-pw-pw-pw' },
        '10.0.0.1',
      );
      expect(s.signIns.signIn).toHaveBeenLastCalledWith(
        'login',
        'a@b.io',
        '10.0.0.1',
        expect.any(Function),
        expect.objectContaining({ device: null }),
      );
      expect(without.deviceToken).toBe('token(a@b.io,device-1)');
      expect(s.signIns.rememberDevice).toHaveBeenLastCalledWith(
        'a@b.io',
        'device-1',
        user.passwordEpoch,
      );
      // an unknown email is asked no device (it has none): the same path as no token
      s.users.findByEmail.mockResolvedValue(null);
      s.sessions.deviceOf.mockClear();
      await s.service
        .login(
          { email: 'nobody@b.io', password: 'pw-pw-pw-pw', deviceToken: 'token-of-dev-9' },
          '10.0.0.1',
        )
        .catch(() => undefined);
      expect(s.sessions.deviceOf).not.toHaveBeenCalled();
    });

    it('signs in on the old hash when the rehash cannot be had (argon2 gate full): a verified password is never a 503', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(true);
      s.hasher.needsRehash.mockReturnValue(true);
      s.hasher.hash.mockRejectedValue(new DomainError('SERVICE_UNAVAILABLE', 'busy'));
      const tokens = await s.service.login(
        { email: 'a@b.io', password: 'pw-pw-pw-pw' },
        '10.0.0.1',
      );
      expect(tokens).toHaveProperty('accessToken');
      expect(s.users.setPasswordHash).not.toHaveBeenCalled(); // upgraded at a later sign-in
      expect(s.signIns.rememberClient).not.toHaveBeenCalled(); // the limiter remembers it under the epoch it read
    });

    it('opens no session when the password changed while it was being verified (401)', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(true);
      s.hasher.needsRehash.mockReturnValue(true);
      s.users.lockPassword.mockResolvedValue({
        passwordHash: 'the-new-hash',
        passwordEpoch: 'epoch-of-a-new-password',
        role: 'customer',
      });
      s.hasher.verify.mockResolvedValueOnce(true).mockResolvedValueOnce(false); // not the new password
      expect(
        await codeOf(s.service.login({ email: 'a@b.io', password: 'pw-pw-pw-pw' }, '10.0.0.1')),
      ).toBe('INVALID_CREDENTIALS');
      expect(s.hasher.verify).toHaveBeenLastCalledWith('the-new-hash', 'pw-pw-pw-pw', {
        client: '10.0.0.1',
      });
      expect(s.sessions.open).not.toHaveBeenCalled();
      expect(s.users.setPasswordHash).not.toHaveBeenCalled();
    });

    it('signs in when the hash changed meanwhile but still takes the password (a twin sign-in rehashed it)', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(true);
      s.hasher.needsRehash.mockReturnValue(true);
      s.users.lockPassword.mockResolvedValue({
        passwordHash: 'rehashed-by-the-twin',
        passwordEpoch: user.passwordEpoch,
        role: 'customer',
      });
      // argon2 never runs inside a transaction (it would hold the row lock and a connection)
      let inTransaction = false;
      const verifiedInside: boolean[] = [];
      s.tx.run.mockImplementation(async <T>(work: () => Promise<T>) => {
        inTransaction = true;
        try {
          return await work();
        } finally {
          inTransaction = false;
        }
      });
      s.hasher.verify.mockImplementation(async () => {
        verifiedInside.push(inTransaction);
        return true;
      });
      await s.service.login({ email: 'a@b.io', password: 'pw-pw-pw-pw' }, '10.0.0.1');
      expect(s.sessions.open).toHaveBeenCalledWith('u-1', NOW, expect.any(String));
      expect(s.users.setPasswordHash).not.toHaveBeenCalled(); // the twin's rehash stands
      expect(verifiedInside).toEqual([false, false]);
      expect(s.tx.run).toHaveBeenCalledTimes(2); // the second transaction re-checks the new hash
      // the twin's rehash kept the epoch: nothing to remember anew but this device
      expect(s.signIns.rememberClient).not.toHaveBeenCalled();
      expect(s.signIns.rememberDevice).toHaveBeenCalledWith(
        'a@b.io',
        'device-1',
        user.passwordEpoch,
      );
    });

    it('signs in under the new epoch when the password was set anew to the very one signed in with (a reset meanwhile)', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(true);
      s.hasher.needsRehash.mockReturnValue(false);
      s.users.lockPassword
        .mockResolvedValueOnce({
          passwordHash: 'reset-to-the-same',
          passwordEpoch: 'epoch-of-the-reset-one',
          role: 'customer',
        })
        .mockResolvedValue({
          passwordHash: 'reset-to-the-same',
          passwordEpoch: 'epoch-of-the-reset-one',
          role: 'customer',
        });
      await s.service.login({ email: 'a@b.io', password: 'pw-pw-pw-pw' }, '10.0.0.1');
      expect(s.sessions.open).toHaveBeenCalledTimes(1);
      expect(s.signIns.rememberClient).toHaveBeenCalledWith(
        'a@b.io',
        '10.0.0.1',
        'epoch-of-the-reset-one',
      );
      expect(s.signIns.rememberDevice).toHaveBeenCalledWith(
        'a@b.io',
        'device-1',
        'epoch-of-the-reset-one',
      );
    });

    it('leaves a current hash alone', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(true);
      await s.service.login({ email: 'a@b.io', password: 'pw-pw-pw-pw' }, '10.0.0.1');
      expect(s.users.setPasswordHash).not.toHaveBeenCalled();
      expect(s.sessions.open).toHaveBeenCalledWith('u-1', NOW, expect.any(String));
    });
  });

  describe('refresh', () => {
    it('spends the token by its hash and rotates within the same family', async () => {
      const s = setup();
      const familyEndsAt = new Date(Date.now() + 86_400_000);
      s.refreshTokens.spend.mockResolvedValue({
        status: 'spent',
        familyId: 'f-1',
        userId: 'u-1',
        familyEndsAt,
      });
      s.users.findById.mockResolvedValue(user);
      const res = await s.service.refresh('r-old', '203.0.113.9');
      expect(s.refreshTokens.spend).toHaveBeenCalledWith('hash(r-old)', NOW);
      // (the family's end: the access token issued with the next one never outlives it)
      expect(s.sessions.rotate).toHaveBeenCalledWith('f-1', NOW, familyEndsAt);
      expect(res.refreshToken).toBe('r-next');
      expect(s.refreshTokens.revokeFamily).not.toHaveBeenCalled();
      expect(s.revoked.add).not.toHaveBeenCalled();
    });

    it('a rerun of its transaction (the connection died before COMMIT) counts the account once, not once per attempt', async () => {
      const s = setup();
      s.refreshTokens.spend.mockResolvedValue({
        status: 'spent',
        familyId: 'f-1',
        userId: 'u-1',
        familyEndsAt: new Date(Date.now() + 86_400_000),
      });
      s.users.findById.mockResolvedValue(user);
      // TransactionHost runs the work again: the first attempt's writes rolled back with it
      s.tx.runOwn.mockImplementationOnce(async <T>(work: () => Promise<T>) => {
        await work();
        return work();
      });
      expect((await s.service.refresh('r-old', '203.0.113.9')).refreshToken).toBe('r-next');
      expect(s.counted.sort()).toEqual(['refresh-account', 'refresh-account-day']);
    });

    it('issues nothing when the family was revoked while the token was being spent (a password change)', async () => {
      const s = setup();
      s.refreshTokens.spend.mockResolvedValue({
        status: 'spent',
        familyId: 'f-1',
        userId: 'u-1',
        familyEndsAt: new Date(Date.now() + 86_400_000),
      });
      s.refreshTokens.lockLiveFamily.mockResolvedValue(false);
      expect(await codeOf(s.service.refresh('r-old', '203.0.113.9'))).toBe('REFRESH_TOKEN_INVALID');
      expect(s.refreshTokens.lockLiveFamily).toHaveBeenCalledWith('f-1');
      expect(s.sessions.rotate).not.toHaveBeenCalled();
    });

    it('issues nothing for a family marked revoked whose revocation has not committed yet', async () => {
      const s = setup();
      s.refreshTokens.spend.mockResolvedValue({
        status: 'spent',
        familyId: 'f-1',
        userId: 'u-1',
        familyEndsAt: new Date(Date.now() + 86_400_000),
      });
      s.revoked.isRevoked.mockResolvedValue(true);
      expect(await codeOf(s.service.refresh('r-old', '203.0.113.9'))).toBe('REFRESH_TOKEN_INVALID');
      expect(s.revoked.isRevoked).toHaveBeenCalledWith('f-1');
      expect(s.sessions.rotate).not.toHaveBeenCalled();
    });

    it('revokes the family, records a security event and answers REFRESH_TOKEN_REUSED on reuse', async () => {
      const s = setup();
      s.refreshTokens.spend.mockResolvedValue({ status: 'reused', familyId: 'f-1', userId: 'u-1' });
      expect(await codeOf(s.service.refresh('r-old', '203.0.113.9'))).toBe('REFRESH_TOKEN_REUSED');
      expect(s.refreshTokens.markReuse).toHaveBeenCalledWith('f-1');
      expect(s.tx.runOwn).toHaveBeenCalledTimes(1); // never joined to a caller's transaction
      expect(s.revoked.add).toHaveBeenCalledWith(['f-1']); // its access tokens die too
      expect(s.events.record).toHaveBeenCalledWith({
        event: 'refresh_token_reuse',
        userId: 'u-1',
        familyId: 'f-1',
        client: '203.0.113.9',
      });
      expect(s.sessions.rotate).not.toHaveBeenCalled();
    });

    it('a replay of a spent token whose reuse was recorded before answers REFRESH_TOKEN_REUSED quietly: no second alarm, marks or writes', async () => {
      const s = setup();
      s.refreshTokens.spend.mockResolvedValue({ status: 'reused', familyId: 'f-1', userId: 'u-1' });
      s.refreshTokens.markReuse.mockResolvedValue(false); // (recorded by the first reuse)
      expect(await codeOf(s.service.refresh('r-old', '203.0.113.9'))).toBe('REFRESH_TOKEN_REUSED');
      expect(s.revoked.add).not.toHaveBeenCalled();
      expect(s.pendingRevocations.recordAhead).not.toHaveBeenCalled();
      expect(s.events.record).not.toHaveBeenCalled();
    });

    it('a reuse whose revocation failed to commit still answers REFRESH_TOKEN_REUSED and leaves the revocation to be retried', async () => {
      const s = setup();
      s.refreshTokens.spend.mockResolvedValue({ status: 'reused', familyId: 'f-1', userId: 'u-1' });
      s.tx.runOwn.mockImplementationOnce(async <T>(work: () => Promise<T>) => {
        await work();
        throw new Error('Connection terminated unexpectedly'); // the COMMIT
      });
      expect(await codeOf(s.service.refresh('r-old', '203.0.113.9'))).toBe('REFRESH_TOKEN_REUSED');
      expect(s.pendingRevocations.revokeFamily).toHaveBeenCalledWith('f-1', 'reuse-detected', NOW);
      expect(s.events.record).toHaveBeenCalledWith({
        event: 'refresh_token_reuse',
        userId: 'u-1',
        familyId: 'f-1',
        client: '203.0.113.9',
      });
    });

    it('a refresh that failed before any reuse was seen fails as it did, leaving nothing to retry', async () => {
      const s = setup();
      s.refreshTokens.spend.mockRejectedValue(new Error('Connection terminated unexpectedly'));
      expect(await codeOf(s.service.refresh('r-old', '203.0.113.9'))).toEqual(
        new Error('Connection terminated unexpectedly'),
      );
      expect(s.pendingRevocations.revokeFamily).not.toHaveBeenCalled();
    });

    it('answers REFRESH_TOKEN_INVALID for unknown, expired or revoked tokens, revoking nothing', async () => {
      const s = setup();
      s.refreshTokens.spend.mockResolvedValue({ status: 'invalid' });
      expect(await codeOf(s.service.refresh('nope', '203.0.113.9'))).toBe('REFRESH_TOKEN_INVALID');
      expect(s.refreshTokens.revokeFamily).not.toHaveBeenCalled();
      expect(s.events.record).not.toHaveBeenCalled();
    });
  });

  it('logout revokes the family of the presented token and its access tokens', async () => {
    const s = setup();
    await s.service.logout('r-1', '203.0.113.9');
    expect(s.refreshTokens.familyOfToken).toHaveBeenCalledWith('hash(r-1)');
    expect(s.refreshTokens.revokeFamily).toHaveBeenCalledWith('f-1', 'logout');
    expect(s.tx.runOwn).toHaveBeenCalledTimes(1);
    expect(s.revoked.add).toHaveBeenCalledWith(['f-1']);
    expect(s.pendingRevocations.revokeFamily).not.toHaveBeenCalled();
  });

  it('logout with a spent token is a reuse: the family revoked as reuse-detected, the theft logged once', async () => {
    const s = setup();
    s.refreshTokens.familyOfToken.mockResolvedValue({
      familyId: 'f-1',
      userId: 'u-1',
      spent: true,
    });
    await s.service.logout('r-1', '203.0.113.9');
    expect(s.refreshTokens.markReuse).toHaveBeenCalledWith('f-1');
    expect(s.refreshTokens.revokeFamily).not.toHaveBeenCalled();
    expect(s.revoked.add).toHaveBeenCalledWith(['f-1']);
    expect(s.events.record).toHaveBeenCalledWith({
      event: 'refresh_token_reuse',
      userId: 'u-1',
      familyId: 'f-1',
      client: '203.0.113.9',
    });
    // a reuse recorded before: quietly (a replay in a loop)
    s.refreshTokens.markReuse.mockResolvedValue(false);
    s.events.record.mockClear();
    await s.service.logout('r-1', '203.0.113.9');
    expect(s.events.record).not.toHaveBeenCalled();
  });

  it('a logout reuse whose revocation fails to commit is still a reuse: handed to PendingRevocations as reuse-detected, and its alarm recorded', async () => {
    const s = setup();
    s.refreshTokens.familyOfToken.mockResolvedValue({
      familyId: 'f-1',
      userId: 'u-1',
      spent: true,
    });
    s.revoked.add.mockRejectedValueOnce(new Error('Redis down'));
    await s.service.logout('r-1', '203.0.113.9');
    expect(s.pendingRevocations.revokeFamily).toHaveBeenCalledWith('f-1', 'reuse-detected', NOW);
    expect(s.events.record).toHaveBeenCalledWith(
      expect.objectContaining({ event: 'refresh_token_reuse', familyId: 'f-1', userId: 'u-1' }),
    );
  });

  it('a logout whose revocation fails to commit hands it to PendingRevocations and still answers', async () => {
    const s = setup();
    s.refreshTokens.revokeFamily.mockRejectedValue(new Error('Connection terminated unexpectedly'));
    await s.service.logout('r-1', '203.0.113.9');
    expect(s.pendingRevocations.revokeFamily).toHaveBeenCalledWith('f-1', 'logout', NOW);
  });

  it('a logout that fails before its token is found fails (nothing known to revoke)', async () => {
    const s = setup();
    s.refreshTokens.familyOfToken.mockRejectedValue(
      new Error('Connection terminated unexpectedly'),
    );
    await expect(s.service.logout('r-1', '203.0.113.9')).rejects.toThrow('Connection terminated');
    expect(s.pendingRevocations.revokeFamily).not.toHaveBeenCalled();
  });
});
