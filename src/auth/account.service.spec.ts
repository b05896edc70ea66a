import { DomainError } from '../common/errors/domain-error';
import type { FailedAttemptLimiter } from '../common/throttling/failed-attempt-limiter';
import type { AccountRateLimit } from '../common/throttling/account-rate-limit';
import type { TransactionHost } from '../database/transaction-host';
import type { User, UserRepository } from '../users/user.repository';
import { AccountService } from './account.service';
import type { PasswordHasher } from './password-hasher';
import type { RefreshTokenRepository } from './refresh-token.repository';
import type { PendingRevocations } from './pending-revocations';
import type { RevokedSessions } from './revoked-sessions';
import type { SecurityEvents } from './security-events';
import type { SessionIssuer } from './session-issuer';
import { mockOf } from '../../test/support/mocks';
import { passwordEpochOf } from '../users/password-epoch';

const NOW = new Date('2026-01-01T10:00:00Z');
const SINCE = new Date('2026-01-01T09:45:00Z');
const user: User = {
  id: 'u-1',
  email: 'a@b.io',
  name: 'A',
  role: 'customer',
  passwordHash: 'old-hash',
  passwordEpoch: 'epoch-of-the-old-passw',
  createdAt: NOW,
  updatedAt: NOW,
};

function setup() {
  const users = mockOf<UserRepository>(
    {
      findById: jest.fn(),
      findByEmail: jest.fn(),
      setPasswordHash: jest.fn().mockResolvedValue(true),
      upsertWithRole: jest.fn(),
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
      revokeAllOfUser: jest.fn().mockResolvedValue(['f-1', 'f-2']),
      forgetClients: jest.fn().mockResolvedValue(undefined),
    },
    'refreshTokens',
  );
  const revoked = mockOf<RevokedSessions>(
    {
      add: jest.fn().mockResolvedValue(undefined),
      accessTokensValidSince: jest.fn(() => SINCE),
    },
    'revoked',
  );
  const hasher = mockOf<PasswordHasher>(
    { hash: jest.fn().mockResolvedValue('new-hash'), verify: jest.fn() },
    'hasher',
  );
  const events = mockOf<SecurityEvents>({ record: jest.fn() }, 'events');
  const tx = mockOf<TransactionHost>(
    {
      run: jest.fn(<T>(work: () => Promise<T>) => work()),
      runOwn: jest.fn(<T>(work: () => Promise<T>) => work()),
      // (committed at once: runOwn() above never fails after its work)
      afterCommitOrUnknown: jest.fn((fn: () => void) => fn()),
    },
    'tx',
  );
  // the real limiter runs `verify` between reserving and settling an attempt
  const signIns = mockOf<FailedAttemptLimiter>(
    {
      signIn: jest.fn(
        (_channel: string, _account: string, _ip: string, verify: () => Promise<unknown>) =>
          verify(),
      ),
      rememberClient: jest.fn(),
      forgetDevices: jest.fn(),
    },
    'signIns',
  );
  const sessions = mockOf<SessionIssuer>(
    {
      clientKeyOf: jest.fn((email: string, ip: string) => `key:${email}:${ip}`),
      clientKeysOf: jest.fn((email: string, ip: string) => [
        `key:${email}:${ip}`,
        `old:${email}:${ip}`,
      ]),
    },
    'sessions',
  );
  const accountLimits = mockOf<AccountRateLimit>(
    {
      take: jest.fn(async () => undefined),
      refuseIfSpent: jest.fn(async () => undefined),
      newPassword: jest.fn(async () => undefined),
      rethrowGivingBackUnserved: jest.fn(async (_hits: string[], err: unknown) => {
        throw err;
      }),
    },
    'accountLimits',
  );
  const pendingRevocations = mockOf<PendingRevocations>(
    { recordAhead: jest.fn(async () => undefined), revokeFamily: jest.fn() },
    'pendingRevocations',
  );
  const service = new AccountService(
    users,
    refreshTokens,
    hasher,
    events,
    tx,
    { now: () => NOW },
    revoked,
    signIns,
    sessions,
    accountLimits,
    pendingRevocations,
  );
  return {
    service,
    users,
    refreshTokens,
    hasher,
    events,
    tx,
    revoked,
    signIns,
    accountLimits,
    pendingRevocations,
  };
}

describe('AccountService', () => {
  it('maps the account for /me without internal fields', async () => {
    const s = setup();
    s.users.findById.mockResolvedValue(user);
    expect(await s.service.me('u-1')).toEqual({
      id: 'u-1',
      email: 'a@b.io',
      name: 'A',
      role: 'customer',
    });
  });

  describe('changePassword', () => {
    it('needs the current password', async () => {
      const s = setup();
      s.users.findById.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(false);
      const err = await s.service
        .changePassword(
          'u-1',
          { currentPassword: 'wrong', newPassword: 'new-password' },
          '10.0.0.1',
        )
        .catch((e: DomainError) => e);
      expect(err).toMatchObject({ code: 'CURRENT_PASSWORD_INCORRECT' });
      expect(s.users.setPasswordHash).not.toHaveBeenCalled();
    });

    it("refuses a right and a wrong current password alike once the account's changes of the day are spent, before checking either", async () => {
      const s = setup();
      s.users.findById.mockResolvedValue(user);
      s.accountLimits.refuseIfSpent.mockRejectedValue(new DomainError('RATE_LIMITED'));
      for (const right of [true, false]) {
        s.hasher.verify.mockResolvedValue(right);
        const err = await s.service
          .changePassword('u-1', { currentPassword: 'pw', newPassword: 'new-password' }, '10.0.0.1')
          .catch((e: DomainError) => e);
        expect(err).toMatchObject({ code: 'RATE_LIMITED' });
      }
      expect(s.accountLimits.refuseIfSpent).toHaveBeenCalledWith('password-change-day', 'u-1');
      expect(s.hasher.verify).not.toHaveBeenCalled();
      expect(s.signIns.signIn).not.toHaveBeenCalled();
      expect(s.users.setPasswordHash).not.toHaveBeenCalled();
    });

    it('stores the new hash and revokes every session of the user', async () => {
      const s = setup();
      s.users.findById.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(true);
      await s.service.changePassword(
        'u-1',
        { currentPassword: 'old', newPassword: 'new-password' },
        '10.0.0.1',
      );
      // the current password counts as a sign-in attempt, in the password change's buckets
      expect(s.signIns.signIn).toHaveBeenCalledWith(
        'password-change',
        user.email,
        '10.0.0.1',
        expect.any(Function),
        { session: undefined },
      );
      // a new password: a new epoch (a rehash would keep it)
      expect(s.users.setPasswordHash).toHaveBeenCalledWith(
        'u-1',
        'new-hash',
        NOW,
        user.passwordHash,
        'new-password',
      );
      expect(s.refreshTokens.revokeAllOfUser).toHaveBeenCalledWith(
        'u-1',
        'password-changed',
        SINCE,
      );
      expect(s.tx.runOwn).toHaveBeenCalledTimes(1); // never joined to a caller's transaction
      expect(s.revoked.add).toHaveBeenCalledWith(['f-1', 'f-2']);
      // the clients that signed in with the old password are no longer the owner's: all but the
      // one it was changed from, which is remembered under the new password
      expect(s.refreshTokens.forgetClients).toHaveBeenCalledWith('u-1', [
        'key:a@b.io:10.0.0.1',
        'old:a@b.io:10.0.0.1', // recorded under the other key of a rotation's roll
      ]);
      expect(s.signIns.rememberClient).toHaveBeenCalledWith(
        user.email,
        '10.0.0.1',
        passwordEpochOf('new-hash'),
      );
      expect(s.events.record).toHaveBeenCalledWith({
        event: 'password_changed',
        userId: 'u-1',
        client: '10.0.0.1',
      });
      // the day of writes a thief may have spent with a session the change ended starts afresh
      expect(s.accountLimits.newPassword).toHaveBeenCalledWith('u-1');
    });

    it("a sign-in's rehash of the same password landing meanwhile does not refuse the right current password", async () => {
      const s = setup();
      const rehashed = { ...user, passwordHash: 'rehashed-same-password' };
      s.users.findById.mockResolvedValueOnce(user).mockResolvedValueOnce(rehashed);
      s.hasher.verify.mockResolvedValue(true);
      s.users.setPasswordHash.mockResolvedValueOnce(false); // the hash checked is gone: rehashed
      await s.service.changePassword(
        'u-1',
        { currentPassword: 'old', newPassword: 'new-password' },
        '10.0.0.1',
      );
      expect(s.hasher.verify).toHaveBeenLastCalledWith('rehashed-same-password', 'old', {
        priority: true,
        client: '10.0.0.1',
      });
      expect(s.users.setPasswordHash.mock.calls.map((c) => c[3])).toEqual([
        user.passwordHash,
        'rehashed-same-password',
      ]);
      expect(s.events.record).toHaveBeenCalledWith({
        event: 'password_changed',
        userId: 'u-1',
        client: '10.0.0.1',
      });
    });

    it('recorded as pending before its COMMIT; a transaction that fails after marking sessions hands each to PendingRevocations, and answers the failure', async () => {
      const s = setup();
      s.users.findById.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(true);
      const change = () =>
        s.service.changePassword(
          'u-1',
          { currentPassword: 'old', newPassword: 'new-password' },
          '10.0.0.1',
        );
      await change();
      // (a process killed before its COMMIT leaves them to the sweeps)
      expect(s.pendingRevocations.recordAhead.mock.calls).toEqual([
        ['f-1', 'password-changed', NOW],
        ['f-2', 'password-changed', NOW],
      ]);
      expect(s.pendingRevocations.revokeFamily).not.toHaveBeenCalled();
      // the database gone at the transaction's last statement
      const lost = new DomainError('SERVICE_UNAVAILABLE', 'The database is unavailable.');
      s.refreshTokens.forgetClients.mockRejectedValueOnce(lost);
      await expect(change()).rejects.toBe(lost);
      expect(s.pendingRevocations.revokeFamily.mock.calls).toEqual([
        ['f-1', 'password-changed', NOW],
        ['f-2', 'password-changed', NOW],
      ]);
      // failing before any session was marked: nothing handed over
      s.pendingRevocations.revokeFamily.mockClear();
      s.refreshTokens.revokeAllOfUser.mockRejectedValueOnce(lost);
      await expect(change()).rejects.toBe(lost);
      expect(s.pendingRevocations.revokeFamily).not.toHaveBeenCalled();
    });

    it('another change landing meanwhile (the current password no longer right) still refuses', async () => {
      const s = setup();
      s.users.findById
        .mockResolvedValueOnce(user)
        .mockResolvedValueOnce({ ...user, passwordHash: 'someone-elses-new' });
      s.hasher.verify.mockResolvedValueOnce(true).mockResolvedValueOnce(false);
      s.users.setPasswordHash.mockResolvedValueOnce(false);
      const err = await s.service
        .changePassword('u-1', { currentPassword: 'old', newPassword: 'new-password' }, '10.0.0.1')
        .catch((e: DomainError) => e);
      expect(err).toMatchObject({ code: 'CURRENT_PASSWORD_INCORRECT' });
      expect(s.users.setPasswordHash).toHaveBeenCalledTimes(1);
      expect(s.revoked.add).not.toHaveBeenCalled();
    });
  });

  describe('ensureAccount', () => {
    it('creates the account with the role', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(null);
      s.users.upsertWithRole.mockResolvedValue({ ...user, email: 'boss@x.io', role: 'admin' });
      const res = await s.service.ensureAccount(' Boss@X.io ', 'boss-password', 'admin', 'Boss');
      expect(s.users.upsertWithRole).toHaveBeenCalledWith(
        { email: 'boss@x.io', name: 'Boss', role: 'admin', passwordHash: 'new-hash' },
        NOW,
      );
      expect(res.role).toBe('admin');
      expect(res.change).toEqual({ kind: 'created' });
      // no sessions to end for a new account — unless one registered it in between (the
      // upsert then promoted that account): so its sessions are always revoked
      expect(s.refreshTokens.revokeAllOfUser).toHaveBeenCalledWith('u-1', 'password-reset', SINCE);
    });

    it('says an account registered between its read and its write was taken over, not created (review)', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(null);
      const earlier = new Date(NOW.getTime() - 1_000);
      s.users.upsertWithRole.mockResolvedValue({ ...user, role: 'admin', createdAt: earlier });
      const res = await s.service.ensureAccount('a@b.io', 'boss-password', 'admin', 'A');
      expect(res.change).toEqual({ kind: 'taken-over' });
      expect(s.refreshTokens.revokeAllOfUser).toHaveBeenCalledWith('u-1', 'password-reset', SINCE);
    });

    it('changes nothing when the account already has the role and the password', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue({ ...user, role: 'admin' });
      s.hasher.verify.mockResolvedValue(true);
      await s.service.ensureAccount('a@b.io', 'same', 'admin', 'A');
      expect(s.users.upsertWithRole).not.toHaveBeenCalled();
      expect(s.hasher.hash).not.toHaveBeenCalled();
    });

    it('promotes keeping the password hash when the password is unchanged, ending the sessions opened under the old role', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(true);
      s.users.upsertWithRole.mockResolvedValue({
        ...user,
        role: 'admin',
        createdAt: new Date(NOW.getTime() - 1_000),
      });
      s.refreshTokens.revokeAllOfUser.mockResolvedValue(['fam-laptop']);
      const res = await s.service.ensureAccount('a@b.io', 'same', 'admin', 'A');
      expect(res.change).toEqual({ kind: 'role-changed', from: 'customer', passwordSet: false });
      // the hash kept, and with it the password's epoch
      expect(s.users.upsertWithRole).toHaveBeenCalledWith(
        expect.objectContaining({ passwordHash: 'old-hash' }),
        NOW,
      );
      // a customer's session (an old laptop, a lost phone) would otherwise refresh into admin
      expect(s.refreshTokens.revokeAllOfUser).toHaveBeenCalledWith(
        user.id,
        'role-changed',
        expect.any(Date),
      );
      expect(s.revoked.add).toHaveBeenCalledWith(['fam-laptop']);
      // the password is the same: its clients stay the owner's
      expect(s.refreshTokens.forgetClients).not.toHaveBeenCalled();
    });

    it("keeps the password when a sign-in's rehash of it landed between the read and the promotion (same epoch): no reset", async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(true);
      s.users.lockPassword.mockResolvedValue({
        passwordHash: 'rehashed-same-password',
        passwordEpoch: user.passwordEpoch,
        role: 'customer',
      });
      s.users.upsertWithRole.mockResolvedValue({
        ...user,
        role: 'admin',
        passwordHash: 'rehashed-same-password',
      });
      await s.service.ensureAccount('a@b.io', 'same', 'admin', 'A');
      expect(s.hasher.hash).not.toHaveBeenCalled();
      expect(s.users.upsertWithRole).toHaveBeenCalledWith(
        expect.objectContaining({ passwordHash: 'rehashed-same-password' }),
        NOW,
      );
      expect(s.refreshTokens.revokeAllOfUser).toHaveBeenCalledWith('u-1', 'role-changed', SINCE);
      expect(s.refreshTokens.forgetClients).not.toHaveBeenCalled();
    });

    it('sets the password anew, revoking sessions, when it changed between the read and the promotion', async () => {
      // the owner changed their password (and signed in with the new one) meanwhile: the hash
      // read must not be written back, nor the session opened with the new password survive
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(true);
      s.users.lockPassword.mockResolvedValue({
        passwordHash: 'changed-meanwhile',
        passwordEpoch: 'epoch-of-a-new-passwor',
        role: 'customer',
      });
      s.users.upsertWithRole.mockResolvedValue({
        ...user,
        role: 'admin',
        passwordHash: 'new-hash',
        createdAt: new Date(NOW.getTime() - 1_000),
      });
      const res = await s.service.ensureAccount('a@b.io', 'same', 'admin', 'A');
      // (the password was the same when read, but is set anew: said so — second review)
      expect(res.change).toEqual({ kind: 'role-changed', from: 'customer', passwordSet: true });
      expect(s.users.lockPassword).toHaveBeenCalledWith('u-1', true);
      expect(s.users.upsertWithRole).toHaveBeenCalledWith(
        expect.objectContaining({ passwordHash: 'new-hash' }),
        NOW,
      );
      expect(s.refreshTokens.revokeAllOfUser).toHaveBeenCalledWith('u-1', 'password-reset', SINCE);
      expect(s.revoked.add).toHaveBeenCalledWith(['f-1', 'f-2']);
    });

    it('revokes the sessions of an existing account whose password it resets', async () => {
      const s = setup();
      s.users.findByEmail.mockResolvedValue(user);
      s.hasher.verify.mockResolvedValue(false);
      s.users.upsertWithRole.mockResolvedValue({
        ...user,
        role: 'admin',
        passwordHash: 'new-hash',
      });
      await s.service.ensureAccount('a@b.io', 'different', 'admin', 'A');
      expect(s.refreshTokens.revokeAllOfUser).toHaveBeenCalledWith('u-1', 'password-reset', SINCE);
      expect(s.revoked.add).toHaveBeenCalledWith(['f-1', 'f-2']);
      expect(s.refreshTokens.forgetClients).toHaveBeenCalledWith('u-1'); // every client: none set it
    });
  });
});
