import { Injectable } from '@nestjs/common';
import { normalizeIp } from '@nestjs/throttler';
import { createHash } from 'node:crypto';
import { authenticateBearer } from '../auth/access-token.guard';
import { PasswordHasher } from '../auth/password-hasher';
import { Permission, permissionsOf } from '../auth/permissions';
import type { Principal } from '../auth/principal';
import { TokenService } from '../auth/token.service';
import { DomainError } from '../common/errors/domain-error';
import { Clock } from '../common/time/clock';
import { normalizeEmail } from '../users/email';
import { UserRepository } from '../users/user.repository';

/** What a principal needs to see the queue board. */
export const QUEUE_BOARD_PERMISSION: Permission = 'queues:view';

/** How long a verified Basic header is trusted without another argon2 verification. */
export const BASIC_CACHE_TTL_MS = 60_000;

/**
 * Failed Basic sign-ins per client (IP, IPv6 per /64) and window before 429 RATE_LIMITED, so
 * the board is no unthrottled password oracle. Per process, in memory (the login route's limits
 * live in Redis and are shared).
 */
export const BASIC_FAILURE_LIMIT = 10;
export const BASIC_FAILURE_WINDOW_MS = 60_000;

/** Bounds both in-memory maps; expired entries go first, then the oldest. */
const MAX_ENTRIES = 1_000;

interface Verified {
  principal: Principal;
  expiresAt: number;
}

interface Failures {
  count: number;
  resetAt: number;
}

/** `Basic base64(email:password)` → its parts; null when malformed. */
export function parseBasic(header: string): { email: string; password: string } | null {
  const match = /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(header.trim());
  if (!match) return null;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return null;
  return { email: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Who may open the queue board (a browser UI outside the Nest pipeline): either a bearer access
 * token, verified exactly like the API's AccessTokenGuard does, or HTTP Basic with an account's
 * email and password (argon2id, like login). Either way the principal needs `queues:view`.
 */
@Injectable()
export class QueueBoardAuth {
  /** sha256(Authorization header) → principal, for Basic only. */
  private readonly verified = new Map<string, Verified>();
  /** client → failed Basic attempts in the current window. */
  private readonly failures = new Map<string, Failures>();

  constructor(
    private readonly tokens: TokenService,
    private readonly users: UserRepository,
    private readonly hasher: PasswordHasher,
    private readonly clock: Clock,
  ) {}

  /**
   * The principal, if it may view the queues. Throws 401 UNAUTHENTICATED (no or malformed
   * credentials), TOKEN_INVALID, INVALID_CREDENTIALS, 403 FORBIDDEN or 429 RATE_LIMITED.
   */
  async authorize(authorization: string | undefined, ip: string): Promise<Principal> {
    const principal = await this.authenticate(authorization, ip);
    if (!principal.permissions.includes(QUEUE_BOARD_PERMISSION)) {
      throw new DomainError('FORBIDDEN', 'You are not permitted to view the queues.');
    }
    return principal;
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
    if (hit && hit.expiresAt > now) return hit.principal;

    const credentials = parseBasic(header);
    if (!credentials) throw new DomainError('UNAUTHENTICATED', 'Malformed Basic credentials.');
    const client = normalizeIp(ip);
    this.refuseWhileLimited(client, now);

    // The same work for an unknown email as for a wrong password (see AuthService.login).
    const user = await this.users.findByEmail(normalizeEmail(credentials.email));
    const ok = user
      ? await this.hasher.verify(user.passwordHash, credentials.password)
      : await this.hasher.verifyDummy(credentials.password);
    if (!user || !ok) {
      this.countFailure(client, now);
      throw new DomainError('INVALID_CREDENTIALS', 'Email or password is wrong.');
    }
    const principal: Principal = {
      userId: user.id,
      email: user.email,
      role: user.role,
      permissions: permissionsOf(user.role),
    };
    prune(this.verified, now, (v) => v.expiresAt);
    this.verified.set(key, { principal, expiresAt: now + BASIC_CACHE_TTL_MS });
    return principal;
  }

  private refuseWhileLimited(client: string, now: number): void {
    const failures = this.failures.get(client);
    if (failures && failures.resetAt > now && failures.count >= BASIC_FAILURE_LIMIT) {
      throw new DomainError('RATE_LIMITED', 'Too many failed sign-ins; retry later.', {
        headers: { 'Retry-After': String(Math.ceil((failures.resetAt - now) / 1000)) },
      });
    }
  }

  private countFailure(client: string, now: number): void {
    const failures = this.failures.get(client);
    if (failures && failures.resetAt > now) {
      failures.count += 1;
      return;
    }
    prune(this.failures, now, (f) => f.resetAt);
    this.failures.set(client, { count: 1, resetAt: now + BASIC_FAILURE_WINDOW_MS });
  }
}

/** Keeps a map under MAX_ENTRIES before an insert: drops expired entries, then the oldest. */
function prune<V>(map: Map<string, V>, now: number, expiresAt: (v: V) => number): void {
  if (map.size < MAX_ENTRIES) return;
  for (const [key, value] of map) if (expiresAt(value) <= now) map.delete(key);
  for (const key of map.keys()) {
    if (map.size < MAX_ENTRIES) break;
    map.delete(key);
  }
}
