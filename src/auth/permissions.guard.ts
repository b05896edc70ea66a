import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { DomainError } from '../common/errors/domain-error';
import { Permission } from './permissions';
import { AuthenticatedRequest } from './principal';
import { REQUIRED_PERMISSIONS } from './require-permission.decorator';

/** Checks the permissions a route declares with @RequirePermission (403 FORBIDDEN). */
@Injectable()
export class PermissionsGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    const required = this.reflector.getAllAndOverride<Permission[] | undefined>(
      REQUIRED_PERMISSIONS,
      [context.getHandler(), context.getClass()],
    );
    if (!required?.length) return true;
    const user = context.switchToHttp().getRequest<AuthenticatedRequest>().user;
    if (!user || !required.every((p) => user.permissions.includes(p))) {
      throw new DomainError('FORBIDDEN', 'You are not permitted to do this.');
    }
    return true;
  }
}
