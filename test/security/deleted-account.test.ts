import { registerCustomer } from '../support/auth';
import { insertProduct, newKey } from '../support/fixtures';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * An account an operator deleted (no route does: an erasure request, by hand) while one of its
 * access tokens was still valid. GET /v1/me answered 401, but a write for it met the foreign key
 * its rows need and was a 409 "reload and retry": a client looping on a conflict for an account
 * that is gone.
 */
describe('an access token that outlived its account', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('is 401 UNAUTHENTICATED on the writes that need the account (cart, checkout with and without a key), and nothing is written', async () => {
    const gone = await registerCustomer(t.http);
    const p = await insertProduct(t.db.pool, { stock: 5 });
    await t.db.pool.query(`DELETE FROM users WHERE id = $1`, [gone.user.id]);
    const token = gone.accessToken;
    for (const res of [
      await t.http.put(`/v1/cart/items/${p}`, { quantity: 1 }, { token }),
      await t.http.post(
        '/v1/orders',
        { items: [{ productId: p, quantity: 1 }] },
        { token, idempotencyKey: newKey() },
      ),
      await t.http.get('/v1/me', { token }),
    ]) {
      // (TOKEN_INVALID once the revocation polls have read the deletion's tombstones, 2 s at most)
      expect(res.status).toBe(401);
      expect(['UNAUTHENTICATED', 'TOKEN_INVALID']).toContain(res.body.code);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    }
    const { rows } = await t.db.pool.query(
      `SELECT (SELECT count(*) FROM orders WHERE user_id = $1)::int AS orders,
              (SELECT count(*) FROM cart_items WHERE user_id = $1)::int AS cart,
              (SELECT reserved FROM inventory_items WHERE product_id = $2)::int AS reserved`,
      [gone.user.id, p],
    );
    expect(rows[0]).toEqual({ orders: 0, cart: 0, reserved: 0 });
  });
});
