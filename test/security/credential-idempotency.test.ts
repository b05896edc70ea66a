import { Body, Controller, DynamicModule, HttpCode, Module, Post } from '@nestjs/common';
import { createHash, randomUUID } from 'node:crypto';
import { AppModule } from '../../src/app.module';
import { AuthModule } from '../../src/auth/auth.module';
import { AuthService } from '../../src/auth/auth.service';
import { PasswordHasher } from '../../src/auth/password-hasher';
import { Public } from '../../src/common/http/public.decorator';
import type { AppConfig } from '../../src/config/config';
import { TransactionHost } from '../../src/database/transaction-host';
import { TEST_PASSWORD, registerCustomer } from '../support/auth';
import { TestApp, bootTestApp } from '../support/test-app';

// Issue 10, finding 1: credential routes accept an Idempotency-Key and ignore it. No response
// carrying tokens is stored, a detected reuse stays revoked whatever happens to the request,
// and argon2 never runs while a transaction holds a pooled connection.

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * Test-only route: runs a refresh inside a transaction that then fails, as any request that
 * wraps the use case in a transaction and fails afterwards would (never part of the real app).
 */
@Controller('v1/__credential-probe')
class FailingRequestProbe {
  constructor(
    private readonly tx: TransactionHost,
    private readonly auth: AuthService,
  ) {}

  @Public()
  @Post('refresh-then-fail')
  @HttpCode(200)
  async refreshThenFail(@Body() body: { refreshToken: string }): Promise<{ refreshError: string }> {
    let refreshError = 'none';
    await this.tx
      .run(async () => {
        await this.auth.refresh(body.refreshToken, '127.0.0.1').catch((err: { code?: string }) => {
          refreshError = err.code ?? 'unknown';
        });
        throw new Error('the request fails after the refresh');
      })
      .catch(() => undefined);
    return { refreshError };
  }
}

@Module({ imports: [AuthModule], controllers: [FailingRequestProbe] })
class FailingRequestProbeModule {}

const withProbe = (config: AppConfig): DynamicModule => {
  const root = AppModule.register(config);
  return { ...root, imports: [...(root.imports ?? []), FailingRequestProbeModule] };
};

describe('security: credential routes ignore Idempotency-Key (issue 10, finding 1)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp({ module: withProbe });
  });
  afterAll(async () => {
    await t?.close();
  });

  const key = () => `k-${randomUUID()}`;
  const familyOf = async (refreshToken: string) =>
    (
      await t.db.pool.query<{ revoked_at: Date | null; revoked_reason: string | null }>(
        `SELECT f.revoked_at, f.revoked_reason FROM refresh_tokens t
           JOIN refresh_token_families f ON f.id = t.family_id WHERE t.token_hash = $1`,
        [sha256(refreshToken)],
      )
    ).rows[0];
  const storedCredentialRecords = async () =>
    (
      await t.db.pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM idempotency_keys
          WHERE route LIKE '/v1/auth/%' OR route = '/v1/me/password'`,
      )
    ).rows[0].n;

  it('keeps a family revoked when the reuse was detected on a request with a key', async () => {
    const s = await registerCustomer(t.http);
    const first = await t.http.post(
      '/v1/auth/refresh',
      { refreshToken: s.refreshToken },
      { idempotencyKey: key() },
    );
    expect(first.status).toBe(200);
    const reuse = await t.http.post(
      '/v1/auth/refresh',
      { refreshToken: s.refreshToken },
      { idempotencyKey: key() },
    );
    expect(reuse.status).toBe(401);
    expect(reuse.body.code).toBe('REFRESH_TOKEN_REUSED');

    // the newest token of the family is dead too: the revocation was committed
    const newest = await t.http.post('/v1/auth/refresh', {
      refreshToken: first.body.refreshToken,
    });
    expect(newest.status).toBe(401);
    expect((await familyOf(first.body.refreshToken)).revoked_reason).toBe('reuse-detected');
  });

  it('revokes for good when 10 concurrent refreshes with one token each carry their own key', async () => {
    const s = await registerCustomer(t.http);
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        t.http.post(
          '/v1/auth/refresh',
          { refreshToken: s.refreshToken },
          { idempotencyKey: key() },
        ),
      ),
    );
    const winners = answers.filter((r) => r.status === 200);
    expect(winners).toHaveLength(1);
    expect(answers.filter((r) => r.status === 401).map((r) => r.body.code)).toEqual(
      Array(9).fill('REFRESH_TOKEN_REUSED'),
    );
    // invariant on the database: the family is revoked, so its newest token is dead too
    const family = await familyOf(winners[0].body.refreshToken);
    expect(family.revoked_reason).toBe('reuse-detected');
    expect(
      (await t.http.post('/v1/auth/refresh', { refreshToken: winners[0].body.refreshToken }))
        .status,
    ).toBe(401);
    expect(await storedCredentialRecords()).toBe('0');
  });

  it('never answers a spent refresh token with tokens, even replayed with its own key', async () => {
    const s = await registerCustomer(t.http);
    const k = key();
    const first = await t.http.post(
      '/v1/auth/refresh',
      { refreshToken: s.refreshToken },
      { idempotencyKey: k },
    );
    expect(first.status).toBe(200);
    const replay = await t.http.post(
      '/v1/auth/refresh',
      { refreshToken: s.refreshToken },
      { idempotencyKey: k },
    );
    expect(replay.status).toBe(401);
    expect(replay.body.code).toBe('REFRESH_TOKEN_REUSED');
    expect(replay.headers.get('idempotent-replayed')).toBeNull();
    expect(replay.text).not.toContain(first.body.refreshToken);
    expect(replay.text).not.toContain(first.body.accessToken);
    // and the replay counted as reuse: the family is revoked
    expect((await familyOf(first.body.refreshToken)).revoked_at).not.toBeNull();
  });

  it('stores nothing in idempotency_keys for any credential route, with or without a key', async () => {
    const email = `c-${randomUUID()}@test.local`;
    const registerBody = { email, password: TEST_PASSWORD, name: 'Key Holder' };
    const k = key();
    const reg = await t.http.post('/v1/auth/register', registerBody, { idempotencyKey: k });
    expect(reg.status).toBe(201);
    // the same key and body again is a fresh request, not a replay of the first tokens
    const again = await t.http.post('/v1/auth/register', registerBody, { idempotencyKey: k });
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('EMAIL_TAKEN');

    const loginKey = key();
    const logins = [];
    for (const idempotencyKey of [loginKey, loginKey, undefined]) {
      const res = await t.http.post(
        '/v1/auth/login',
        { email, password: TEST_PASSWORD },
        { idempotencyKey },
      );
      expect(res.status).toBe(200);
      expect(res.headers.get('idempotent-replayed')).toBeNull();
      logins.push(res.body);
    }
    expect(new Set(logins.map((l) => l.refreshToken)).size).toBe(3);

    const refreshed = await t.http.post(
      '/v1/auth/refresh',
      { refreshToken: logins[0].refreshToken },
      { idempotencyKey: key() },
    );
    expect(refreshed.status).toBe(200);
    expect(
      (await t.http.post('/v1/auth/refresh', { refreshToken: logins[1].refreshToken })).status,
    ).toBe(200);
    expect(
      (
        await t.http.post(
          '/v1/auth/logout',
          { refreshToken: refreshed.body.refreshToken },
          { idempotencyKey: key() },
        )
      ).status,
    ).toBe(204);
    expect(
      (await t.http.post('/v1/auth/logout', { refreshToken: logins[2].refreshToken })).status,
    ).toBe(204);

    const passwordKey = key();
    const changed = await t.http.post(
      '/v1/me/password',
      { currentPassword: TEST_PASSWORD, newPassword: 'a-new-password-1' },
      { token: reg.body.accessToken, idempotencyKey: passwordKey },
    );
    expect(changed.status).toBe(204);
    const other = await registerCustomer(t.http);
    expect(
      (
        await t.http.post(
          '/v1/me/password',
          { currentPassword: TEST_PASSWORD, newPassword: 'a-new-password-2' },
          { token: other.accessToken },
        )
      ).status,
    ).toBe(204);

    expect(await storedCredentialRecords()).toBe('0');
    // every body stored: a record's own (written before idempotency_bodies) and the shared ones
    const all = await t.db.pool.query<{ response_body: string | null }>(
      `SELECT response_body FROM idempotency_keys UNION ALL SELECT body FROM idempotency_bodies`,
    );
    for (const row of all.rows) {
      for (const l of logins) expect(row.response_body ?? '').not.toContain(l.refreshToken);
    }
  });

  it('accepts a malformed key on a credential route and ignores it', async () => {
    const s = await registerCustomer(t.http);
    const res = await t.http.post(
      '/v1/auth/login',
      { email: s.email, password: s.password },
      { idempotencyKey: 'x'.repeat(300) },
    );
    expect(res.status).toBe(200);
    expect(res.body.accessToken).toEqual(expect.any(String));
    expect(await storedCredentialRecords()).toBe('0');
  });

  it('never runs argon2 while a transaction is open, with or without a key', async () => {
    const hasher = t.app.get(PasswordHasher);
    const tx = t.app.get(TransactionHost);
    const inTransaction: string[] = [];
    const spies = (['hash', 'verify', 'verifyDummy'] as const).map((method) => {
      const original = hasher[method].bind(hasher) as (...a: unknown[]) => Promise<unknown>;
      return jest.spyOn(hasher, method).mockImplementation(((...args: unknown[]) => {
        if (tx.inTransaction) inTransaction.push(method);
        return original(...args);
      }) as never);
    });
    try {
      for (const withKey of [true, false]) {
        const idempotencyKey = () => (withKey ? key() : undefined);
        const email = `c-${randomUUID()}@test.local`;
        const reg = await t.http.post(
          '/v1/auth/register',
          { email, password: TEST_PASSWORD, name: 'Hasher' },
          { idempotencyKey: idempotencyKey() },
        );
        expect(reg.status).toBe(201);
        const signedIn = await t.http.post(
          '/v1/auth/login',
          { email, password: TEST_PASSWORD },
          { idempotencyKey: idempotencyKey() },
        );
        expect(signedIn.status).toBe(200);
        const unknown = await t.http.post(
          '/v1/auth/login',
          { email: `nobody-${randomUUID()}@test.local`, password: TEST_PASSWORD },
          { idempotencyKey: idempotencyKey() },
        );
        expect(unknown.status).toBe(401);
        const changed = await t.http.post(
          '/v1/me/password',
          { currentPassword: TEST_PASSWORD, newPassword: 'another-password-9' },
          { token: signedIn.body.accessToken, idempotencyKey: idempotencyKey() },
        );
        expect(changed.status).toBe(204);
      }
      const calls = spies.reduce((n, spy) => n + spy.mock.calls.length, 0);
      expect(calls).toBeGreaterThanOrEqual(8);
      expect(inTransaction).toEqual([]);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });

  it('commits a reuse revocation even when the request that detected it fails', async () => {
    const s = await registerCustomer(t.http);
    const rotated = await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
    expect(rotated.status).toBe(200);
    const probe = await t.http.post('/v1/__credential-probe/refresh-then-fail', {
      refreshToken: s.refreshToken,
    });
    expect(probe.status).toBe(200);
    expect(probe.body.refreshError).toBe('REFRESH_TOKEN_REUSED');

    expect((await familyOf(rotated.body.refreshToken)).revoked_reason).toBe('reuse-detected');
    const newest = await t.http.post('/v1/auth/refresh', {
      refreshToken: rotated.body.refreshToken,
    });
    expect(newest.status).toBe(401);
  });
});
