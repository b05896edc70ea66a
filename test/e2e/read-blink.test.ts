import { randomUUID } from 'node:crypto';
import { createAdmin } from '../support/auth';
import { createCategory, createProduct } from '../support/catalog';
import { newKey } from '../support/fixtures';
import { expectProblem } from '../support/http';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { PgCommitProxy, startPgCommitProxy } from '../support/pg-commit-proxy';
import { TestApp, bootTestApp } from '../support/test-app';
import { createTestDatabase } from '../support/test-database';

/**
 * A database blink (a restart, a backend ended, a pooler's reset) kills the connections open at
 * that moment. A transaction whose connection died before its COMMIT was run again on another
 * connection, but a read outside one was not: every read route with a statement in flight — a
 * listing, the cart, the order history, an admin view (its permission read in the guard) —
 * answered 503, where the same read a moment later went through. Each read route here has the
 * next statement on its own table cut as it goes out, and answers what it answers unblinked.
 */
describe('a read whose connection dies under it', () => {
  let t: TestApp;
  let proxy: PgCommitProxy;
  let admin: string;
  let alice: Buyer;
  let productId: string;
  let orderId: string;

  beforeAll(async () => {
    const db = await createTestDatabase();
    proxy = await startPgCommitProxy(db.url);
    t = await bootTestApp({ db, env: { DATABASE_URL: proxy.through(db.url) } });
    admin = (await createAdmin(t)).accessToken;
    [alice] = await buyers(t.http, 1);
    productId = (await createProduct(t, admin, { stock: 50 })).id;
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    expect(order.status).toBe(201);
    orderId = order.body.id;
    const cart = await t.http.request(
      'PUT',
      `/v1/cart/items/${productId}`,
      { quantity: 2 },
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(cart.status).toBe(200);
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await t?.db.drop();
    await proxy?.close();
  });

  /** Reads `path` with the next statement matching `table` cut; the cut fell inside the request. */
  const readBlinked = async (
    method: string,
    path: string,
    token: string | undefined,
    table: RegExp,
  ) => {
    const cutsBefore = proxy.cuts;
    let cut = false;
    const armed = proxy.cutNextStatement(table).then(() => (cut = true));
    const res = await t.http.request(method, path, undefined, { token });
    expect({ path, cut }).toEqual({ path, cut: true });
    await armed;
    expect(proxy.cuts).toBe(cutsBefore + 1);
    return res;
  };

  // (each catalog read asks for what no cache holds yet: a new product, category or search)
  const routes: [string, () => string, 'anonymous' | 'customer' | 'admin', RegExp][] = [
    ['the account', () => '/v1/me', 'customer', /"users"/],
    [
      'a search',
      () => `/v1/products?q=blink${randomUUID().slice(0, 8)}`,
      'anonymous',
      /"products"/,
    ],
    ['the cart', () => '/v1/cart', 'customer', /cart_items/],
    ['the order history', () => '/v1/orders', 'customer', /"orders"/],
    ['an order', () => `/v1/orders/${orderId}`, 'customer', /"orders"/],
    ['reviews', () => `/v1/products/${productId}/reviews`, 'anonymous', /reviews/],
    ['recommendations', () => '/v1/me/recommendations', 'customer', /product_recommendations/],
    ["the admin's orders (their handler)", () => '/v1/admin/orders', 'admin', /"orders"/],
    [
      "the admin's orders (the permission read)",
      () => '/v1/admin/orders',
      'admin',
      /refresh_token_families/,
    ],
    [
      "the admin's order (the permission read)",
      () => `/v1/admin/orders/${orderId}`,
      'admin',
      /refresh_token_families/,
    ],
  ];

  it.each(routes)('%s answers as unblinked', async (_name, path, as, table) => {
    const token = as === 'customer' ? alice.token : as === 'admin' ? admin : undefined;
    const url = path();
    const blinked = await readBlinked('GET', url, token, table);
    expect({ status: blinked.status, body: blinked.text.slice(0, 300) }).toMatchObject({
      status: 200,
    });
    const plain = await t.http.request('GET', url, undefined, { token });
    expect(blinked.body).toEqual(plain.body);
  });

  it("a new product's page and a new category list, and a HEAD, are read through a blink", async () => {
    const product = await createProduct(t, admin, { stock: 3 });
    const detail = await readBlinked('GET', `/v1/products/${product.id}`, undefined, /"products"/);
    expect(detail.status).toBe(200);
    expect(detail.body.id).toBe(product.id);

    const category = await createCategory(t, admin);
    const categories = await readBlinked('GET', '/v1/categories', undefined, /"categories"/);
    expect(categories.status).toBe(200);
    expect(JSON.stringify(categories.body)).toContain(category.id);

    const head = await readBlinked('HEAD', '/v1/cart', alice.token, /cart_items/);
    expect(head.status).toBe(200);
  });

  it('a read whose second connection dies too answers 503 with Retry-After: run again once only', async () => {
    const cutsBefore = proxy.cuts;
    const stop = proxy.cutStatements(/cart_items/);
    try {
      const res = await t.http.get('/v1/cart', { token: alice.token });
      expectProblem(res, 503, 'SERVICE_UNAVAILABLE');
      expect(res.headers.get('retry-after')).toBe('1');
    } finally {
      stop();
    }
    expect(proxy.cuts).toBe(cutsBefore + 2);
    expect((await t.http.get('/v1/cart', { token: alice.token })).status).toBe(200);
  });

  it('a read in a transaction its host ran again already (an order, a search) is not run a third and fourth time', async () => {
    for (const [path, table] of [
      [`/v1/orders/${orderId}`, /"orders"/],
      [`/v1/products?q=again${randomUUID().slice(0, 8)}`, /"products"/],
    ] as const) {
      const cutsBefore = proxy.cuts;
      const stop = proxy.cutStatements(table);
      try {
        const res = await t.http.get(path, { token: alice.token });
        expectProblem(res, 503, 'SERVICE_UNAVAILABLE');
        expect(res.headers.get('retry-after')).toBe('1');
      } finally {
        stop();
      }
      expect({ path, cuts: proxy.cuts - cutsBefore }).toEqual({ path, cuts: 2 });
    }
  });

  it("a write's handler is not run again by it: a blink under a cart change is the transaction's own", async () => {
    // the cart line's write is a transaction: run again before its COMMIT by TransactionHost (once),
    // never by the read rerun — a PUT is not a safe method
    const cutsBefore = proxy.cuts;
    const stop = proxy.cutStatements(/cart_items/);
    try {
      const res = await t.http.request(
        'PUT',
        `/v1/cart/items/${productId}`,
        { quantity: 3 },
        { token: alice.token, idempotencyKey: newKey() },
      );
      expectProblem(res, 503, 'SERVICE_UNAVAILABLE');
    } finally {
      stop();
    }
    expect(proxy.cuts).toBe(cutsBefore + 2);
  });
});
