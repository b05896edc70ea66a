import { randomUUID } from 'node:crypto';
import type { HttpClient } from './http';
import type { TestApp } from './test-app';
import { AuthService } from '../../src/auth/auth.service';
import type { Role } from '../../src/auth/permissions';

export interface Session {
  user: { id: string; email: string; name: string; role: string };
  accessToken: string;
  refreshToken: string;
  email: string;
  password: string;
}

export const TEST_PASSWORD = 'correct-horse-battery';

/** Registers a customer over HTTP. */
export async function registerCustomer(
  http: HttpClient,
  overrides: { email?: string; password?: string; name?: string; headers?: Record<string, string> } = {},
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

/** Creates (or promotes) an account with a role through the service, then logs in over HTTP. */
export async function createWithRole(t: TestApp, role: Role): Promise<Session> {
  const email = `${role}-${randomUUID()}@test.local`;
  await t.app.get(AuthService).ensureAccount(email, TEST_PASSWORD, role, `Test ${role}`);
  const res = await t.http.post('/v1/auth/login', { email, password: TEST_PASSWORD });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.text}`);
  return { ...res.body, email, password: TEST_PASSWORD };
}

export const createAdmin = (t: TestApp): Promise<Session> => createWithRole(t, 'admin');
export const createStaff = (t: TestApp): Promise<Session> => createWithRole(t, 'staff');
