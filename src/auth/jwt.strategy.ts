import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { randomUUID } from 'node:crypto';
import passport from 'passport';
import { Strategy, type StrategyOptionsWithoutRequest } from 'passport-jwt';
import { DomainError } from '../common/errors/domain-error';
import { bearerToken } from '../common/http/bearer-token';
import { isCanonicalUuid } from '../common/ids';
import { APP_CONFIG, AppConfig } from '../config/config';
import { accessTokenKeyRing } from './jwt-options';
import { ROLES, Role, permissionsOf } from './permissions';
import type { Principal } from './principal';
import { CLOCK_SKEW_MS, RevokedSessions } from './revoked-sessions';
import { SessionsOnRecord } from './sessions-on-record';

/** The passport strategy name the global guard authenticates with. */
const JWT_STRATEGY = 'jwt';

export const tokenInvalid = (detail = 'The access token is invalid or expired.') =>
  new DomainError('TOKEN_INVALID', detail);

/**
 * Access-token verification, the one path for the API's guard and the queue board:
 * passport-jwt (jsonwebtoken) with the options of jwtModuleOptions() pinned — the key the token's
 * `kid` names among the signing key and a verify-only one (accessTokenKeyRing: one verification,
 * with that key's own algorithm; no `kid`: the signing key; an unknown one: refused unverified;
 * `alg: none` and every other algorithm refused), iss, aud, exp — then validate(): the
 * claims must be an access token's (`typ: 'access'`, exp, iat at most JWT_ACCESS_TTL_SECONDS
 * before exp, sub, fam, email, a known role) and its session (`fam`) not revoked (RevokedSessions: logout, password change, refresh-token
 * reuse), checked on every authenticated request.
 */
@Injectable()
export class JwtStrategy
  extends PassportStrategy(Strategy, JWT_STRATEGY)
  implements OnApplicationShutdown
{
  /**
   * The name this app's instance is registered under with passport (besides JWT_STRATEGY):
   * passport's registry is one per process, and JWT_STRATEGY names whichever app registered
   * last — with two apps in one process (tests boot several) that would be another app's
   * strategy and RevokedSessions memory. The guard authenticates with this name; passport then
   * runs a fresh Object.create() of the instance per request.
   */
  readonly registeredAs = `${JWT_STRATEGY}:${randomUUID()}`;

  /**
   * The longest life (exp − iat, seconds) an accepted access token may have: this deployment's
   * JWT_ACCESS_TTL_SECONDS. A revocation's marks live that long (RevokedSessions), so a token
   * signed under a longer setting (before a deploy that shortened it, or by an instance still on
   * the old one) would be accepted again once its session's marks are gone.
   */
  private readonly maxLifetimeSeconds: number;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly revoked: RevokedSessions,
    private readonly sessions: SessionsOnRecord,
  ) {
    // The very key and algorithm tokens are signed with (jwtModuleOptions()), and a verify-only
    // key's: the one a token's `kid` names (KeyObjects built once for the process).
    const keys = accessTokenKeyRing(config);
    const options: StrategyOptionsWithoutRequest = {
      jwtFromRequest: (req: { headers?: Record<string, unknown> }) =>
        bearerToken(req.headers?.authorization),
      secretOrKeyProvider: (_req, token: string, done) => {
        const key = keys.keyFor(token);
        // (a KeyObject: jsonwebtoken accepts it)
        if (key) done(null, key as unknown as string);
        else done(tokenInvalid());
      },
      algorithms: keys.algorithms,
      issuer: config.jwt.issuer,
      audience: config.jwt.audience,
      ignoreExpiration: false,
    };
    super(options);
    this.maxLifetimeSeconds = config.jwt.accessTtlSeconds;
    passport.use(this.registeredAs, this);
  }

  /**
   * After the HTTP server has drained (Nest runs onModuleDestroy before it stops accepting, and
   * a request reaching the guard then would get 500 "Unknown authentication strategy").
   */
  onApplicationShutdown(): void {
    passport.unuse(this.registeredAs);
  }

  /** The principal of verified claims; TOKEN_INVALID for non-access or revoked tokens. */
  async validate(payload: Record<string, unknown>): Promise<Principal> {
    if (
      payload.typ !== 'access' ||
      typeof payload.exp !== 'number' ||
      typeof payload.iat !== 'number' ||
      payload.exp - payload.iat > this.maxLifetimeSeconds ||
      // issued ahead of this clock by more than the skew the design allows: its signer's clock
      // runs fast, and its token would outlive the revocation marks (they live a token's
      // lifetime plus CLOCK_SKEW_MS from the revoking host's clock) — refused, not trusted.
      // (The host's own clock, as jsonwebtoken judges `exp` by: one clock for a token's times.)
      payload.iat * 1000 > Date.now() + CLOCK_SKEW_MS ||
      // our own ids: what a signer put anywhere else (a NUL, an email) would reach the database's
      // uuid columns and lock keys and answer 400 or 503 there, not the 401 of a bad token
      !isCanonicalUuid(payload.sub) ||
      !isCanonicalUuid(payload.fam) ||
      typeof payload.email !== 'string' ||
      !ROLES.includes(payload.role as Role)
    ) {
      throw tokenInvalid();
    }
    if (
      (await this.revoked.isRevoked(payload.fam)) ||
      // a session never opened here: a token another deployment signed with the same key
      !(await this.sessions.opened(payload.fam, payload.sub))
    ) {
      throw tokenInvalid('The session has ended; sign in again.');
    }
    const role = payload.role as Role;
    return {
      userId: payload.sub,
      email: payload.email,
      role,
      permissions: permissionsOf(role),
      sessionId: payload.fam,
    };
  }

  /**
   * Runs this strategy outside Nest's guards (the queue board): the same extraction,
   * verification and validate() as the guard, through passport's strategy protocol.
   * 401 TOKEN_INVALID for any refusal.
   */
  verifyAccess(token: string): Promise<Principal> {
    return new Promise<Principal>((resolve, reject) => {
      const run = Object.create(this) as Strategy & {
        success(user: Principal): void;
        fail(): void;
        error(err: unknown): void;
      };
      run.success = (user: Principal) => resolve(user);
      run.fail = () => reject(tokenInvalid());
      run.error = (err) => reject(err instanceof DomainError ? err : tokenInvalid());
      run.authenticate({ headers: { authorization: `Bearer ${token}` } } as never, {});
    });
  }
}
