import { Injectable } from '@nestjs/common';
import { DomainError } from '../common/errors/domain-error';
import { Clock } from '../common/time/clock';
import { AccountRateLimit } from '../common/throttling/account-rate-limit';
import { FailedAttemptLimiter } from '../common/throttling/failed-attempt-limiter';
import { TransactionHost } from '../database/transaction-host';
import { normalizeEmail } from '../common/email';
import { User, UserRepository } from '../users/user.repository';
import { LoginDto, RegisterDto, TokensDto } from './dto/auth.dto';
import { PasswordHasher } from './password-hasher';
import { PendingRevocations } from './pending-revocations';
import { RefreshTokenRepository, SpendOutcome } from './refresh-token.repository';
import { RevokedSessions } from './revoked-sessions';
import { SecurityEvents } from './security-events';
import { Session, SessionIssuer } from './session-issuer';

const invalidRefresh = () =>
  new DomainError(
    'REFRESH_TOKEN_INVALID',
    'The refresh token is invalid or expired; sign in again.',
  );

/** Times a sign-in re-checks a password hash that changed under it before giving up. */
const MAX_HASH_RECHECKS = 3;

/** The revocation reason of a logout with this token: a spent one is a reuse. */
const reasonOf = (token: { spent: boolean }) => (token.spent ? 'reuse-detected' : 'logout');

/**
 * Sessions: register, login, refresh rotation with reuse detection, logout.
 *
 * Refresh rotation: every refresh spends the presented token and issues the next one of the
 * same family. Presenting a token that was already spent means a copy exists, so the whole
 * family is revoked (the copy's holder and the owner both have to sign in again), the caller
 * gets 401 REFRESH_TOKEN_REUSED, and a security event is recorded.
 *
 * Concurrent refreshes with one token: the guarded UPDATE in RefreshTokenRepository.spend()
 * lets exactly one of them win (200, new pair). Every other one finds the token spent, which the
 * server cannot tell apart from a thief replaying it, so it is treated as reuse: 401
 * REFRESH_TOKEN_REUSED and the family, including the winner's new refresh token, is revoked.
 * Clients must therefore keep at most one refresh in flight per session. Access tokens carry
 * their family (`fam`): once it is revoked (logout, reuse, password change) they are refused
 * within the same request cycle (RevokedSessions), not only when they expire.
 *
 * Password hashing (argon2, CPU-bound) always happens before a transaction is opened, and
 * revocations run in a transaction of their own (TransactionHost.runOwn), so the failure of
 * whatever surrounds them never rolls a revocation back. The controller ignores Idempotency-Key
 * (@IgnoreIdempotencyKey): no token-bearing response is ever stored.
 */
@Injectable()
export class AuthService {
  constructor(
    private readonly users: UserRepository,
    private readonly refreshTokens: RefreshTokenRepository,
    private readonly sessions: SessionIssuer,
    private readonly hasher: PasswordHasher,
    private readonly events: SecurityEvents,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly revoked: RevokedSessions,
    private readonly signIns: FailedAttemptLimiter,
    private readonly pendingRevocations: PendingRevocations,
    private readonly accountLimits: AccountRateLimit,
  ) {}

  /**
   * A new customer account and its first session. 409 EMAIL_TAKEN, also under a race.
   * `clientIp` becomes one of the account's own clients (FailedAttemptLimiter#rememberClient).
   */
  async register(dto: RegisterDto, clientIp: string): Promise<TokensDto> {
    const passwordHash = await this.hasher.hash(dto.password, { client: clientIp }); // CPU-bound: before the transaction
    const now = this.clock.now();
    const { user, session } = await this.tx.run(async () => {
      const created = await this.users.create({
        email: normalizeEmail(dto.email),
        name: dto.name,
        role: 'customer',
        passwordHash,
      });
      if (!created) throw new DomainError('EMAIL_TAKEN', 'An account with this email exists.');
      const session = await this.sessions.open(
        created.id,
        now,
        this.sessions.clientKeyOf(created.email, clientIp),
      );
      return { user: created, session };
    });
    this.signIns.rememberClient(user.email, clientIp, user.passwordEpoch);
    // a new account: devices marked for its email were a deleted account's (an erasure, then
    // someone registering the address), never this owner's (sent first, on the same connection)
    this.signIns.forgetDevices(user.email);
    const device = this.sessions.newDevice();
    this.signIns.rememberDevice(user.email, device, user.passwordEpoch);
    const tokens = await this.sessions.tokensFor(user, session);
    return { ...tokens, deviceToken: this.sessions.deviceTokenFor(user.email, device) };
  }

  /**
   * The same 401 INVALID_CREDENTIALS for an unknown email and a wrong password, after the same
   * work (an unknown email is verified against a dummy hash). Failures are limited per (account,
   * client) with a growing delay and per account overall (429 RATE_LIMITED with Retry-After):
   * a stranger elsewhere never locks the owner's own client out — nor, by failing, one behind the
   * same address from a device that sends its device token (SessionIssuer#deviceTokenFor). A
   * hash made with parameters weaker than today's is replaced by a new one.
   */
  async login(dto: LoginDto, clientIp: string): Promise<TokensDto> {
    const email = normalizeEmail(dto.email);
    // counted (in Redis, outside any transaction) before the password is verified; a success —
    // reported only once the session has committed — gives the attempt back and remembers the
    // client as the owner's; a failure stays counted although this request fails
    const clientKey = this.sessions.clientKeyOf(email, clientIp);
    // read first (the same read for an unknown email): whether the client is the owner's
    // depends on the password it signed in with being the account's still
    const found = await this.users.findByEmail(email);
    // the account's device token: this device's failures are its own (signInBuckets) — asked
    // only of an account that exists (an unknown one has no devices)
    const device = found ? this.sessions.deviceOf(dto.deviceToken, email) : null;
    const subject = { account: this.sessions.accountTag(email), user: found };
    const signedIn = await this.events.signIn(
      'login',
      subject,
      clientIp,
      async () => {
        // The account's sign-ins of the day spent: refused before the password is checked, right
        // or wrong alike. Answered only after the check (openSession's take), the right password
        // got 429 and a wrong one 401 — handed back unused, so guessing there cost nothing. What
        // it tells instead: that the email is an account whose password-holder signed in 500
        // times today — an unknown email has no day to spend (asked all the same, one round
        // trip, never refused) — which registration's EMAIL_TAKEN tells of any account anyway.
        await this.accountLimits.refuseIfSpent(
          'login-account-day',
          found?.id ?? null,
          found?.passwordEpoch,
        );
        return this.signIns.signIn(
          'login',
          email,
          clientIp,
          async (client) => {
            // the owner's own client ahead of strangers' guesses in the argon2 queue
            const ok = await this.hasher.verifySignIn(found, dto.password, {
              priority: client.own,
              client: clientIp,
            });
            if (!found || !ok) return null;
            // (a sign-in the shop could not open — 503 — gives its day's hit back)
            const hits: string[] = [];
            const opened = await this.openSession(
              found,
              dto.password,
              clientKey,
              clientIp,
              hits,
            ).catch((err: unknown) => this.accountLimits.rethrowGivingBackUnserved(hits, err));
            return opened ? { user: { ...found, role: opened.role }, ...opened } : null;
          },
          // Redis's marks of the owner's clients may be gone: the sessions on record still know them
          {
            passwordEpoch: found?.passwordEpoch ?? null,
            ownClientOnRecord: () =>
              this.refreshTokens.openedFrom(this.sessions.clientKeysOf(email, clientIp)),
            device,
          },
        );
      },
      (result) => result.user,
    );
    if (!signedIn) throw new DomainError('INVALID_CREDENTIALS', 'Email or password is wrong.');
    // a password set anew meanwhile (reset to the very one signed in with): the client is the
    // owner's under it (a rehash — parameters raised, a twin's upgrade — keeps the epoch)
    if (signedIn.passwordEpoch !== found?.passwordEpoch)
      this.signIns.rememberClient(email, clientIp, signedIn.passwordEpoch);
    // a valid token is answered back as it is (the device keeps its own failure count), else a
    // new device's; either is one of the owner's own under the password it signed in with
    const signedInDevice = device ?? this.sessions.newDevice();
    this.signIns.rememberDevice(email, signedInDevice, signedIn.passwordEpoch);
    const tokens = await this.sessions.tokensFor(signedIn.user, signedIn.session);
    return { ...tokens, deviceToken: this.sessions.deviceTokenFor(email, signedInDevice) };
  }

  /**
   * The session of a sign-in whose password was verified against `user.passwordHash`, or null
   * when that password is no longer the account's. A hash made with parameters weaker than
   * today's (or before passwords were normalized) is replaced by a new one — best effort: with
   * the argon2 gate full, the sign-in goes on with the old hash (upgraded at a later one), never
   * a 503 for a password already verified.
   */
  private async openSession(
    user: User,
    password: string,
    clientKey: string,
    clientIp: string,
    hits: string[],
  ): Promise<{ session: Session; passwordEpoch: string; role: User['role'] } | null> {
    // one account's sign-ins a day (each keeps its rows for 30 days after its session ends),
    // taken once the password is right: a spent day was refused before the check (login), and
    // this decides the last unit between concurrent sign-ins — a 429 here gives the failure
    // buckets back (the password was right)
    await this.accountLimits.take('login-account-day', user.id, user.passwordEpoch, hits);
    const upgraded = this.hasher.needsRehash(user.passwordHash)
      ? await this.hasher.hash(password, { client: clientIp }).catch(() => null)
      : null;
    let verified = user.passwordHash;
    for (let attempt = 0; attempt < MAX_HASH_RECHECKS; attempt++) {
      const now = this.clock.now();
      const outcome = await this.tx.run(
        async (): Promise<
          | { changed: string | null }
          | { session: Session; passwordEpoch: string; role: User['role'] }
        > => {
          // The password was verified against `verified`. A password change that committed since
          // revoked every session of the account — this one must not open after it: the hash is
          // read again, locked against a change until this commits.
          // (FOR NO KEY UPDATE when this transaction writes the upgrade: two sign-ins each holding
          // the row FOR SHARE and each then updating it deadlocked)
          const upgrading = upgraded !== null && verified === user.passwordHash;
          const current = await this.users.lockPassword(user.id, upgrading);
          if (current?.passwordHash !== verified) return { changed: current?.passwordHash ?? null };
          if (upgraded && upgrading) {
            await this.users.setPasswordHash(user.id, upgraded, now, verified, 'rehash');
          }
          const session = await this.sessions.open(user.id, now, clientKey);
          // the role as locked here, not as first read (before argon2): a role an operator lowered
          // meanwhile committed before this lock was granted — its trigger never saw this session —
          // and the access token must not carry the old one
          return { session, passwordEpoch: current.passwordEpoch, role: current.role };
        },
      );
      if ('session' in outcome) return outcome;
      // Changed meanwhile (a twin sign-in's rehash of the same password still signs in; a new
      // password does not): checked again with no transaction open and no row locked while
      // argon2 runs, then the next transaction makes sure it is still that hash.
      if (
        outcome.changed === null ||
        !(await this.hasher.verify(outcome.changed, password, { client: clientIp }))
      )
        return null;
      verified = outcome.changed;
    }
    return null;
  }

  /** Spends the refresh token and issues the next pair of its family (see the class comment). */
  async refresh(refreshToken: string, clientIp: string): Promise<TokensDto> {
    const now = this.clock.now();
    const tokenHash = this.sessions.hashOf(refreshToken);
    // a transaction of its own: the revocation below commits before the 401 is answered, and
    // nothing the caller does afterwards (a failing request around it) can roll it back
    let reuse: (SpendOutcome & { status: 'reused'; detected: boolean }) | undefined;
    // the account's refresh hits, given back if the refresh goes unserved (503)
    const hits: string[] = [];
    const result = await this.tx
      .runOwn(async () => {
        // a rerun of this work (its connection died before COMMIT, a collision): what the attempt
        // before counted is given back, or one refresh would count twice
        if (hits.length > 0) await this.accountLimits.giveBack(hits);
        const spent = await this.refreshTokens.spend(tokenHash, now);
        if (spent.status === 'invalid') return spent;
        if (spent.status === 'reused') {
          // (until its revocation commits, a reuse counts as detected now: see the catch below)
          reuse = { ...spent, detected: true };
          // the family's first reuse revokes it (if live) and alarms; a reuse recorded before
          // has its marks and its alarm already: a replay of the spent token in a loop is refused
          // quietly — each was a security warning, marks and writes, at 300 a minute per address
          reuse.detected = await this.refreshTokens.markReuse(spent.familyId);
          if (!reuse.detected) return reuse;
          await this.revoked.add([spent.familyId]); // its access tokens stop working too
          await this.pendingRevocations.recordAhead(spent.familyId, 'reuse-detected', now);
          return reuse;
        }
        // The spend read the family as live without locking it: a revocation (password change,
        // logout elsewhere) committing meanwhile must not be outlived by the pair issued here —
        // nor one decided but not committed yet (a reuse whose revocation a database blink
        // interrupted: marked revoked at once, committed by PendingRevocations later).
        // (the mark is asked of Redis while the lock is taken: its round trip adds no time here)
        const [live, marked] = await Promise.all([
          this.refreshTokens.lockLiveFamily(spent.familyId),
          this.revoked.isRevoked(spent.familyId),
        ]);
        // revoked meanwhile: the spend rolls back with the 401 — committed, the same token
        // presented again (a retry, a second tab) would read as a reuse: a theft alarm for a
        // session that was only ended
        if (!live) throw invalidRefresh();
        // Marked but live: a revocation not committed yet (a reuse's, PendingRevocations
        // commits it) — or none ever will (a password change rolled back after marking). The
        // spend rolls back with the 401, so the token works again once the mark lapses (one
        // access-token lifetime) rather than dying with a change that did not happen.
        if (marked) throw invalidRefresh();
        // one account's refreshes are limited (each rotation keeps a row while its session
        // lives): over the limit, a 429, and this transaction — the spend — rolls back, so the
        // same token works once the window has passed
        const user = await this.users.findById(spent.userId);
        if (!user) throw invalidRefresh(); // cannot happen: families are deleted with their user
        await this.accountLimits.take('refresh-account', user.id, user.passwordEpoch, hits);
        await this.accountLimits.take('refresh-account-day', user.id, user.passwordEpoch, hits);
        const session = await this.sessions.rotate(spent.familyId, now, spent.familyEndsAt);
        return { ...spent, user, session };
      })
      .catch((err: unknown) => {
        if (!reuse) throw err;
        // the reuse is history (the token was spent), only its revocation failed to commit: it
        // is retried until it does, and the answer is the reuse's
        this.pendingRevocations.revokeFamily(reuse.familyId, 'reuse-detected', now);
        return reuse;
      })
      .catch((err: unknown) => this.accountLimits.rethrowGivingBackUnserved(hits, err));
    switch (result.status) {
      case 'invalid':
        throw invalidRefresh();
      case 'reused':
        if (result.detected) {
          this.events.record({
            event: 'refresh_token_reuse',
            userId: result.userId,
            familyId: result.familyId,
            client: clientIp,
          });
        }
        throw new DomainError(
          'REFRESH_TOKEN_REUSED',
          'This refresh token was already used; the session is revoked. Sign in again.',
        );
      case 'spent':
        return this.sessions.tokensFor(result.user, result.session);
    }
  }

  /**
   * Revokes the token's family. Idempotent; an unknown token is not an error (204 either way).
   * Once the family is known, the logout holds whatever becomes of its transaction: a revocation
   * that fails to commit (a database blink at its UPDATE or COMMIT) is marked at once and retried
   * until it commits (PendingRevocations), as a detected reuse's is — never undone by the failure.
   * A spent token (a refresh has issued the next one) is a reuse, as it is at a refresh: the
   * family is revoked as `reuse-detected` and the theft is logged — someone holding a stolen copy
   * ended the owner's session quietly, and the owner's client was told its session had merely
   * ended (REFRESH_TOKEN_INVALID), never to change the password.
   */
  async logout(refreshToken: string, clientIp: string): Promise<void> {
    const tokenHash = this.sessions.hashOf(refreshToken);
    const now = this.clock.now();
    let found: { familyId: string; userId: string; spent: boolean } | null = null;
    const reuse = await this.tx
      .runOwn(async () => {
        const token = await this.refreshTokens.familyOfToken(tokenHash);
        if (!token) return null;
        found = token;
        if (token.spent) {
          // a reuse recorded before has its marks and its alarm already (a replay in a loop)
          if (!(await this.refreshTokens.markReuse(token.familyId))) return null;
        } else {
          await this.refreshTokens.revokeFamily(token.familyId, 'logout');
        }
        await this.revoked.add([token.familyId]); // its access tokens stop working too
        // a process killed before its COMMIT leaves the revocation to the sweeps
        await this.pendingRevocations.recordAhead(token.familyId, reasonOf(token), now);
        return token.spent ? token : null;
      })
      .catch((err: unknown) => {
        const token = found;
        if (!token) throw err;
        this.pendingRevocations.revokeFamily(token.familyId, reasonOf(token), now);
        // (a reuse counts as detected until its revocation commits, as at a refresh: its alarm
        // is not lost with the transaction — the pending revocation commits it quietly)
        return token.spent ? token : null;
      });
    if (reuse) {
      this.events.record({
        event: 'refresh_token_reuse',
        userId: reuse.userId,
        familyId: reuse.familyId,
        client: clientIp,
      });
    }
  }
}
