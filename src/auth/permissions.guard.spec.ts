import type { ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { DomainError } from '../common/errors/domain-error';
import { PermissionsGuard } from './permissions.guard';
import { PERMISSIONS, Permission, Role, permissionsOf } from './permissions';
import type { Principal } from './principal';
import { RequirePermission } from './require-permission.decorator';
import type { RefreshTokenRepository } from './refresh-token.repository';
import { mockOf } from '../../test/support/mocks';

class Routes {
  @RequirePermission('orders:refund')
  refund(): void {}

  @RequirePermission('orders:read_all')
  readAll(): void {}

  open(): void {}
}

function contextFor(
  handler: () => void,
  user?: Principal,
  request: { user?: Principal } = { user },
): ExecutionContext {
  const http = mockOf<ReturnType<ExecutionContext['switchToHttp']>>(
    { getRequest: () => request },
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
  // the role on record for each session (sessionId → role); absent: no live session here
  const recorded = new Map<string, Role>();
  const sessions = mockOf<RefreshTokenRepository>(
    {
      roleOfLiveSession: (familyId: string) => Promise.resolve(recorded.get(familyId) ?? null),
    },
    'sessions',
  );
  const guard = new PermissionsGuard(new Reflector(), sessions);
  const routes = new Routes();
  const allowed = (handler: () => void, user?: Principal) =>
    guard.canActivate(contextFor(handler, user));

  const refused = async (handler: () => void, user: Principal | undefined, code: string) => {
    const err: unknown = await allowed(handler, user).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).code).toBe(code);
  };
  const forbidden = (handler: () => void, user?: Principal) => refused(handler, user, 'FORBIDDEN');

  it('lets any caller through a route that declares no permission', async () => {
    expect(await allowed(routes.open, principal('customer'))).toBe(true);
  });

  it('refuses a customer on an admin route with 403 FORBIDDEN', () =>
    forbidden(routes.readAll, principal('customer')));

  it('checks the permission, not the role: staff may read all orders but not refund', async () => {
    expect(await allowed(routes.readAll, principal('staff'))).toBe(true);
    await forbidden(routes.refund, principal('staff'));
    expect(await allowed(routes.refund, principal('admin'))).toBe(true);
  });

  it('refuses when no principal is on the request', () => forbidden(routes.refund));

  it('holds a token to its session on record: none here is 401, a role taken away 403, and the recorded role is the one the route sees', async () => {
    const admin = { ...principal('admin'), sessionId: 's-admin' };
    // signed with this key, but no session of it on record here (another deployment's)
    await refused(routes.refund, admin, 'TOKEN_INVALID');
    recorded.set('s-admin', 'staff');
    await forbidden(routes.refund, admin);
    const request = { user: admin as Principal };
    expect(await guard.canActivate(contextFor(routes.readAll, admin, request))).toBe(true);
    expect(request.user).toMatchObject({ role: 'staff', permissions: permissionsOf('staff') });
    recorded.set('s-admin', 'admin');
    expect(await allowed(routes.refund, admin)).toBe(true);
  });
});
