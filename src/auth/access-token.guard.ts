import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { DomainError } from '../common/errors/domain-error';
import { IS_PUBLIC } from '../common/http/public.decorator';
import { permissionsOf } from './permissions';
import { AuthenticatedRequest } from './principal';
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
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer ([^\s]+)$/i.exec(header) : null;
    if (!match) throw new DomainError('UNAUTHENTICATED', 'A bearer access token is required.');
    const claims = await this.tokens.verifyAccess(match[1]);
    request.user = {
      userId: claims.sub,
      email: claims.email,
      role: claims.role,
      permissions: permissionsOf(claims.role),
    };
    return true;
  }
}
