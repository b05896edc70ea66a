import { Injectable } from '@nestjs/common';
import { DomainError } from '../common/errors/domain-error';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { normalizeEmail } from '../common/email';
import { passwordEpochOf } from '../users/password-epoch';
import { User, UserRepository } from '../users/user.repository';
import { ChangePasswordDto, UserDto, mapUser } from './dto/auth.dto';
import { PasswordHasher } from './password-hasher';
import type { Role } from './permissions';
import { RefreshTokenRepository } from './refresh-token.repository';
import { PendingRevocations } from './pending-revocations';
import { RevokedSessions } from './revoked-sessions';
import { SecurityEvents } from './security-events';
import { SessionIssuer } from './session-issuer';
import { FailedAttemptLimiter } from '../common/throttling/failed-attempt-limiter';
import { AccountRateLimit } from '../common/throttling/account-rate-limit';

/** Why a password change revoked a session (refresh_token_families.revoked_reason). */
const REVOKED_BY_PASSWORD_CHANGE = 'password-changed';

/** The signed-in user's own account, and provisioning of accounts with a role. */
/**
 * What ensureAccount did (admin:create says it: an email typed wrong, a colleague's, was promoted
 * or had its password reset with the same one line as a new admin — review of the CLIs).
 */
export type AccountChange =
  | { kind: 'created' }
  | { kind: 'unchanged' }
  | { kind: 'role-changed'; from: Role; passwordSet: boolean }
  | { kind: 'password-set' }
  /** registered by someone between ensureAccount's read and its write: its role unknown here */
  | { kind: 'taken-over' };

@Injectable()
export class AccountService {
  constructor(
    private readonly users: UserRepository,
    private readonly refreshTokens: RefreshTokenRepository,
    private readonly hasher: PasswordHasher,
    private readonly events: SecurityEvents,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly revoked: RevokedSessions,
    private readonly signIns: FailedAttemptLimiter,
    private readonly sessions: SessionIssuer,
    private readonly accountLimits: AccountRateLimit,
    private readonly pendingRevocations: PendingRevocations,
  ) {}

  async me(userId: string): Promise<UserDto> {
    const user = await this.users.findById(userId);
    if (!user) throw new DomainError('UNAUTHENTICATED', 'The account no longer exists.');
    return mapUser(user);
  }

  /**
   * Needs the current password; revokes every session (refresh-token family) of the user. The
   * current password is a password guess like a sign-in's: counted per (account, session,
   * client) with login's growing delay and in a ceiling per session, 10 per 15 min
   * (rate-limit.policies.ts signInBuckets 'password-change'; 429 once spent), so a stolen session
   * gets no more than that and cannot spend the owner's — and not in login's buckets, which a
   * stranger fills with wrong logins (from the owner's address too).
   */
  async changePassword(
    userId: string,
    dto: ChangePasswordDto,
    clientIp: string,
    sessionId?: string,
  ): Promise<void> {
    const user = await this.users.findById(userId);
    if (!user) throw new DomainError('UNAUTHENTICATED', 'The account no longer exists.');
    // the account's changes of the day spent: refused before the current password is checked,
    // right or wrong alike — answered only after it (replacePassword's take), a stolen session
    // told the right password (429) from a wrong one (403) at no cost
    await this.accountLimits.refuseIfSpent('password-change-day', userId);
    const verified = await this.signIns.signIn(
      'password-change',
      user.email,
      clientIp,
      // a signed-in session's guesses are capped (per session, above): its argon2 work waits in
      // the gate's priority lane, ahead of strangers' sign-in guesses filling the other one
      async () =>
        (await this.hasher.verify(user.passwordHash, dto.currentPassword, {
          priority: true,
          client: clientIp,
        }))
          ? true
          : null,
      { session: sessionId },
    );
    if (!verified)
      throw new DomainError('CURRENT_PASSWORD_INCORRECT', 'The current password is wrong.');
    // (a change the shop could not make — 503 — gives its day's hit back)
    const hits: string[] = [];
    const hash = await this.replacePassword(user, dto, clientIp, hits).catch((err: unknown) =>
      this.accountLimits.rethrowGivingBackUnserved(hits, err),
    );
    this.signIns.rememberClient(user.email, clientIp, passwordEpochOf(hash));
    await this.accountLimits.newPassword(userId);
  }

  /**
   * The new password's hash written over the one the current password was checked against (see
   * changePassword), counted in the account's changes a day; its sessions revoked. Returns the hash.
   */
  private async replacePassword(
    user: User,
    dto: ChangePasswordDto,
    clientIp: string,
    hits: string[],
  ): Promise<string> {
    const userId = user.id;
    // the account's changes a day (each starts its sign-in and refresh budgets afresh), counted
    // once the current password is right (a spent day was refused before the check: this decides
    // the last one between concurrent changes)
    await this.accountLimits.take('password-change-day', userId, undefined, hits);
    const hash = await this.hasher.hash(dto.newPassword, { priority: true, client: clientIp });
    let checked = user.passwordHash;
    for (let attempt = 1; ; attempt++) {
      const now = this.clock.now();
      let marked: readonly string[] = [];
      // a transaction of its own: the revocation never rides on (and dies with) a caller's one
      const families = await this.tx
        .runOwn(async () => {
          // only over the hash the current password was checked against: of two changes racing
          // with the same old password, the second finds it gone
          if (!(await this.users.setPasswordHash(userId, hash, now, checked, 'new-password')))
            return null;
          // the security event once the change commits, or may have: recorded after a commit
          // seen, a change whose answer was lost (503, the retry then a 401: its session marked)
          // left no trace of a password that had changed
          this.tx.afterCommitOrUnknown(() =>
            this.events.record({ event: 'password_changed', userId, client: clientIp }),
          );
          const revoked = await this.refreshTokens.revokeAllOfUser(
            userId,
            REVOKED_BY_PASSWORD_CHANGE,
            this.revoked.accessTokensValidSince(now),
          );
          marked = revoked;
          await this.revoked.add(revoked); // their access tokens stop working too
          // a process killed before its COMMIT leaves these revocations to the sweeps
          await Promise.all(
            revoked.map((id) =>
              this.pendingRevocations.recordAhead(id, REVOKED_BY_PASSWORD_CHANGE, now),
            ),
          );
          // and the clients that signed in with the old password are no longer the owner's — but
          // the one the owner changed it from (after a sign-in with the new password there, a
          // stranger filling the account's ceiling still cannot keep them out)
          await this.refreshTokens.forgetClients(
            userId,
            this.sessions.clientKeysOf(user.email, clientIp),
          );
          return revoked;
        })
        .catch((err: unknown) => {
          // The sessions marked revoked stay revoked: committed by PendingRevocations, as a
          // logout's. Their marks were left to lapse — the owner's own session refused (its
          // retry of the change a 401), nothing revoked in the database and, an access-token
          // lifetime later, every session back, a thief's too. The owner signs in again with the
          // password it still is, and retries.
          for (const id of marked)
            this.pendingRevocations.revokeFamily(id, REVOKED_BY_PASSWORD_CHANGE, now);
          throw err;
        });
      if (families !== null) break;
      // The hash changed since it was checked: another change (the current password is then no
      // longer right), or a sign-in's rehash of the same password (a new hash of it, the upgrade
      // at an old hash's first sign-in) — checked once more against what is there now.
      const current = attempt === 1 ? await this.users.findById(userId) : null;
      if (
        !current ||
        !(await this.hasher.verify(current.passwordHash, dto.currentPassword, {
          priority: true,
          client: clientIp,
        }))
      ) {
        throw new DomainError('CURRENT_PASSWORD_INCORRECT', 'The current password is wrong.');
      }
      checked = current.passwordHash;
    }
    return hash;
  }

  /**
   * Creates the account with this role and password, or gives an existing one (same email)
   * the role and the password; a changed password or role revokes its sessions. Idempotent: nothing
   * changes when the account already has both. Used by `npm run admin:create` and the demo seed.
   */
  async ensureAccount(
    email: string,
    password: string,
    role: Role,
    name: string,
  ): Promise<UserDto & { change: AccountChange }> {
    const normalized = normalizeEmail(email);
    const existing = await this.users.findByEmail(normalized);
    const samePassword = existing
      ? await this.hasher.verify(existing.passwordHash, password)
      : false;
    if (existing && samePassword && existing.role === role)
      return { ...mapUser(existing), change: { kind: 'unchanged' } };
    const fresh = existing && samePassword ? null : await this.hasher.hash(password);
    const now = this.clock.now();
    let passwordSet = true;
    const user = await this.tx.run(async () => {
      // the hash read is kept only while it is still the account's: changed in between (its
      // owner's password change, and a session opened with the new one), writing it back would
      // undo that change and leave that session alive, promoted — the password is set anew
      // (a sign-in's rehash of the same password meanwhile keeps the epoch: that hash is kept)
      const locked =
        existing && samePassword ? await this.users.lockPassword(existing.id, true) : null;
      const kept =
        locked && locked.passwordEpoch === existing?.passwordEpoch ? locked.passwordHash : null;
      const passwordHash = kept ?? fresh ?? (await this.hasher.hash(password));
      passwordSet = kept === null;
      const upserted = await this.users.upsertWithRole(
        { email: normalized, name, role, passwordHash },
        now,
      );
      // whenever the password is set anew — also for an account that did not exist when read:
      // one registered in between by someone else (its sessions must not survive the promotion) —
      // and whenever the role changes: a session opened as a customer (an old laptop, a lost
      // phone) got the new role at its next refresh, admin's rights without the password asked
      const roleChanged = existing !== null && existing.role !== role;
      const families =
        kept && !roleChanged
          ? []
          : await this.refreshTokens.revokeAllOfUser(
              upserted.id,
              kept ? 'role-changed' : 'password-reset',
              this.revoked.accessTokensValidSince(now),
            );
      await this.revoked.add(families);
      if (!kept) await this.refreshTokens.forgetClients(upserted.id);
      return upserted;
    });
    // an account new to this email: devices marked for it were a deleted account's (as at
    // registration), never this one's
    if (!existing) this.signIns.forgetDevices(normalized);
    return { ...mapUser(user), change: changeMade(existing, user, role, now, passwordSet) };
  }
}

/**
 * What ensureAccount's upsert did, judged from the row it left (review: judged from the read
 * before it, an account registered in between — taken over by the upsert — was said `created`,
 * and one deleted in between `promoted`): a row created by this upsert has its `createdAt`.
 */
function changeMade(
  existing: { role: Role } | null,
  upserted: { createdAt: Date },
  role: Role,
  now: Date,
  passwordSet: boolean,
): AccountChange {
  if (upserted.createdAt.getTime() === now.getTime()) return { kind: 'created' };
  if (!existing) return { kind: 'taken-over' };
  return existing.role !== role
    ? { kind: 'role-changed', from: existing.role, passwordSet }
    : { kind: 'password-set' };
}
