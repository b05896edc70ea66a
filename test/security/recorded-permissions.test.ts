/**
 * Admin rights are held to the record, not to the token alone (identity review, finding 1).
 *
 * Two deployments that share a signing key (staging given production's `JWT_SECRET`, the same
 * default issuer and audience) accept each other's tokens: before, an admin token minted there —
 * a session and an account that do not exist here — was an admin here, refunds included. Every
 * route that declares a permission, and the queue board's bearer sign-in, now read the token's
 * session and its account's role from the database: a session not on record is 401, a role
 * taken away is 403 at once (not at the revocation record's next read, up to ~2 s later).
 */
import { createHmac } from 'node:crypto';
import { createAdmin, registerCustomer } from '../support/auth';
import { forgeToken, forgedAdminClaims } from '../support/forged-tokens';
import { TestApp, bootTestApp } from '../support/test-app';

describe('permissions held to the session and role on record', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  /** An admin token this deployment's own key signed, for a session and account not here. */
  const foreignAdminToken = () =>
    forgeToken('HS256', forgedAdminClaims(t.config), (body) =>
      createHmac('sha256', t.config.jwt.secret as string)
        .update(body)
        .digest(),
    );

  it("refuses another deployment's admin token (same key, no session here) with 401 on every admin route and the queue board, writing nothing", async () => {
    const token = foreignAdminToken();
    const categories = async () =>
      Number((await t.db.pool.query('SELECT count(*) AS n FROM categories')).rows[0].n);
    const before = await categories();
    const answers = [
      await t.http.get('/v1/admin/orders', { token }),
      await t.http.get('/admin/queues/api/queues', { token }),
      // a write, with and without an Idempotency-Key
      await t.http.post('/v1/admin/categories', { name: 'Forged', slug: 'forged' }, { token }),
      await t.http.post(
        '/v1/admin/categories',
        { name: 'Forged', slug: 'forged' },
        { token, headers: { 'idempotency-key': 'forged-category-1' } },
      ),
    ];
    expect(answers.map((r) => [r.status, r.body?.code])).toEqual(
      answers.map(() => [401, 'TOKEN_INVALID']),
    );
    expect(await categories()).toBe(before);
    // nothing kept under the key: a real admin's request with it is its own
    const admin = await createAdmin(t);
    const real = await t.http.post(
      '/v1/admin/categories',
      { name: 'Real', slug: `real-${Date.now()}` },
      { token: admin.accessToken, headers: { 'idempotency-key': 'forged-category-1' } },
    );
    expect(real.status).toBe(201);
  });

  it("refuses another deployment's token for an account that exists here too (a staging copy of the database: the same ids) on every route, not only the admin ones", async () => {
    const customer = await registerCustomer(t.http);
    const claims = {
      ...forgedAdminClaims(t.config),
      sub: customer.user.id,
      email: customer.email,
      role: 'customer',
    };
    const token = forgeToken('HS256', claims, (body) =>
      createHmac('sha256', t.config.jwt.secret as string)
        .update(body)
        .digest(),
    );
    for (const path of ['/v1/me', '/v1/orders', '/v1/cart']) {
      const res = await t.http.get(path, { token });
      expect([path, res.status, res.body?.code]).toEqual([path, 401, 'TOKEN_INVALID']);
      // the account's own session is served
      expect((await t.http.get(path, { token: customer.accessToken })).status).toBe(200);
    }
  });

  it('a role taken away is refused on the very next request, on the API and the queue board alike', async () => {
    const admin = await createAdmin(t);
    const setRole = (role: string) =>
      t.db.pool.query('UPDATE users SET role = $1 WHERE id = $2', [role, admin.user.id]);
    expect((await t.http.get('/v1/admin/orders', { token: admin.accessToken })).status).toBe(200);
    await setRole('customer');
    const demoted = await t.http.get('/v1/admin/orders', { token: admin.accessToken });
    // (403 as read here, or 401 once the role change's revocation has been seen: never 200)
    expect([403, 401]).toContain(demoted.status);
    const board = await t.http.get('/admin/queues/api/queues', { token: admin.accessToken });
    expect([403, 401]).toContain(board.status);
  });
});
