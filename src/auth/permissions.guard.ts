import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { DomainError } from '../common/errors/domain-error';
import { tokenInvalid } from './jwt.strategy';
import { Permission, Role, permissionsOf } from './permissions';
import { AuthenticatedRequest, Principal } from './principal';
import { RefreshTokenRepository } from './refresh-token.repository';
import { REQUIRED_PERMISSIONS } from './require-permission.decorator';

/**
 * Whether `principal` holds every permission in `required`, by the record, not by the token
 * alone: the token's role must grant them (403 FORBIDDEN, no database read), and then its session
 * must be live on record here with an account whose role, now, grants them too — 401 TOKEN_INVALID
 * for a session not on record (revoked, its account gone, or never opened here: a token another
 * deployment signed with the same key, an admin there an admin here), 403 for a role taken away
 * (at once, not at the revocation record's next read). A principal without a session (the queue
 * board's Basic sign-in) was read from the record by its caller. Answers the principal with the
 * recorded role.
 */
export async function requirePermissions(
  sessions: RefreshTokenRepository,
  principal: Principal | undefined,
  required: readonly Permission[],
  refusal = 'You are not permitted to do this.',
): Promise<Principal> {
  const grants = (role: Role) => required.every((p) => permissionsOf(role).includes(p));
  if (!principal || !grants(principal.role)) throw new DomainError('FORBIDDEN', refusal);
  if (principal.sessionId === undefined) return principal;
  const role = (await sessions.roleOfLiveSession(
    principal.sessionId,
    principal.userId,
  )) as Role | null;
  if (role === null) throw tokenInvalid('The session has ended; sign in again.');
  if (!grants(role)) throw new DomainError('FORBIDDEN', refusal);
  return { ...principal, role, permissions: permissionsOf(role) };
}

/** Checks the permissions a route declares with @RequirePermission (see requirePermissions). */
@Injectable()
export class PermissionsGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly sessions: RefreshTokenRepository,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const required = this.reflector.getAllAndOverride<Permission[] | undefined>(
      REQUIRED_PERMISSIONS,
      [context.getHandler(), context.getClass()],
    );
    if (!required?.length) return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    request.user = await requirePermissions(this.sessions, request.user, required);
    return true;
  }
}
