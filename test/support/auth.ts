import { Controller, DynamicModule, Get, HttpCode, Module, Post } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { HttpClient } from './http';
import type { TestApp } from './test-app';
import { waitFor } from './wait-for';
import { AppModule } from '../../src/app.module';
import { AccountService } from '../../src/auth/account.service';
import type { Role } from '../../src/auth/permissions';
import { CurrentPrincipal, Principal } from '../../src/auth/principal';
import { RateLimit } from '../../src/common/throttling/rate-limit.decorator';
import { RequirePermission } from '../../src/auth/require-permission.decorator';
import type { AppConfig } from '../../src/config/config';

export interface Session {
  user: { id: string; email: string; name: string; role: string };
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  /** Login and register: the device token to send with this device's next login. */
  deviceToken?: string;
  email: string;
  password: string;
}

export const TEST_PASSWORD = 'correct-horse-battery';

export interface RegisterOverrides {
  email?: string;
  password?: string;
  name?: string;
  /** e.g. X-Forwarded-For, to appear as another client behind a trusted proxy */
  headers?: Record<string, string>;
}

/** Registers a customer over HTTP (POST /v1/auth/register) and returns its session. */
export async function registerCustomer(
  http: HttpClient,
  overrides: RegisterOverrides = {},
): Promise<Session> {
  const email = overrides.email ?? `c-${randomUUID()}@test.local`;
  const password = overrides.password ?? TEST_PASSWORD;
  const res = await http.post(
    '/v1/auth/register',
    { email, password, name: overrides.name ?? 'Test Customer' },
    { headers: overrides.headers },
  );
  if (res.status !== 201) throw new Error(`register failed: ${res.status} ${res.text}`);
  return { ...res.body, email, password };
}

/**
 * Waits until a freshly booted app's sign-in limits answer in time. They fail closed: a store
 * call slower than 500 ms is a 503 — as the first ones can be right after boot under the full
 * suite (the worker's event loop still busy) — so a test's first registration or sign-in would
 * be refused for it. A wrong password for an account that does not exist, from `headers`' client
 * (an address of its own where TRUST_PROXY lets the test name one): one failure counted there.
 */
export async function signInLimitsAnswering(
  http: HttpClient,
  headers?: Record<string, string>,
): Promise<void> {
  await waitFor(
    'the fail-closed sign-in limits to answer',
    async () =>
      (
        await http.post(
          '/v1/auth/login',
          { email: 'warm-up@limits.test', password: 'warm-up-password' },
          { headers },
        )
      ).status,
    { until: (status) => status === 401 },
  );
}

/** Logs in over HTTP (POST /v1/auth/login). */
export async function login(
  http: HttpClient,
  email: string,
  password: string,
  headers?: Record<string, string>,
): Promise<Session> {
  const res = await http.post('/v1/auth/login', { email, password }, { headers });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.text}`);
  return { ...res.body, email, password };
}

/**
 * Creates an account with a role (the same path as `npm run admin:create`), then logs in over
 * HTTP. Roles cannot be chosen over the API, so this is how tests get staff and admins.
 */
async function createWithRole(
  t: TestApp,
  role: Role,
  overrides: { email?: string; password?: string; name?: string } = {},
): Promise<Session> {
  const email = overrides.email ?? `${role}-${randomUUID()}@test.local`;
  const password = overrides.password ?? TEST_PASSWORD;
  await t.app
    .get(AccountService)
    .ensureAccount(email, password, role, overrides.name ?? `Test ${role}`);
  return login(t.http, email, password);
}

export const createAdmin = (t: TestApp, overrides?: { email?: string; password?: string }) =>
  createWithRole(t, 'admin', overrides);
export const createStaff = (t: TestApp, overrides?: { email?: string; password?: string }) =>
  createWithRole(t, 'staff', overrides);

/**
 * Test-only routes for authorization and per-user limits (never part of the real app). No
 * @Public(): the global default-deny guard protects them like any other route.
 */
@Controller('v1/__auth-probe')
class AuthProbeController {
  @Get('whoami')
  whoami(@CurrentPrincipal() me: Principal): Principal {
    return me;
  }

  @Get('orders')
  @RequirePermission('orders:read_all')
  readAll(): { ok: true } {
    return { ok: true };
  }

  @Post('refunds')
  @HttpCode(200)
  @RequirePermission('orders:refund')
  refund(): { ok: true } {
    return { ok: true };
  }

  @Post('orders')
  @HttpCode(200)
  @RateLimit('order-create')
  createOrder(): { ok: true } {
    return { ok: true };
  }
}

@Module({ controllers: [AuthProbeController] })
class AuthProbeModule {}

/** The real AppModule plus AuthProbeController: `bootTestApp({ module: withAuthProbe })`. */
export function withAuthProbe(config: AppConfig): DynamicModule {
  const root = AppModule.register(config);
  return { ...root, imports: [...(root.imports ?? []), AuthProbeModule] };
}
