import { request as httpRequest } from 'node:http';
import { insertProduct, newKey, stockOf } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { holdIdempotencyKey } from '../support/idempotency-keys';
import { TestApp, bootTestApp } from '../support/test-app';

describe('Idempotency-Key on POST /v1/orders (API.md, Idempotency)', () => {
  let t: TestApp;
  let alice: Buyer;
  let bob: Buyer;

  const ordersOf = async (userId: string) =>
    (await t.db.pool.query(`SELECT count(*)::int AS n FROM orders WHERE user_id = $1`, [userId]))
      .rows[0].n as number;

  beforeAll(async () => {
    t = await bootTestApp();
    [alice, bob] = await buyers(t.http, 2);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('refuses a missing key with 400 IDEMPOTENCY_KEY_MISSING and changes nothing', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const before = await ordersOf(alice.userId);
    const res = await t.http.post(
      '/v1/orders',
      { items: [{ productId, quantity: 1 }] },
      { token: alice.token },
    );
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('IDEMPOTENCY_KEY_MISSING');
    expect(await ordersOf(alice.userId)).toBe(before);
  });

  it('refuses a key sent in two header lines (Node joins them as "K, K": another key) with 400 IDEMPOTENCY_KEY_INVALID', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const key = newKey();
    const first = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
    expect(first.status).toBe(201);
    const body = JSON.stringify({ items: [{ productId, quantity: 1 }] });
    // a retry whose key a middleware or proxy added once more: never a second order
    for (const keys of [
      [key, key],
      [newKey(), newKey()],
    ]) {
      const res = await new Promise<{ status: number; body: { code?: string } }>(
        (resolve, reject) => {
          const req = httpRequest(
            `${t.baseUrl}/v1/orders`,
            {
              method: 'POST',
              headers: {
                authorization: `Bearer ${alice.token}`,
                'content-type': 'application/json',
                'idempotency-key': keys, // two header lines
              },
            },
            (answer) => {
              let text = '';
              answer.setEncoding('utf8').on('data', (c: string) => (text += c));
              answer.on('end', () =>
                resolve({
                  status: answer.statusCode ?? 0,
                  body: JSON.parse(text) as { code?: string },
                }),
              );
            },
          );
          req.on('error', reject);
          req.end(body);
        },
      );
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('IDEMPOTENCY_KEY_INVALID');
    }
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 5, reserved: 1 });
  });

  it.each([
    ['empty', ''],
    ['longer than 255', 'k'.repeat(256)],
    ['not printable ASCII', 'clé'],
  ])('refuses a key that is %s with 400 IDEMPOTENCY_KEY_INVALID', async (_label, key) => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const res = await t.http.post(
      '/v1/orders',
      { items: [{ productId, quantity: 1 }] },
      { token: alice.token, headers: { 'idempotency-key': key } },
    );
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('IDEMPOTENCY_KEY_INVALID');
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 5, reserved: 0 });
  });

  it('replays the stored status and body for the same key and body, with Idempotent-Replayed', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const key = newKey();
    const first = await placeOrder(t.http, alice, [{ productId, quantity: 2 }], key);
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();

    const again = await placeOrder(t.http, alice, [{ productId, quantity: 2 }], key);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(first.body);
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 5, reserved: 2 });
  });

  it('answers 422 IDEMPOTENCY_KEY_REUSED for the same key with another body or route', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const key = newKey();
    const first = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
    expect(first.status).toBe(201);

    const otherBody = await placeOrder(t.http, alice, [{ productId, quantity: 3 }], key);
    expect(otherBody.status).toBe(422);
    expect(otherBody.body.code).toBe('IDEMPOTENCY_KEY_REUSED');

    const otherRoute = await t.http.post(
      `/v1/orders/${first.body.id}/cancel`,
      {},
      {
        token: alice.token,
        idempotencyKey: key,
      },
    );
    expect(otherRoute.status).toBe(422);
    expect(otherRoute.body.code).toBe('IDEMPOTENCY_KEY_REUSED');

    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 5, reserved: 1 });
    const order = await t.http.get(`/v1/orders/${first.body.id}`, { token: alice.token });
    expect(order.body.status).toBe('INVENTORY_RESERVED');
  });

  it('a JSON null sent with the key of a body-less cart checkout is another request (422), not a replay of it', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    expect(
      (await t.http.put(`/v1/cart/items/${productId}`, { quantity: 1 }, { token: bob.token }))
        .status,
    ).toBe(200);
    const key = newKey();
    const checkout = (raw?: string) =>
      t.http.request('POST', '/v1/orders', undefined, {
        token: bob.token,
        idempotencyKey: key,
        ...(raw ? { raw } : {}),
      });
    const first = await checkout();
    expect(first.status).toBe(201);
    const nul = await checkout('null');
    expect([nul.status, nul.body.code]).toEqual([422, 'IDEMPOTENCY_KEY_REUSED']);
    const retry = await checkout();
    expect([retry.status, retry.headers.get('idempotent-replayed'), retry.body.id]).toEqual([
      201,
      'true',
      first.body.id,
    ]);
    // an empty body typed application/json (a generated client's way of sending none) is no body:
    // the same request, replayed
    const typedEmpty = await t.http.request('POST', '/v1/orders', undefined, {
      token: bob.token,
      idempotencyKey: key,
      raw: '',
    });
    expect([
      typedEmpty.status,
      typedEmpty.headers.get('idempotent-replayed'),
      typedEmpty.body.id,
    ]).toEqual([201, 'true', first.body.id]);
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 5, reserved: 1 });
  });

  it('a cart checkout sent as a generated client sends it (Content-Type: application/json, no body) checks the cart out', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    expect(
      (await t.http.put(`/v1/cart/items/${productId}`, { quantity: 2 }, { token: bob.token }))
        .status,
    ).toBe(200);
    for (const raw of ['', ' \r\n']) {
      const key = newKey();
      const res = await t.http.request('POST', '/v1/orders', undefined, {
        token: bob.token,
        idempotencyKey: key,
        raw,
      });
      if (raw === '') {
        expect(res.status).toBe(201);
        expect(res.body.items).toEqual([expect.objectContaining({ productId, quantity: 2 })]);
      } else {
        // the cart is empty now: the cart checkout's own answer, not a refusal of the body
        expect([res.status, res.body.code]).toEqual([400, 'ORDER_EMPTY']);
      }
    }
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 5, reserved: 2 });
  });

  it('one route however its URL is written: a retry with the path percent-encoded or upper-cased replays, it is not a 422', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    const id = order.body.id as string;
    const key = newKey();
    const first = await t.http.post(
      `/v1/orders/${id}/cancel`,
      {},
      { token: alice.token, idempotencyKey: key },
    );
    expect(first.status).toBe(200);
    for (const path of [
      `/v1/orders/${id.replace(/-/g, '%2D')}/cancel`,
      `/v1/orders/${id.toUpperCase()}/cancel`,
      `/v1/orders/${id.replace(/a/g, '%61')}/cancel`,
    ]) {
      const again = await t.http.post(path, {}, { token: alice.token, idempotencyKey: key });
      expect([again.status, again.headers.get('idempotent-replayed')]).toEqual([200, 'true']);
      expect(again.body).toEqual(first.body);
    }
    // another order's route with that key is still another request
    const other = await placeOrder(t.http, alice, [{ productId, quantity: 1 }]);
    const reused = await t.http.post(
      `/v1/orders/${other.body.id}/cancel`,
      {},
      { token: alice.token, idempotencyKey: key },
    );
    expect([reused.status, reused.body.code]).toEqual([422, 'IDEMPOTENCY_KEY_REUSED']);
  });

  it('50 concurrent identical requests with one key → exactly one order; the rest replay it or get 409 with Retry-After', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 100 });
    const key = newKey();
    const before = await ordersOf(alice.userId);

    const responses = await Promise.all(
      Array.from({ length: 50 }, () =>
        placeOrder(t.http, alice, [{ productId, quantity: 1 }], key),
      ),
    );

    expect(await ordersOf(alice.userId)).toBe(before + 1);
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 100, reserved: 1 });
    const ids = new Set<string>();
    for (const r of responses) {
      if (r.status === 201) {
        ids.add(r.body.id);
      } else {
        expect(r.status).toBe(409);
        expect(r.body.code).toBe('IDEMPOTENCY_KEY_IN_USE');
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
      }
    }
    expect(ids.size).toBe(1);
    expect(responses.filter((r) => r.status === 201).length).toBeGreaterThanOrEqual(1);
  });

  it('a retry of a completed request replays it even while another request holds the key (a twin retry): not 409', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 10 });
    const key = newKey();
    const first = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
    expect(first.status).toBe(201);
    const twin = await holdIdempotencyKey(t.db.pool, `user:${alice.userId}`, key);
    try {
      const retry = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
      expect(retry.status).toBe(201);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.body.id).toBe(first.body.id);
      // another body with the key is still refused as a reuse
      const other = await placeOrder(t.http, alice, [{ productId, quantity: 2 }], key);
      expect([other.status, other.body.code]).toEqual([422, 'IDEMPOTENCY_KEY_REUSED']);
    } finally {
      await twin.release();
    }
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 10, reserved: 1 });
  });

  it('stores nothing when the first request fails validation: a retry with the same key runs afresh', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const key = newKey();
    const invalid = await placeOrder(t.http, alice, [{ productId, quantity: 0 }], key);
    expect(invalid.status).toBe(400);
    expect(invalid.body.code).toBe('VALIDATION_FAILED');

    const valid = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
    expect(valid.status).toBe(201);
    expect(valid.headers.get('idempotent-replayed')).toBeNull();
  });

  it('stores nothing for a business 4xx (INSUFFICIENT_STOCK): after a restock the same key succeeds', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 1 });
    const key = newKey();
    const short = await placeOrder(t.http, alice, [{ productId, quantity: 2 }], key);
    expect(short.status).toBe(409);
    await t.db.pool.query(`UPDATE inventory_items SET on_hand = 2 WHERE product_id = $1`, [
      productId,
    ]);
    const retry = await placeOrder(t.http, alice, [{ productId, quantity: 2 }], key);
    expect(retry.status).toBe(201);
  });

  it('stores nothing when the first attempt fails with a 5xx, and leaves no half-written order', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const key = newKey();
    const before = await ordersOf(alice.userId);
    // Break the last write of the use case: the outbox table disappears for a moment.
    await t.db.pool.query(`ALTER TABLE outbox RENAME TO outbox_gone`);
    let failed;
    try {
      failed = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
    } finally {
      await t.db.pool.query(`ALTER TABLE outbox_gone RENAME TO outbox`);
    }
    expect(failed.status).toBe(500);
    expect(failed.body.code).toBe('INTERNAL_ERROR');
    expect(await ordersOf(alice.userId)).toBe(before);
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 5, reserved: 0 });

    const retry = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(await ordersOf(alice.userId)).toBe(before + 1);
  });

  it('scopes keys per principal: another customer with the same key value gets an order of their own', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const key = newKey();
    const a = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
    const b = await placeOrder(t.http, bob, [{ productId, quantity: 1 }], key);
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(b.headers.get('idempotent-replayed')).toBeNull();
    expect(b.body.id).not.toBe(a.body.id);
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 5, reserved: 2 });
  });

  it('a record outlives 24 h by a clock-skew margin (5 min): one stamped by a host running behind the database is never judged gone before 24 h', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const key = newKey();
    expect((await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key)).status).toBe(201);
    const { rows } = await t.db.pool.query<{ lives: string }>(
      `SELECT (expires_at - created_at)::text AS lives FROM idempotency_keys WHERE key = $1`,
      [key],
    );
    expect(rows).toEqual([{ lives: '1 day 00:05:00' }]);
    // what the purge (on the database's clock) sees 23 h 59 m after an order its host stamped
    // 4 minutes behind the database: nothing to purge
    await t.db.pool.query(
      `UPDATE idempotency_keys SET created_at = created_at - interval '23 hours 59 minutes', expires_at = expires_at - interval '23 hours 59 minutes' WHERE key = $1`,
      [key],
    );
    const { IdempotencyRepository } = await import('../../src/idempotency/idempotency.repository');
    const { rows: clock } = await t.db.pool.query<{ ahead: Date }>(
      `SELECT now() + interval '4 minutes' AS ahead`,
    );
    await t.app.get(IdempotencyRepository).purgeExpired(clock[0].ahead);
    const replay = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
    expect([replay.status, replay.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
  });

  it('expired records are purged by the maintenance job and the key can be used afresh', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const key = newKey();
    expect((await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key)).status).toBe(201);
    await t.db.pool.query(
      `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = $1`,
      [key],
    );
    const { IdempotencyService } = await import('../../src/idempotency/idempotency.service');
    expect(await t.app.get(IdempotencyService).purgeExpired()).toBeGreaterThanOrEqual(1);
    const rows = await t.db.pool.query(`SELECT 1 FROM idempotency_keys WHERE key = $1`, [key]);
    expect(rows.rowCount).toBe(0);
    const fresh = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
    expect(fresh.status).toBe(201);
    expect(fresh.headers.get('idempotent-replayed')).toBeNull();
  });

  it("a record's expiry is judged on the database's clock: a process whose clock runs a day fast neither purges it nor runs its retry again", async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const key = newKey();
    const first = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
    expect(first.status).toBe(201);
    const { Clock } = await import('../../src/common/time/clock');
    const { IdempotencyService } = await import('../../src/idempotency/idempotency.service');
    // this process's clock a day and an hour ahead (an NTP step, a host misconfigured): past the
    // record's 24 h 5 min by its reckoning, minutes old by the database's
    const fast = jest
      .spyOn(t.app.get(Clock), 'now')
      .mockImplementation(() => new Date(Date.now() + 25 * 3600_000));
    try {
      await t.app.get(IdempotencyService).purgeExpired();
      const kept = await t.db.pool.query(`SELECT 1 FROM idempotency_keys WHERE key = $1`, [key]);
      expect(kept.rowCount).toBe(1);
      const retry = await placeOrder(t.http, alice, [{ productId, quantity: 1 }], key);
      expect([retry.status, retry.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
      expect(retry.body.id).toBe(first.body.id);
    } finally {
      fast.mockRestore();
    }
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 5, reserved: 1 });
  });
});
