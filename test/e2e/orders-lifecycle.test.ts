import { randomUUID } from 'node:crypto';
import { createAdmin } from '../support/auth';
import { assertStockInvariants, insertProduct, newKey, stockOf } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { HttpResponse, expectProblem } from '../support/http';
import { TestApp, bootTestApp } from '../support/test-app';
import { ORDER_PAGE_LINE_BUDGET } from '../../src/orders/order.repository';
import { repairOrders } from '../support/order-status';

describe('orders: cart checkout, reads, cancel, admin', () => {
  let t: TestApp;
  let alice: Buyer;
  let bob: Buyer;
  let admin: string;

  const cancel = (b: Buyer, id: string) =>
    t.http.post(`/v1/orders/${id}/cancel`, {}, { token: b.token, idempotencyKey: newKey() });

  beforeAll(async () => {
    t = await bootTestApp();
    [alice, bob] = await buyers(t.http, 2);
    admin = (await createAdmin(t)).accessToken;
  });
  afterAll(async () => {
    await t?.close();
  });

  it('creates an order with price snapshots, totals and a reservation deadline', async () => {
    const p1 = await insertProduct(t.db.pool, { stock: 10, priceAmount: 24900 });
    const p2 = await insertProduct(t.db.pool, { stock: 10, priceAmount: 1050 });
    const res = await placeOrder(t.http, alice, [
      { productId: p1, quantity: 2 },
      { productId: p2, quantity: 3 },
    ]);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      status: 'INVENTORY_RESERVED',
      total: { amount: 2 * 24900 + 3 * 1050, currency: 'INR' },
    });
    const line = res.body.items.find((i: { productId: string }) => i.productId === p1);
    expect(line).toMatchObject({
      quantity: 2,
      unitPrice: { amount: 24900, currency: 'INR' },
      lineTotal: { amount: 49800, currency: 'INR' },
    });
    const ttl = Date.parse(res.body.reservationExpiresAt) - Date.parse(res.body.createdAt);
    expect(ttl).toBe(t.config.reservationTtlSeconds * 1000);

    // A later price change never alters the order.
    await t.db.pool.query(`UPDATE products SET price_amount = 1 WHERE id = $1`, [p1]);
    const again = await t.http.get(`/v1/orders/${res.body.id}`, { token: alice.token });
    expect(again.body.total.amount).toBe(2 * 24900 + 3 * 1050);
    expect(again.body.history.map((h: { to: string }) => h.to)).toEqual([
      'CREATED',
      'INVENTORY_RESERVED',
    ]);
  });

  it('keeps the snapshot through the admin API: a product renamed, repriced, then deleted leaves the order as it was', async () => {
    const p = await insertProduct(t.db.pool, { stock: 10, priceAmount: 3100 });
    const placed = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    expect(placed.status).toBe(201);
    const line = placed.body.items[0];
    const renamed = await t.http.patch(
      `/v1/admin/products/${p}`,
      { name: 'Renamed later', price: { amount: 9900, currency: 'INR' } },
      { token: admin },
    );
    expect(renamed.status).toBe(200);
    expect((await t.http.delete(`/v1/admin/products/${p}`, { token: admin })).status).toBe(204);
    const read = await t.http.get(`/v1/orders/${placed.body.id}`, { token: alice.token });
    expect(read.status).toBe(200);
    expect(read.body.items).toEqual([line]);
    expect(read.body.items[0]).toMatchObject({
      sku: line.sku,
      name: line.name,
      unitPrice: { amount: 3100, currency: 'INR' },
    });
    expect(read.body.total).toEqual(placed.body.total);
    const listed = await t.http.get('/v1/orders?limit=100', { token: alice.token });
    expect(listed.body.items.find((o: { id: string }) => o.id === placed.body.id).items).toEqual([
      line,
    ]);
    // and the product itself is gone from the catalog (404, as API.md says for inactive products)
    expect((await t.http.get(`/v1/products/${p}`)).status).toBe(404);
  });

  it('refuses empty orders, quantity < 1 and duplicate lines with 400, unknown or inactive products with 409', async () => {
    const p = await insertProduct(t.db.pool, { stock: 10 });
    const inactive = await insertProduct(t.db.pool, { stock: 10, active: false });
    const empty = await t.http.post(
      '/v1/orders',
      { items: [] },
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(empty.status).toBe(400);
    const zero = await placeOrder(t.http, alice, [{ productId: p, quantity: 0 }]);
    expect(zero.status).toBe(400);
    expect(zero.body.errors[0].field).toBe('items.0.quantity');
    const dup = await placeOrder(t.http, alice, [
      { productId: p, quantity: 1 },
      { productId: p, quantity: 2 },
    ]);
    expect(dup.status).toBe(400);
    // UUIDs are case-insensitive: the same product in upper case is the same line
    const dupByCase = await placeOrder(t.http, alice, [
      { productId: p, quantity: 1 },
      { productId: p.toUpperCase(), quantity: 2 },
    ]);
    expect(dupByCase.status).toBe(400);
    const [carol] = await buyers(t.http, 1);
    const upper = await placeOrder(t.http, carol, [{ productId: p.toUpperCase(), quantity: 1 }]);
    expect(upper.status).toBe(201);
    expect(upper.body.items[0].productId).toBe(p);
    // and an upper-case order id in the path names the same order (UuidParamPipe)
    const read = await t.http.get(`/v1/orders/${upper.body.id.toUpperCase()}`, {
      token: carol.token,
    });
    expect(read.status).toBe(200);
    expect(read.body.id).toBe(upper.body.id);
    const status = await t.http.post(
      '/v1/orders',
      { items: [{ productId: p, quantity: 1 }], status: 'PAID', total: 1 },
      { token: alice.token, idempotencyKey: newKey() },
    );
    expect(status.status).toBe(400);
    const gone = await placeOrder(t.http, alice, [
      { productId: inactive, quantity: 1 },
      { productId: '00000000-0000-4000-8000-000000000000', quantity: 1 },
    ]);
    expect(gone.status).toBe(409);
    expect(gone.body.code).toBe('PRODUCT_UNAVAILABLE');
    expect(gone.body.products).toHaveLength(2);
    const emptyCart = await placeOrder(t.http, bob, undefined);
    expect(emptyCart.status).toBe(400);
    expect(emptyCart.body.code).toBe('ORDER_EMPTY');
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 10, reserved: 1 });
  });

  it('an order under the smallest charge (free products alone; here, with the development gateway, a total of nothing) is refused 409 ORDER_NOT_PAYABLE before anything is held — its key retried, from the cart too', async () => {
    const free = await insertProduct(t.db.pool, { stock: 5, priceAmount: 0 });
    const alsoFree = await insertProduct(t.db.pool, { stock: 5, priceAmount: 0 });
    const carol = (await buyers(t.http, 1))[0];
    for (const items of [
      [{ productId: free, quantity: 5 }],
      [
        { productId: free, quantity: 1 },
        { productId: alsoFree, quantity: 4 },
      ],
    ]) {
      const idempotencyKey = newKey();
      for (let attempt = 0; attempt < 2; attempt++) {
        // (the same key again: refused the same way)
        const res = await t.http.post(
          '/v1/orders',
          { items },
          { token: carol.token, idempotencyKey },
        );
        expectProblem(res, 409, 'ORDER_NOT_PAYABLE');
      }
    }
    expect(
      (await t.http.put(`/v1/cart/items/${free}`, { quantity: 2 }, { token: carol.token })).status,
    ).toBe(200);
    expectProblem(
      await t.http.post('/v1/orders', {}, { token: carol.token, idempotencyKey: newKey() }),
      409,
      'ORDER_NOT_PAYABLE',
    );
    // nothing held, nothing written, the cart as it was
    expect(await stockOf(t.db.pool, free)).toMatchObject({ reserved: 0 });
    expect(await stockOf(t.db.pool, alsoFree)).toMatchObject({ reserved: 0 });
    const { rows } = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM orders WHERE user_id = $1`,
      [carol.userId],
    );
    expect(rows[0].n).toBe(0);
    expect((await t.http.get('/v1/cart', { token: carol.token })).body.items).toHaveLength(1);
    // a free product beside a paid one is fine: the order totals enough (1 paisa is chargeable
    // by the development gateway; under Stripe the smallest is 50, test/e2e/payments-stripe)
    const paid = await insertProduct(t.db.pool, { stock: 5, priceAmount: 1 });
    const mixed = await placeOrder(t.http, carol, [
      { productId: free, quantity: 1 },
      { productId: paid, quantity: 1 },
    ]);
    expect(mixed.status).toBe(201);
    expect(mixed.body.total.amount).toBe(1);
  });

  it("an order over the provider's largest charge (Stripe's eight digits) is refused 409 ORDER_NOT_PAYABLE before anything is held — its key retried, from the cart too; at the maximum it is taken", async () => {
    // 2 × 50,000,000 = 100,000,000 minor units: one more than 99,999,999 (₹999,999.99)
    const dear = await insertProduct(t.db.pool, { stock: 5, priceAmount: 50_000_000 });
    const dave = (await buyers(t.http, 1))[0];
    const idempotencyKey = newKey();
    for (let attempt = 0; attempt < 2; attempt++) {
      const res = await t.http.post(
        '/v1/orders',
        { items: [{ productId: dear, quantity: 2 }] },
        { token: dave.token, idempotencyKey },
      );
      expectProblem(res, 409, 'ORDER_NOT_PAYABLE');
      expect(res.body.detail).toContain('at most 99999999');
    }
    expect(
      (await t.http.put(`/v1/cart/items/${dear}`, { quantity: 2 }, { token: dave.token })).status,
    ).toBe(200);
    expectProblem(
      await t.http.post('/v1/orders', {}, { token: dave.token, idempotencyKey: newKey() }),
      409,
      'ORDER_NOT_PAYABLE',
    );
    // nothing held, nothing written, the cart as it was
    expect(await stockOf(t.db.pool, dear)).toMatchObject({ reserved: 0 });
    const { rows } = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM orders WHERE user_id = $1`,
      [dave.userId],
    );
    expect(rows[0].n).toBe(0);
    expect((await t.http.get('/v1/cart', { token: dave.token })).body.items).toHaveLength(1);
    // exactly the maximum is chargeable: taken
    const most = await insertProduct(t.db.pool, { stock: 5, priceAmount: 99_999_999 });
    const taken = await placeOrder(t.http, dave, [{ productId: most, quantity: 1 }]);
    expect(taken.status).toBe(201);
    expect(taken.body.total.amount).toBe(99_999_999);
  });

  it('checks out the cart (current prices) and empties it in the same transaction', async () => {
    const p1 = await insertProduct(t.db.pool, { stock: 5, priceAmount: 500 });
    const p2 = await insertProduct(t.db.pool, { stock: 5, priceAmount: 700 });
    expect(
      (await t.http.put(`/v1/cart/items/${p1}`, { quantity: 2 }, { token: bob.token })).status,
    ).toBe(200);
    const cart = await t.http.put(`/v1/cart/items/${p2}`, { quantity: 1 }, { token: bob.token });
    expect(cart.body.total).toEqual({ amount: 1700, currency: 'INR' });
    const unknown = await t.http.put(
      '/v1/cart/items/00000000-0000-4000-8000-000000000000',
      { quantity: 1 },
      { token: bob.token },
    );
    expect(unknown.status).toBe(404);

    const order = await placeOrder(t.http, bob, undefined);
    expect(order.status).toBe(201);
    expect(order.body.total.amount).toBe(1700);
    expect((await t.http.get('/v1/cart', { token: bob.token })).body.items).toEqual([]);

    // quantity 0 removes a line; DELETE empties the cart
    await t.http.put(`/v1/cart/items/${p1}`, { quantity: 1 }, { token: bob.token });
    const removed = await t.http.put(`/v1/cart/items/${p1}`, { quantity: 0 }, { token: bob.token });
    expect(removed.body.items).toEqual([]);
    await t.http.put(`/v1/cart/items/${p1}`, { quantity: 1 }, { token: bob.token });
    expect((await t.http.delete('/v1/cart', { token: bob.token })).status).toBe(204);
    expect((await t.http.get('/v1/cart', { token: bob.token })).body.items).toEqual([]);
  });

  it("one customer's cart changes never touch another's: removing, emptying and checking out act on the caller's lines only", async () => {
    const shared = await insertProduct(t.db.pool, { stock: 20, priceAmount: 400 });
    const alices = await insertProduct(t.db.pool, { stock: 20, priceAmount: 600 });
    const cartOf = async (b: Buyer) =>
      (
        (await t.http.get('/v1/cart', { token: b.token })).body.items as {
          productId: string;
          quantity: number;
        }[]
      )
        .map((i) => [i.productId, i.quantity])
        .sort();
    const alicesCart = [
      [alices, 1],
      [shared, 3],
    ].sort();
    expect(
      (await t.http.put(`/v1/cart/items/${shared}`, { quantity: 3 }, { token: alice.token }))
        .status,
    ).toBe(200);
    expect(
      (await t.http.put(`/v1/cart/items/${alices}`, { quantity: 1 }, { token: alice.token }))
        .status,
    ).toBe(200);
    // Bob's line of the same product, then its removal; and a line of a product only Alice has
    expect(
      (await t.http.put(`/v1/cart/items/${shared}`, { quantity: 2 }, { token: bob.token })).status,
    ).toBe(200);
    expect(
      (await t.http.put(`/v1/cart/items/${shared}`, { quantity: 0 }, { token: bob.token })).body
        .items,
    ).toEqual([]);
    expect(
      (await t.http.put(`/v1/cart/items/${alices}`, { quantity: 0 }, { token: bob.token })).body
        .items,
    ).toEqual([]);
    expect(await cartOf(alice)).toEqual(alicesCart);
    // Bob empties his cart
    await t.http.put(`/v1/cart/items/${shared}`, { quantity: 1 }, { token: bob.token });
    expect((await t.http.delete('/v1/cart', { token: bob.token })).status).toBe(204);
    expect(await cartOf(alice)).toEqual(alicesCart);
    // Bob checks out his cart: his line only, priced for him, and Alice's is left as it was
    await t.http.put(`/v1/cart/items/${shared}`, { quantity: 2 }, { token: bob.token });
    const bobs = await placeOrder(t.http, bob, undefined);
    expect(bobs.status).toBe(201);
    expect(
      bobs.body.items.map((i: { productId: string; quantity: number }) => [
        i.productId,
        i.quantity,
      ]),
    ).toEqual([[shared, 2]]);
    expect(await cartOf(alice)).toEqual(alicesCart);
    expect(await cartOf(bob)).toEqual([]);
    expect(await stockOf(t.db.pool, shared)).toEqual({ onHand: 20, reserved: 2 });
    // and Alice's own checkout takes exactly her lines
    const alicesOrder = await placeOrder(t.http, alice, undefined);
    expect(alicesOrder.body.total.amount).toBe(3 * 400 + 600);
    await t.http.delete('/v1/cart', { token: alice.token });
  });

  it('two checkouts of one cart at once (two keys: a double click on two tabs) make one order; the other finds the cart empty', async () => {
    const p1 = await insertProduct(t.db.pool, { stock: 10, priceAmount: 300 });
    const p2 = await insertProduct(t.db.pool, { stock: 10, priceAmount: 500 });
    for (const erin of await buyers(t.http, 5)) {
      expect(
        (await t.http.put(`/v1/cart/items/${p1}`, { quantity: 1 }, { token: erin.token })).status,
      ).toBe(200);
      expect(
        (await t.http.put(`/v1/cart/items/${p2}`, { quantity: 1 }, { token: erin.token })).status,
      ).toBe(200);
      const answers = await Promise.all([
        placeOrder(t.http, erin, undefined),
        placeOrder(t.http, erin, undefined),
      ]);
      const statuses = answers.map((r) => r.status).sort();
      expect(statuses).toEqual([201, 400]);
      expect(answers.find((r) => r.status === 400)?.body.code).toBe('ORDER_EMPTY');
      expect(answers.find((r) => r.status === 201)?.body.total.amount).toBe(800);
    }
    expect(await stockOf(t.db.pool, p1)).toEqual({ onHand: 10, reserved: 5 });
    expect(await stockOf(t.db.pool, p2)).toEqual({ onHand: 10, reserved: 5 });
    await assertStockInvariants(t.db.pool, [p1, p2]);
  });

  it('a checkout racing a change to its cart buys one consistent cart: the quantity before or after, never a mix, and the line is gone after', async () => {
    const p = await insertProduct(t.db.pool, { stock: 20, priceAmount: 100 });
    let reserved = 0;
    for (const fay of await buyers(t.http, 5)) {
      expect(
        (await t.http.put(`/v1/cart/items/${p}`, { quantity: 1 }, { token: fay.token })).status,
      ).toBe(200);
      const [order, put] = await Promise.all([
        placeOrder(t.http, fay, undefined),
        t.http.put(`/v1/cart/items/${p}`, { quantity: 3 }, { token: fay.token }),
      ]);
      expect([order.status, put.status]).toEqual([201, 200]);
      const bought = order.body.items[0].quantity as number;
      expect([1, 3]).toContain(bought);
      const cart = (await t.http.get('/v1/cart', { token: fay.token })).body.items as {
        quantity: number;
      }[];
      // the change came first (bought with it, cart empty after) or after (a new line of 3)
      expect(bought === 3 ? cart : cart.map((i) => i.quantity)).toEqual(bought === 3 ? [] : [3]);
      reserved += bought;
      expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 20, reserved });
    }
    await assertStockInvariants(t.db.pool, [p]);
  });

  it('a cart checkout buys what the cart shows: a line of a product taken off sale neither shows nor blocks it', async () => {
    const [dora] = await buyers(t.http, 1);
    const kept = await insertProduct(t.db.pool, { stock: 5, priceAmount: 400 });
    const gone = await insertProduct(t.db.pool, { stock: 5, priceAmount: 900 });
    for (const id of [kept, gone]) {
      expect(
        (await t.http.put(`/v1/cart/items/${id}`, { quantity: 1 }, { token: dora.token })).status,
      ).toBe(200);
    }
    expect((await t.http.delete(`/v1/admin/products/${gone}`, { token: admin })).status).toBe(204);
    const cart = await t.http.get('/v1/cart', { token: dora.token });
    expect(cart.body.items.map((i: { productId: string }) => i.productId)).toEqual([kept]);
    expect(cart.body.total.amount).toBe(400);
    // before: 409 PRODUCT_UNAVAILABLE for a line the customer could not see, on every retry
    const order = await placeOrder(t.http, dora, undefined);
    expect(order.status).toBe(201);
    expect(order.body.items.map((i: { productId: string }) => i.productId)).toEqual([kept]);
    expect(order.body.total.amount).toBe(cart.body.total.amount);
    expect(await stockOf(t.db.pool, gone)).toEqual({ onHand: 5, reserved: 0 });
    // a cart of nothing on sale is an empty cart
    const again = await placeOrder(t.http, dora, undefined);
    expect(again.status).toBe(400);
    expect(again.body.code).toBe('ORDER_EMPTY');
    // the hidden line can be removed (200); to anyone without it in their cart, the product off
    // sale answers as one that never existed (404, as every product route says)
    const remove = (id: string, who: Buyer) =>
      t.http.put(`/v1/cart/items/${id}`, { quantity: 0 }, { token: who.token });
    expect((await remove(gone, dora)).status).toBe(200);
    const [eve] = await buyers(t.http, 1);
    const [offSale, neverWas] = [await remove(gone, eve), await remove(randomUUID(), eve)];
    expectProblem(offSale, 404, 'PRODUCT_NOT_FOUND');
    expectProblem(neverWas, 404, 'PRODUCT_NOT_FOUND');
    expect(offSale.body.detail).toBe(neverWas.body.detail);
    expect((await remove(kept, eve)).status).toBe(200); // on sale, not in the cart: a no-op
  });

  it('a cart holds at most 100 products, even when they are added at once; an order from the cart is capped like any order', async () => {
    const ids = await Promise.all(
      Array.from({ length: 103 }, () => insertProduct(t.db.pool, { stock: 5, priceAmount: 100 })),
    );
    // 103 lines put concurrently (the cap is checked per customer under one lock, not raced).
    // They queue behind that lock: on a starved machine the last waited past LOCK_WAIT_MS — a
    // 503 with Retry-After, nothing done —, and only more than 100 reaching the check race the
    // cap: with fewer, another customer tries again
    let carol!: Buyer;
    let puts: HttpResponse[] = [];
    for (let round = 1; ; round++) {
      [carol] = await buyers(t.http, 1);
      const put = (id: string) =>
        t.http.put(`/v1/cart/items/${id}`, { quantity: 1 }, { token: carol.token });
      puts = await Promise.all(ids.map(put));
      const waitedOut = puts.filter((r) => r.status === 503);
      for (const r of waitedOut) expect(r.headers.get('retry-after')).toBeTruthy();
      if (ids.length - waitedOut.length > 100) {
        // and a client sends them again
        for (const [i, r] of puts.entries()) if (r.status === 503) puts[i] = await put(ids[i]);
        break;
      }
      if (round === 3)
        throw new Error(`${waitedOut.length} of 103 additions waited out the lock, 3 times`);
    }
    expect(puts.filter((r) => r.status === 200)).toHaveLength(100);
    for (const r of puts.filter((x) => x.status !== 200)) {
      expect(r.status).toBe(400);
      expect(r.body.code).toBe('VALIDATION_FAILED');
    }
    expect((await t.http.get('/v1/cart', { token: carol.token })).body.items).toHaveLength(100);
    // changing a line already there is not adding one
    const inCart = (await t.http.get('/v1/cart', { token: carol.token })).body.items[0].productId;
    expect(
      (await t.http.put(`/v1/cart/items/${inCart}`, { quantity: 3 }, { token: carol.token }))
        .status,
    ).toBe(200);
    // a cart filled past the cap some other way (an older version, a direct write) is not checked out as one order
    const extra = ids.find((id) => !puts[ids.indexOf(id)] || puts[ids.indexOf(id)].status !== 200)!;
    await t.db.pool.query(
      `INSERT INTO cart_items (user_id, product_id, quantity, updated_at) VALUES ($1, $2, 1, now())`,
      [carol.userId, extra],
    );
    const order = await placeOrder(t.http, carol, undefined);
    expect(order.status).toBe(400);
    expect(order.body.code).toBe('VALIDATION_FAILED');
    expect((await t.http.get('/v1/cart', { token: carol.token })).body.items).toHaveLength(101); // nothing taken
    await assertStockInvariants(t.db.pool, ids);
    // quantity 0 of a product that does not exist: 404, as for any quantity (API.md)
    const unknown = await t.http.put(
      '/v1/cart/items/00000000-0000-4000-8000-000000000000',
      { quantity: 0 },
      { token: carol.token },
    );
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('PRODUCT_NOT_FOUND');
  }, 60_000);

  it('a full cart whose products went off sale can take new ones: the cap counts the lines the cart shows', async () => {
    const [dan] = await buyers(t.http, 1);
    const ids = await Promise.all(
      Array.from({ length: 101 }, () => insertProduct(t.db.pool, { stock: 5, priceAmount: 100 })),
    );
    for (const id of ids.slice(0, 100)) {
      expect(
        (await t.http.put(`/v1/cart/items/${id}`, { quantity: 1 }, { token: dan.token })).status,
      ).toBe(200);
    }
    // three of them are taken off sale: the cart shows 97 lines, and nothing says which are hidden
    await t.db.pool.query(`UPDATE products SET active = false WHERE id = ANY($1)`, [
      ids.slice(0, 3),
    ]);
    expect((await t.http.get('/v1/cart', { token: dan.token })).body.items).toHaveLength(97);
    const added = await t.http.put(
      `/v1/cart/items/${ids[100]}`,
      { quantity: 1 },
      { token: dan.token },
    );
    expect(added.status).toBe(200);
    expect(added.body.items).toHaveLength(98);
    // back on sale: the cart shows 101 lines — each still changes, and one removed, it checks out
    await t.db.pool.query(`UPDATE products SET active = true WHERE id = ANY($1)`, [
      ids.slice(0, 3),
    ]);
    const changed = await t.http.put(
      `/v1/cart/items/${ids[0]}`,
      { quantity: 2 },
      { token: dan.token },
    );
    expect(changed.status).toBe(200);
    expect(changed.body.items).toHaveLength(101);
    expect((await placeOrder(t.http, dan, undefined)).status).toBe(400);
    expect(
      (await t.http.put(`/v1/cart/items/${ids[1]}`, { quantity: 0 }, { token: dan.token })).body
        .items,
    ).toHaveLength(100);
    const order = await placeOrder(t.http, dan, undefined);
    expect(order.status).toBe(201);
    expect(order.body.items).toHaveLength(100);
    expect(
      order.body.items.find((i: { productId: string }) => i.productId === ids[0]).quantity,
    ).toBe(2);
    await assertStockInvariants(t.db.pool, ids);
  }, 60_000);

  it('a product still priced in the old currency after a SHOP_CURRENCY change is not taken into a cart, and a line of it waits hidden until it is repriced', async () => {
    const [fay] = await buyers(t.http, 1);
    const rupees = await insertProduct(t.db.pool, { stock: 5, priceAmount: 100 });
    const euros = await insertProduct(t.db.pool, { stock: 5, priceAmount: 900, currency: 'EUR' });
    expect(
      (await t.http.put(`/v1/cart/items/${euros}`, { quantity: 1 }, { token: fay.token })).status,
    ).toBe(404);
    expect(
      (await t.http.put(`/v1/cart/items/${rupees}`, { quantity: 2 }, { token: fay.token })).status,
    ).toBe(200);
    // a line already in the cart whose product is left in the old currency (as after the change)
    const later = await insertProduct(t.db.pool, { stock: 5, priceAmount: 300 });
    expect(
      (await t.http.put(`/v1/cart/items/${later}`, { quantity: 1 }, { token: fay.token })).status,
    ).toBe(200);
    await t.db.pool.query(`UPDATE products SET currency = 'EUR' WHERE id = $1`, [later]);
    const cart = (await t.http.get('/v1/cart', { token: fay.token })).body;
    expect(cart.items.map((i: { productId: string }) => i.productId)).toEqual([rupees]);
    expect(cart.total).toEqual({ amount: 200, currency: 'INR' }); // no sum of two currencies
    // the cart checks out what it shows; the hidden line stays for when the product is repriced
    const order = await placeOrder(t.http, fay, undefined);
    expect(order.status).toBe(201);
    expect(order.body.items.map((i: { productId: string }) => i.productId)).toEqual([rupees]);
    await t.db.pool.query(`UPDATE products SET currency = 'INR' WHERE id = $1`, [later]);
    expect(
      (await t.http.get('/v1/cart', { token: fay.token })).body.items.map(
        (i: { productId: string }) => i.productId,
      ),
    ).toEqual([later]);
    await assertStockInvariants(t.db.pool, [rupees, euros, later]);
  });

  it("hides another customer's order behind a 404", async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const peek = await t.http.get(`/v1/orders/${order.body.id}`, { token: bob.token });
    expect(peek.status).toBe(404);
    expect(peek.body.code).toBe('ORDER_NOT_FOUND');
    const steal = await cancel(bob, order.body.id);
    expect(steal.status).toBe(404);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 1 });
  });

  it('cancels before PAID, releasing stock exactly once even when repeated or raced', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 3 }]);
    const results = await Promise.all(
      Array.from({ length: 8 }, () => cancel(alice, order.body.id)),
    );
    for (const r of results) {
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({
        status: 'CANCELLED',
        cancellationReason: 'CUSTOMER_REQUESTED',
      });
    }
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 0 });
    const releases = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM stock_movements WHERE order_id = $1 AND kind = 'release'`,
      [order.body.id],
    );
    expect(releases.rows[0].n).toBe(1);
    const history = (await t.http.get(`/v1/orders/${order.body.id}`, { token: alice.token })).body
      .history;
    expect(history.filter((h: { to: string }) => h.to === 'CANCELLED')).toHaveLength(1);
    expect(await t.metrics()).toMatch(/^order_transitions_total\{to="CANCELLED"\} 1$/m);
    await assertStockInvariants(t.db.pool, [p]);
  });

  it('refuses to cancel after PAID with 409 ORDER_NOT_CANCELLABLE', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    await repairOrders(t.db.pool, `UPDATE orders SET status = 'PAID' WHERE id = $1`, [
      order.body.id,
    ]);
    const res = await cancel(alice, order.body.id);
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('ORDER_NOT_CANCELLABLE');
  });

  it('lists only the caller’s orders, newest first, with keyset pagination and a strict limit', async () => {
    const [carol] = await buyers(t.http, 1);
    const p = await insertProduct(t.db.pool, { stock: 50 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push((await placeOrder(t.http, carol, [{ productId: p, quantity: 1 }])).body.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: any = await t.http.get(`/v1/orders?limit=2${cursor ? `&cursor=${cursor}` : ''}`, {
        token: carol.token,
      });
      expect(page.status).toBe(200);
      seen.push(...page.body.items.map((o: { id: string }) => o.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
    expect((await t.http.get('/v1/orders?limit=101', { token: carol.token })).status).toBe(400);
    expect((await t.http.get('/v1/orders?cursor=garbage', { token: carol.token })).status).toBe(
      400,
    );
  });

  it("an order page's cursor is its list's: another customer's own list, the admin list, or the admin list under another status filter answer it 400", async () => {
    const [erin, frank] = await buyers(t.http, 2);
    const p = await insertProduct(t.db.pool, { stock: 50 });
    for (let i = 0; i < 3; i++) await placeOrder(t.http, erin, [{ productId: p, quantity: 1 }]);
    await placeOrder(t.http, frank, [{ productId: p, quantity: 1 }]);
    const mine = (await t.http.get('/v1/orders?limit=1', { token: erin.token })).body.nextCursor;
    const all = (await t.http.get('/v1/admin/orders?limit=1', { token: admin })).body.nextCursor;
    const reserved = (
      await t.http.get('/v1/admin/orders?limit=1&status=INVENTORY_RESERVED', { token: admin })
    ).body.nextCursor;
    for (const [what, url, token] of [
      ["another customer's list", `/v1/orders?cursor=${mine}`, frank.token],
      ['the admin list', `/v1/admin/orders?cursor=${mine}`, admin],
      ["a customer's list", `/v1/orders?cursor=${all}`, erin.token],
      ['another status', `/v1/admin/orders?status=CANCELLED&cursor=${reserved}`, admin],
      ['no status', `/v1/admin/orders?cursor=${reserved}`, admin],
    ]) {
      const res = await t.http.get(url, { token });
      expect([what, res.status, res.body.code]).toEqual([what, 400, 'VALIDATION_FAILED']);
    }
    // each pages on its own list
    for (const [url, token] of [
      [`/v1/orders?cursor=${mine}`, erin.token],
      [`/v1/admin/orders?cursor=${all}`, admin],
      [`/v1/admin/orders?status=INVENTORY_RESERVED&cursor=${reserved}`, admin],
    ])
      expect((await t.http.get(url, { token })).status).toBe(200);
  });

  it(`a page carries at most ${ORDER_PAGE_LINE_BUDGET} order lines: cut short (with a cursor) before 100 orders of 100 lines, nothing skipped`, async () => {
    const [dave] = await buyers(t.http, 1);
    const products = await Promise.all(
      Array.from({ length: 100 }, () => insertProduct(t.db.pool, { stock: 50 })),
    );
    const ids: string[] = [];
    for (let i = 0; i < 13; i++) {
      const lines = i === 6 ? products.slice(0, 7) : products; // one small order among the big ones
      ids.push(
        (
          await placeOrder(
            t.http,
            dave,
            lines.map((productId) => ({ productId, quantity: 1 })),
          )
        ).body.id,
      );
    }
    const pages: { orders: number; lines: number }[] = [];
    const seen: string[] = [];
    for (const caller of [dave.token, admin]) {
      let cursor: string | null = null;
      do {
        const page: any = await t.http.get(
          `/v1/${caller === admin ? 'admin/' : ''}orders?limit=100${cursor ? `&cursor=${cursor}` : ''}`,
          { token: caller },
        );
        expect(page.status).toBe(200);
        const mine = page.body.items.filter((o: { id: string }) => ids.includes(o.id));
        const lines = page.body.items.reduce(
          (n: number, o: { items: unknown[] }) => n + o.items.length,
          0,
        );
        expect(lines).toBeLessThanOrEqual(ORDER_PAGE_LINE_BUDGET);
        if (caller === dave.token) {
          pages.push({ orders: page.body.items.length, lines });
          seen.push(...mine.map((o: { id: string }) => o.id));
        }
        cursor = page.body.nextCursor;
      } while (cursor);
    }
    // newest first: 6 orders of 100 lines, the 7-line one, 3 more of 100 (907); the next would
    // pass 1,000 lines: the page ends there, and the cursor goes on from its last order
    expect(pages).toEqual([
      { orders: 10, lines: 907 },
      { orders: 3, lines: 300 },
    ]);
    expect(seen).toEqual([...ids].reverse());
  });

  it("shows an admin (orders:read_all: staff too) any customer's order with its payment and history; a customer (even its owner) and an anonymous caller cannot use the admin route; an unknown id is a 404", async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    const own = await t.http.get(`/v1/orders/${order.body.id}`, { token: alice.token });
    const seen = await t.http.get(`/v1/admin/orders/${order.body.id}`, { token: admin });
    expect(seen.status).toBe(200);
    expect(seen.body).toEqual({ ...own.body, disputes: [] }); // as the customer sees it, and disputes
    expectProblem(
      await t.http.get(`/v1/admin/orders/${order.body.id}`, { token: alice.token }),
      403,
      'FORBIDDEN',
    );
    expectProblem(await t.http.get(`/v1/admin/orders/${order.body.id}`), 401, 'UNAUTHENTICATED');
    expectProblem(
      await t.http.get(`/v1/admin/orders/${randomUUID()}`, { token: admin }),
      404,
      'ORDER_NOT_FOUND',
    );
    expectProblem(
      await t.http.get('/v1/admin/orders/not-an-id', { token: admin }),
      400,
      'VALIDATION_FAILED',
    );
  });

  it('guards admin routes by permission and fulfils only CONFIRMED orders', async () => {
    expect((await t.http.get('/v1/admin/orders', { token: alice.token })).status).toBe(403);
    const all = await t.http.get('/v1/admin/orders?status=INVENTORY_RESERVED&limit=100', {
      token: admin,
    });
    expect(all.status).toBe(200);
    expect(all.body.items.every((o: { status: string }) => o.status === 'INVENTORY_RESERVED')).toBe(
      true,
    );

    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const early = await t.http.post(
      `/v1/admin/orders/${order.body.id}/fulfil`,
      {},
      { token: admin },
    );
    expect(early.status).toBe(409);
    expect(early.body.code).toBe('ORDER_NOT_FULFILLABLE');
    await repairOrders(t.db.pool, `UPDATE orders SET status = 'CONFIRMED' WHERE id = $1`, [
      order.body.id,
    ]);
    const fulfilKey = newKey();
    const done = await t.http.post(
      `/v1/admin/orders/${order.body.id}/fulfil`,
      {},
      { token: admin, idempotencyKey: fulfilKey },
    );
    expect(done.status).toBe(200);
    expect(done.body.status).toBe('FULFILLED');
    // with its key again: the answer replayed (one history row); the key on another order: 422
    const replayed = await t.http.post(
      `/v1/admin/orders/${order.body.id}/fulfil`,
      {},
      { token: admin, idempotencyKey: fulfilKey },
    );
    expect([replayed.status, replayed.headers.get('idempotent-replayed'), replayed.body]).toEqual([
      200,
      'true',
      done.body,
    ]);
    const other = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    const reused = await t.http.post(
      `/v1/admin/orders/${other.body.id}/fulfil`,
      {},
      { token: admin, idempotencyKey: fulfilKey },
    );
    expect([reused.status, reused.body.code]).toEqual([422, 'IDEMPOTENCY_KEY_REUSED']);
    const history = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM order_status_history WHERE order_id = $1 AND to_status = 'FULFILLED'`,
      [order.body.id],
    );
    expect(history.rows[0].n).toBe(1);
    const again = await t.http.post(
      `/v1/admin/orders/${order.body.id}/fulfil`,
      {},
      { token: admin },
    );
    expect(again.status).toBe(200);
    const custFulfil = await t.http.post(
      `/v1/admin/orders/${order.body.id}/fulfil`,
      {},
      { token: alice.token },
    );
    expect(custFulfil.status).toBe(403);
  });
});
