import type { ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { DomainError } from '../common/errors/domain-error';
import { PermissionsGuard } from './permissions.guard';
import { PERMISSIONS, Permission, Role, permissionsOf } from './permissions';
import type { Principal } from './principal';
import { RequirePermission } from './require-permission.decorator';
import { mockOf } from '../../test/support/mocks';

class Routes {
  @RequirePermission('orders:refund')
  refund(): void {}

  @RequirePermission('orders:read_all')
  readAll(): void {}

  open(): void {}
}

function contextFor(handler: () => void, user?: Principal): ExecutionContext {
  const http = mockOf<ReturnType<ExecutionContext['switchToHttp']>>(
    { getRequest: () => ({ user }) },
    'http',
  );
  return mockOf<ExecutionContext>(
    { getHandler: () => handler, getClass: () => Routes, switchToHttp: () => http },
    'context',
  );
}

const principal = (role: Role): Principal => ({
  userId: 'u',
  email: 'u@x.io',
  role,
  permissions: permissionsOf(role),
});

describe('roles and permissions', () => {
  it('gives customers no admin permission, staff some, admins all', () => {
    expect(permissionsOf('customer')).toEqual([]);
    expect(permissionsOf('staff')).toEqual(
      expect.arrayContaining<Permission>(['orders:read_all', 'orders:fulfil']),
    );
    expect(permissionsOf('staff')).not.toContain('orders:refund');
    expect([...permissionsOf('admin')].sort()).toEqual([...PERMISSIONS].sort());
  });
});

describe('PermissionsGuard', () => {
  const guard = new PermissionsGuard(new Reflector());
  const routes = new Routes();

  const forbidden = (handler: () => void, user?: Principal) => {
    let err: unknown;
    try {
      guard.canActivate(contextFor(handler, user));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).code).toBe('FORBIDDEN');
  };

  it('lets any caller through a route that declares no permission', () => {
    expect(guard.canActivate(contextFor(routes.open, principal('customer')))).toBe(true);
  });

  it('refuses a customer on an admin route with 403 FORBIDDEN', () =>
    forbidden(routes.readAll, principal('customer')));

  it('checks the permission, not the role: staff may read all orders but not refund', () => {
    expect(guard.canActivate(contextFor(routes.readAll, principal('staff')))).toBe(true);
    forbidden(routes.refund, principal('staff'));
    expect(guard.canActivate(contextFor(routes.refund, principal('admin')))).toBe(true);
  });

  it('refuses when no principal is on the request', () => forbidden(routes.refund));
});
