import { Inject, Injectable } from '@nestjs/common';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { normalizeEmail } from '../common/email';
import { accountClientDigest } from '../common/throttling/rate-limit.policies';
import { APP_CONFIG, AppConfig } from '../config/config';
import type { User } from '../users/user.repository';
import { TokensDto, mapUser } from './dto/auth.dto';
import { RefreshTokenRepository } from './refresh-token.repository';
import { RevokedSessions } from './revoked-sessions';
import { TransactionHost } from '../database/transaction-host';
import { TokenService } from './token.service';
import { acceptedSessionClientSecrets } from '../config/jwt-keys';
import { Clock } from '../common/time/clock';

/**
 * A sign-in session as the client holds it: the family and its current refresh token — and when
 * the family ends for good (its absolute lifetime), which no access token issued in it outlives.
 */
export interface Session {
  familyId: string;
  refreshToken: string;
  endsAt: Date;
}

const plusSeconds = (at: Date, seconds: number) => new Date(at.getTime() + seconds * 1000);

/**
 * Issues token pairs: opens refresh-token families (absolute lifetime
 * `config.jwt.refreshTtlSeconds`), adds each rotation's token (idle timeout
 * `config.jwt.refreshIdleSeconds` from its issue), and signs the access token that goes with it.
 * Writes join the caller's transaction.
 */
@Injectable()
export class SessionIssuer {
  /** What device tokens, recorded clients and account tags are made under: the signing key's. */
  private readonly clientSecret: Buffer | string;
  /**
   * What device tokens and recorded clients are still accepted under: `clientSecret`, then a
   * verify-only JWT_VERIFY_ONLY_SECRET's (a key rotation's next or previous key).
   */
  private readonly acceptedSecrets: readonly (Buffer | string)[];

  constructor(
    private readonly refreshTokens: RefreshTokenRepository,
    private readonly tokens: TokenService,
    private readonly revoked: RevokedSessions,
    private readonly tx: TransactionHost,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly clock: Clock,
  ) {
    this.acceptedSecrets = acceptedSessionClientSecrets(config);
    this.clientSecret = this.acceptedSecrets[0];
  }

  /**
   * A new session of the user. An account holds at most `config.jwt.sessionsPerAccount` live
   * sessions: the least recently used beyond it end here (revoked as `session-limit`, their access tokens
   * refused at once), so a script signing in in a loop cannot grow the account's rows for ever.
   * `clientKey` (clientKeyOf) records the client it was opened from.
   */
  /**
   * What a session records of the client it was opened from: the (account, client) pair as an
   * HMAC under a server secret — never the address, nor a plain digest of it and the email,
   * which anyone reading the database could reverse by trying every IPv4 address.
   */
  clientKeyOf(email: string, clientIp: string): string {
    return this.clientKeyUnder(this.clientSecret, email, clientIp);
  }

  /**
   * The keys a session opened from this client may be on record under: clientKeyOf's, then the
   * verify-only secret's (a session recorded under the other key of a rotation's roll is the
   * owner's still).
   */
  clientKeysOf(email: string, clientIp: string): string[] {
    return this.acceptedSecrets.map((secret) => this.clientKeyUnder(secret, email, clientIp));
  }

  private clientKeyUnder(secret: Buffer | string, email: string, clientIp: string): string {
    return createHmac('sha256', secret)
      .update(`session-client\0${accountClientDigest(email, clientIp)}`)
      .digest('base64url');
  }

  /**
   * A tag of an account's email for the security log (SecurityEvents: every sign-in attempt at
   * one email carries the same, the email itself never): an HMAC under the server secret, so the
   * log cannot be reversed by hashing a list of addresses. Under the signing key's secret alone: a
   * key rotation gives every account a new tag (README, "Rotating the JWT key").
   */
  accountTag(email: string): string {
    return createHmac('sha256', this.clientSecret)
      .update(`account-tag\0${normalizeEmail(email)}`)
      .digest('base64url')
      .slice(0, 22);
  }

  /**
   * A device token (login and register answer one): `<device>.<mac>`, the device a random id,
   * the mac an HMAC under the server secret of the account's email and the device — the same
   * token for as long as the device sends it back. Presented at a later login (`deviceOf`), it
   * makes that sign-in a client of its own: its failures are counted as the device's, so a
   * stranger behind the same address cannot hold it back by failing sign-ins
   * (rate-limit.policies.ts signInBuckets). It is one of the owner's clients (spared the
   * ceilings) while a sign-in from it in the last 90 days marked it under the current password;
   * marked under an earlier one only, it is spared the account's ceiling (a password change does
   * not make the owner's phone a stranger; a token taken with a stolen password keeps that, and
   * nothing more). Not a credential
   * (the password is verified as ever); a copy of it can spend the device's failures, as a
   * stranger at the device's address could without one.
   */
  deviceTokenFor(email: string, device: string): string {
    return `${device}.${this.deviceMac(email, device)}`;
  }

  /** A new device id (deviceTokenFor). */
  newDevice(): string {
    return randomBytes(16).toString('base64url');
  }

  /**
   * The device of a token `deviceTokenFor` made for this account — under the signing key's secret
   * or a verify-only one's (through a key rotation's roll, a device stays the owner's); else null.
   */
  deviceOf(token: string | null | undefined, email: string): string | null {
    const match = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/.exec(token ?? '');
    if (!match) return null;
    const given = Buffer.from(match[2]);
    const ours = this.acceptedSecrets.some((secret) => {
      const expected = Buffer.from(this.deviceMac(email, match[1], secret));
      return given.length === expected.length && timingSafeEqual(given, expected);
    });
    return ours ? match[1] : null;
  }

  private deviceMac(email: string, device: string, secret = this.clientSecret): string {
    return createHmac('sha256', secret)
      .update(`device-token\0${normalizeEmail(email)}\0${device}`)
      .digest('base64url');
  }

  async open(userId: string, now: Date, clientKey: string): Promise<Session> {
    const endsAt = plusSeconds(now, this.config.jwt.refreshTtlSeconds);
    const familyId = await this.refreshTokens.createFamily(userId, now, endsAt, clientKey);
    const ended = await this.refreshTokens.revokeOthersBeyond(
      userId,
      familyId,
      this.config.jwt.sessionsPerAccount - 1,
      'session-limit',
      now,
    );
    // their access tokens stop working too — once the ending has committed: marks set before it
    // would end live sessions for good should the sign-in roll back
    if (ended.length > 0) this.tx.afterCommit(() => void this.revoked.add(ended));
    return this.rotate(familyId, now, endsAt);
  }

  /** The family's next refresh token; `endsAt`: the family's absolute end (as spent). */
  async rotate(familyId: string, now: Date, endsAt: Date): Promise<Session> {
    const refreshToken = this.tokens.newRefreshToken();
    await this.refreshTokens.addToken(
      familyId,
      this.tokens.hashRefreshToken(refreshToken),
      now,
      plusSeconds(now, this.config.jwt.refreshIdleSeconds),
    );
    return { familyId, refreshToken, endsAt };
  }

  /** What the database knows a presented refresh token by. */
  hashOf(refreshToken: string): string {
    return this.tokens.hashRefreshToken(refreshToken);
  }

  /** The answer of register, login and refresh. */
  /**
   * The access token lives JWT_ACCESS_TTL_SECONDS, but never past its session's absolute end: a
   * refresh a second before it gave a full lifetime's token, so a session outlived
   * REFRESH_TOKEN_TTL_SECONDS by up to that much. (At least a second: a family that ended while
   * this refresh ran gets a token for one.)
   */
  async tokensFor(user: User, session: Session): Promise<TokensDto> {
    const left = Math.floor((session.endsAt.getTime() - this.clock.now().getTime()) / 1000);
    const expiresIn = Math.max(1, Math.min(this.config.jwt.accessTtlSeconds, left));
    const accessToken = await this.tokens.signAccess(
      { sub: user.id, email: user.email, role: user.role, fam: session.familyId },
      expiresIn,
    );
    return { user: mapUser(user), accessToken, refreshToken: session.refreshToken, expiresIn };
  }
}
