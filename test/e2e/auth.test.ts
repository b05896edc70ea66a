import { createHmac, randomUUID } from 'node:crypto';
import { createAdmin, registerCustomer, TEST_PASSWORD } from '../support/auth';
import { TestApp, bootTestApp } from '../support/test-app';

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** Hand-made JWTs for the refusal cases. */
function forge(header: object, payload: object, secret: string, alg = 'sha256'): string {
  const body = `${b64(header)}.${b64(payload)}`;
  const sig = alg === 'none' ? '' : createHmac(alg, secret).update(body).digest('base64url');
  return `${body}.${sig}`;
}

describe('auth: accounts, tokens, permissions', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('registers, logs in, reads /me, refreshes and logs out', async () => {
    const email = `  Asha.${randomUUID()}@Example.COM `;
    const reg = await t.http.post('/v1/auth/register', { email, password: TEST_PASSWORD, name: 'Asha' });
    expect(reg.status).toBe(201);
    expect(reg.body).toMatchObject({
      user: { email: email.trim().toLowerCase(), name: 'Asha', role: 'customer' },
      expiresIn: 900,
    });
    expect(reg.body.refreshToken.length).toBeGreaterThanOrEqual(43); // 256 bits, base64url

    const login = await t.http.post('/v1/auth/login', { email: email.toUpperCase(), password: TEST_PASSWORD });
    expect(login.status).toBe(200);
    const me = await t.http.get('/v1/me', { token: login.body.accessToken });
    expect(me.status).toBe(200);
    expect(me.body).toEqual({ id: reg.body.user.id, email: email.trim().toLowerCase(), name: 'Asha', role: 'customer' });

    const refreshed = await t.http.post('/v1/auth/refresh', { refreshToken: login.body.refreshToken });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.refreshToken).not.toBe(login.body.refreshToken);
    expect((await t.http.get('/v1/me', { token: refreshed.body.accessToken })).status).toBe(200);

    expect((await t.http.post('/v1/auth/logout', { refreshToken: refreshed.body.refreshToken })).status).toBe(204);
    const after = await t.http.post('/v1/auth/refresh', { refreshToken: refreshed.body.refreshToken });
    expect(after.status).toBe(401);
  });

  it('stores only argon2id hashes at or above OWASP minimums, and no refresh token in clear', async () => {
    const s = await registerCustomer(t.http);
    const row = (await t.db.pool.query(`SELECT password_hash FROM users WHERE id = $1`, [s.user.id])).rows[0];
    const m = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(row.password_hash);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThanOrEqual(19456);
    expect(Number(m![2])).toBeGreaterThanOrEqual(2);
    expect(Number(m![3])).toBeGreaterThanOrEqual(1);
    const tokens = await t.db.pool.query(`SELECT token_hash FROM refresh_tokens WHERE token_hash = $1`, [s.refreshToken]);
    expect(tokens.rowCount).toBe(0);
  });

  it('re-hashes on login when the stored hash has weaker parameters', async () => {
    const { hash, Algorithm } = await import('@node-rs/argon2');
    const s = await registerCustomer(t.http);
    const weak = await hash(TEST_PASSWORD, { algorithm: Algorithm.Argon2id, memoryCost: 4096, timeCost: 1, parallelism: 1 });
    await t.db.pool.query(`UPDATE users SET password_hash = $2 WHERE id = $1`, [s.user.id, weak]);
    expect((await t.http.post('/v1/auth/login', { email: s.email, password: TEST_PASSWORD })).status).toBe(200);
    const row = (await t.db.pool.query(`SELECT password_hash FROM users WHERE id = $1`, [s.user.id])).rows[0];
    expect(row.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
  });

  it('refuses weak or oversized passwords (400), duplicate emails (409), and role in the body (400)', async () => {
    const short = await t.http.post('/v1/auth/register', { email: `${randomUUID()}@x.io`, password: 'short', name: 'x' });
    expect(short.status).toBe(400);
    expect(short.body.errors[0].field).toBe('password');
    const long = await t.http.post('/v1/auth/register', { email: `${randomUUID()}@x.io`, password: 'p'.repeat(129), name: 'x' });
    expect(long.status).toBe(400);
    const email = `${randomUUID()}@x.io`;
    const dupes = await Promise.all(
      [1, 2, 3].map(() => t.http.post('/v1/auth/register', { email, password: TEST_PASSWORD, name: 'x' })),
    );
    expect(dupes.map((r) => r.status).sort()).toEqual([201, 409, 409]);
    expect(dupes.find((r) => r.status === 409)!.body.code).toBe('EMAIL_TAKEN');
    const role = await t.http.post('/v1/auth/register', { email: `${randomUUID()}@x.io`, password: TEST_PASSWORD, name: 'x', role: 'admin' });
    expect(role.status).toBe(400);
    expect(role.body.errors).toEqual([expect.objectContaining({ field: 'role' })]);
  });

  it('answers unknown email and wrong password the same way', async () => {
    const s = await registerCustomer(t.http);
    const wrong = await t.http.post('/v1/auth/login', { email: s.email, password: 'not-the-password' });
    const unknown = await t.http.post('/v1/auth/login', { email: `${randomUUID()}@x.io`, password: 'not-the-password' });
    for (const r of [wrong, unknown]) {
      expect(r.status).toBe(401);
      expect(r.body.code).toBe('INVALID_CREDENTIALS');
      expect(r.body.detail).toBe(wrong.body.detail);
    }
  });

  describe('access-token refusals', () => {
    let secret: string;
    let good: { sub: string; email: string; role: string; fam: string };
    const now = () => Math.floor(Date.now() / 1000);

    beforeAll(async () => {
      secret = t.config.jwt.secret;
      const s = await registerCustomer(t.http);
      const claims = JSON.parse(Buffer.from(s.accessToken.split('.')[1], 'base64url').toString());
      good = { sub: claims.sub, email: claims.email, role: claims.role, fam: claims.fam };
    });

    const base = () => ({ ...good, typ: 'access', iss: t.config.jwt.issuer, aud: t.config.jwt.audience, iat: now(), exp: now() + 60 });
    const expect401 = async (token: string) => {
      const res = await t.http.get('/v1/me', { token });
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toMatch(/problem\+json/);
    };

    it('accepts a correctly made token (control)', async () => {
      expect((await t.http.get('/v1/me', { token: forge({ alg: 'HS256', typ: 'JWT' }, base(), secret) })).status).toBe(200);
    });
    it('refuses alg none', () => expect401(forge({ alg: 'none', typ: 'JWT' }, base(), secret, 'none')));
    it('refuses another algorithm (HS512)', () => expect401(forge({ alg: 'HS512', typ: 'JWT' }, base(), secret, 'sha512')));
    it('refuses a wrong audience', () => expect401(forge({ alg: 'HS256' }, { ...base(), aud: 'someone-else' }, secret)));
    it('refuses a wrong issuer', () => expect401(forge({ alg: 'HS256' }, { ...base(), iss: 'evil' }, secret)));
    it('refuses an expired token', () => expect401(forge({ alg: 'HS256' }, { ...base(), iat: now() - 120, exp: now() - 60 }, secret)));
    it('refuses a token of another type', () => expect401(forge({ alg: 'HS256' }, { ...base(), typ: 'refresh' }, secret)));
    it('refuses a token signed with another key', () => expect401(forge({ alg: 'HS256' }, base(), 'x'.repeat(40))));
    it('refuses garbage and a missing header', async () => {
      await expect401('not.a.jwt');
      expect((await t.http.get('/v1/me')).status).toBe(401);
    });
  });

  it('revokes the whole family when a spent refresh token is presented again', async () => {
    const s = await registerCustomer(t.http);
    const first = await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
    expect(first.status).toBe(200);
    // the stolen (old) token is replayed later, after the race leeway
    await t.db.pool.query(`UPDATE refresh_tokens SET spent_at = spent_at - interval '1 minute' WHERE spent_at IS NOT NULL`);
    const replay = await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken });
    expect(replay.status).toBe(401);
    expect(replay.body.code).toBe('REFRESH_TOKEN_REUSED');
    const owner = await t.http.post('/v1/auth/refresh', { refreshToken: first.body.refreshToken });
    expect(owner.status).toBe(401);
  });

  it('lets exactly one of 10 concurrent refreshes with one token win; the family stays usable', async () => {
    const s = await registerCustomer(t.http);
    const results = await Promise.all(
      Array.from({ length: 10 }, () => t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken })),
    );
    const winners = results.filter((r) => r.status === 200);
    expect(winners).toHaveLength(1);
    expect(results.filter((r) => r.status === 401)).toHaveLength(9);
    // duplicates within the race leeway are refused without revoking the winner's family
    const next = await t.http.post('/v1/auth/refresh', { refreshToken: winners[0].body.refreshToken });
    expect(next.status).toBe(200);
  });

  it('revokes every session when the password changes', async () => {
    const s = await registerCustomer(t.http);
    const other = await t.http.post('/v1/auth/login', { email: s.email, password: TEST_PASSWORD });
    const changed = await t.http.post(
      '/v1/me/password',
      { currentPassword: TEST_PASSWORD, newPassword: 'a-brand-new-password' },
      { token: s.accessToken },
    );
    expect(changed.status).toBe(204);
    expect((await t.http.post('/v1/auth/refresh', { refreshToken: s.refreshToken })).status).toBe(401);
    expect((await t.http.post('/v1/auth/refresh', { refreshToken: other.body.refreshToken })).status).toBe(401);
    expect((await t.http.post('/v1/auth/login', { email: s.email, password: 'a-brand-new-password' })).status).toBe(200);
  });

  it('checks permissions, not role names: customer 403, admin allowed', async () => {
    const customer = await registerCustomer(t.http);
    const admin = await createAdmin(t);
    expect((await t.http.get('/v1/admin/orders', { token: customer.accessToken })).status).toBe(403);
    expect((await t.http.get('/v1/admin/orders', { token: admin.accessToken })).status).toBe(200);
    expect((await t.http.get('/v1/admin/orders')).status).toBe(401);
  });
});
