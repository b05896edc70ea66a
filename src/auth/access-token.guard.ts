import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { DomainError } from '../common/errors/domain-error';
import { IS_PUBLIC } from '../common/http/public.decorator';
import { permissionsOf } from './permissions';
import { AuthenticatedRequest, Principal } from './principal';
import { TokenService } from './token.service';

/** Default-deny: every route needs a valid access token unless marked @Public(). */
@Injectable()
export class AccessTokenGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly tokens: TokenService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const isPublic = this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (isPublic) return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    request.user = await authenticateBearer(this.tokens, request.headers.authorization);
    return true;
  }
}

/**
 * The principal an `Authorization: Bearer <access token>` header proves: 401 UNAUTHENTICATED
 * without one, 401 TOKEN_INVALID for a bad token. Also used outside Nest's guards (queue board).
 */
export async function authenticateBearer(
  tokens: TokenService,
  header: string | undefined,
): Promise<Principal> {
  const match = typeof header === 'string' ? /^Bearer ([^\s]+)$/i.exec(header) : null;
  if (!match) throw new DomainError('UNAUTHENTICATED', 'A bearer access token is required.');
  const claims = await tokens.verifyAccess(match[1]);
  return {
    userId: claims.sub,
    email: claims.email,
    role: claims.role,
    permissions: permissionsOf(claims.role),
  };
}
