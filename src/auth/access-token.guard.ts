import { ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import { DomainError } from '../common/errors/domain-error';
import { IS_PUBLIC } from '../common/http/public.decorator';
import { bearerToken } from '../common/http/bearer-token';
import { JwtStrategy, tokenInvalid } from './jwt.strategy';
import type { AuthenticatedRequest, Principal } from './principal';

const unauthenticated = () =>
  new DomainError('UNAUTHENTICATED', 'A bearer access token is required.');

/**
 * Default-deny: every route needs a valid access token (JwtStrategy, passport-jwt) unless
 * marked @Public(). 401 UNAUTHENTICATED without a bearer token, 401 TOKEN_INVALID for a bad,
 * expired or revoked one.
 *
 * Passport's AuthGuard, with this app's own JwtStrategy registration (JwtStrategy#registeredAs)
 * rather than AuthGuard('jwt'): passport's strategy registry is one per process, so with two
 * apps in one process (tests boot several) 'jwt' would reach the strategy — and the
 * RevokedSessions memory — of whichever app registered last. (Not the instance itself either:
 * passport would then set each request's success/fail callbacks on that one shared object, and
 * concurrent requests would answer each other — test/security/access-token-guard-concurrency.)
 */
@Injectable()
export class AccessTokenGuard extends AuthGuard() {
  constructor(
    private readonly reflector: Reflector,
    strategy: JwtStrategy,
  ) {
    super({ defaultStrategy: strategy.registeredAs });
  }

  override canActivate(context: ExecutionContext): Promise<boolean> | boolean {
    if (context.getType() !== 'http') return true;
    const isPublic = this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (isPublic) return true;
    return super.canActivate(context) as Promise<boolean>;
  }

  override handleRequest<TUser = Principal>(
    err: unknown,
    user: TUser | false,
    _info: unknown,
    context: ExecutionContext,
  ): TUser {
    if (user && !err) return user;
    if (err instanceof DomainError) throw err;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    throw bearerToken(request.headers.authorization) === null ? unauthenticated() : tokenInvalid();
  }
}

/**
 * The principal an `Authorization: Bearer <access token>` header proves, for callers outside
 * Nest's guards (the queue board): the same strategy as the guard. 401 UNAUTHENTICATED without
 * a bearer token, 401 TOKEN_INVALID for a bad one.
 */
export async function authenticateBearer(
  strategy: Pick<JwtStrategy, 'verifyAccess'>,
  header: string | undefined,
): Promise<Principal> {
  const token = bearerToken(header);
  if (token === null) throw unauthenticated();
  return strategy.verifyAccess(token);
}
