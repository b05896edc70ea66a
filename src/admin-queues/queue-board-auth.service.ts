import { Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { authenticateBearer } from '../auth/access-token.guard';
import { JwtStrategy } from '../auth/jwt.strategy';
import { PasswordHasher } from '../auth/password-hasher';
import { RefreshTokenRepository } from '../auth/refresh-token.repository';
import { SecurityEvents } from '../auth/security-events';
import { SessionIssuer } from '../auth/session-issuer';
import { Permission, permissionsOf } from '../auth/permissions';
import { requirePermissions } from '../auth/permissions.guard';
import type { Principal } from '../auth/principal';
import { DomainError } from '../common/errors/domain-error';
import { hasControlCharacters } from '../common/http/control-characters';
import { FailedAttemptLimiter } from '../common/throttling/failed-attempt-limiter';
import { Clock } from '../common/time/clock';
import { normalizeEmail } from '../common/email';
import { UserRepository } from '../users/user.repository';

/** What a principal needs to see the queue board. */
const QUEUE_BOARD_PERMISSION: Permission = 'queues:view';

/**
 * How long a verified Basic header is trusted without another argon2 verification — as long as
 * the account still has the password (its epoch) and the role it was verified with (read each time).
 */
export const BASIC_CACHE_TTL_MS = 60_000;

/** Bounds the cache of verified headers; expired entries go first, then the oldest. */
const MAX_ENTRIES = 1_000;

interface Verified {
  principal: Principal;
  /** The epoch of the password verified (users.password_epoch): a password set anew ends the entry. */
  passwordEpoch: string;
  expiresAt: number;
}

/** `Basic base64(email:password)` → its parts; null when malformed. */
export function parseBasic(header: string): { email: string; password: string } | null {
  const match = /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(header.trim());
  if (!match) return null;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return null;
  // what no account can hold (the API refuses it in emails and passwords): a NUL in the email
  // reached PostgreSQL, which refuses it in text (a 400 where a sign-in failure is a 401)
  if (hasControlCharacters(decoded)) return null;
  return { email: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Who may open the queue board (a browser UI outside the Nest pipeline): either a bearer access
 * token, verified exactly like the API's AccessTokenGuard does, or HTTP Basic with an account's
 * email and password (argon2id, like login). Either way the principal needs `queues:view`.
 *
 * Basic sign-ins are password guesses and go through FailedAttemptLimiter, the login route's
 * mechanism (Redis, shared by every process): reserved before the verification, per client and
 * per account (rate-limit.policies.ts signInBuckets 'queue-board'), 429 RATE_LIMITED once spent.
 * A right password of an account without `queues:view` is answered and counted exactly like a
 * wrong one (401 INVALID_CREDENTIALS), so the board tells nobody which customer passwords are
 * right. Verifications pass PasswordHasher's bounded gate (503 when the server is saturated).
 */
@Injectable()
export class QueueBoardAuth {
  /** sha256(Authorization header) → principal, for Basic only (successes only). */
  private readonly verified = new Map<string, Verified>();

  constructor(
    private readonly tokens: JwtStrategy,
    private readonly users: UserRepository,
    private readonly hasher: PasswordHasher,
    private readonly clock: Clock,
    private readonly signIns: FailedAttemptLimiter,
    private readonly sessions: SessionIssuer,
    private readonly refreshTokens: RefreshTokenRepository,
    private readonly events: SecurityEvents,
  ) {}

  /**
   * The principal, if it may view the queues. Throws 401 UNAUTHENTICATED (no or malformed
   * credentials), TOKEN_INVALID, INVALID_CREDENTIALS, 403 FORBIDDEN (a valid bearer token
   * without `queues:view`), 429 RATE_LIMITED or 503 SERVICE_UNAVAILABLE. `authenticated` hears
   * who it is before the permission is checked: a 403's lines name them.
   */
  async authorize(
    authorization: string | undefined,
    ip: string,
    authenticated?: (principal: Principal) => void,
  ): Promise<Principal> {
    const principal = await this.authenticate(authorization, ip);
    authenticated?.(principal);
    // a bearer token's session and role as recorded (the Basic sign-in read them already)
    return requirePermissions(
      this.refreshTokens,
      principal,
      [QUEUE_BOARD_PERMISSION],
      'You are not permitted to view the queues.',
    );
  }

  private async authenticate(authorization: string | undefined, ip: string): Promise<Principal> {
    if (!authorization) {
      throw new DomainError(
        'UNAUTHENTICATED',
        "Sign in with an admin account's email and password, or send a bearer access token.",
      );
    }
    return /^Basic\s/i.test(authorization)
      ? this.authenticateBasic(authorization, ip)
      : authenticateBearer(this.tokens, authorization);
  }

  private async authenticateBasic(header: string, ip: string): Promise<Principal> {
    const now = this.clock.now().getTime();
    const key = createHash('sha256').update(header).digest('base64url');
    const hit = this.verified.get(key);
    if (hit && hit.expiresAt > now) {
      // a password change, a role taken away or a deleted account ends the trust at once
      const user = await this.users.findByEmail(hit.principal.email);
      if (
        user?.id === hit.principal.userId &&
        user.passwordEpoch === hit.passwordEpoch &&
        user.role === hit.principal.role
      ) {
        return hit.principal;
      }
      this.verified.delete(key);
    }

    const credentials = parseBasic(header);
    if (!credentials) throw new DomainError('UNAUTHENTICATED', 'Malformed Basic credentials.');
    const email = normalizeEmail(credentials.email);

    let passwordEpoch = '';
    // The same work for an unknown email as for a wrong password (see AuthService.login).
    const user = await this.users.findByEmail(email);
    const principal = await this.events.signIn(
      'queue-board',
      { account: this.sessions.accountTag(email), user },
      ip,
      () =>
        this.signIns.signIn(
          'queue-board',
          email,
          ip,
          async (client) => {
            const ok = await this.hasher.verifySignIn(user, credentials.password, {
              priority: client.own,
              client: ip,
            });
            if (!user || !ok) return null;
            const permissions = permissionsOf(user.role);
            // a right password without the permission is a failure like any other (no oracle)
            if (!permissions.includes(QUEUE_BOARD_PERMISSION)) return null;
            passwordEpoch = user.passwordEpoch;
            return { userId: user.id, email: user.email, role: user.role, permissions };
          },
          {
            passwordEpoch: user?.passwordEpoch ?? null,
            // Redis's marks of the admin's own clients may be gone (a restart without its data, a
            // failover): the sessions on record (API sign-ins) still know them, as for login
            ownClientOnRecord: () =>
              this.refreshTokens.openedFrom(this.sessions.clientKeysOf(email, ip)),
          },
        ),
      (p) => ({ id: p.userId, role: p.role }),
    );
    if (!principal) throw new DomainError('INVALID_CREDENTIALS', 'Email or password is wrong.');
    prune(this.verified, now);
    this.verified.set(key, { principal, passwordEpoch, expiresAt: now + BASIC_CACHE_TTL_MS });
    return principal;
  }
}

/** Keeps the map under MAX_ENTRIES before an insert: drops expired entries, then the oldest. */
function prune(map: Map<string, Verified>, now: number): void {
  if (map.size < MAX_ENTRIES) return;
  for (const [key, value] of map) if (value.expiresAt <= now) map.delete(key);
  for (const key of map.keys()) {
    if (map.size < MAX_ENTRIES) break;
    map.delete(key);
  }
}
