import { ProductRepository } from '../../src/catalog/product.repository';
import {
  RECOMMENDATION_MIN_CUSTOMERS,
  RECOMMENDATION_WINDOW_DAYS,
  RecommendationRepository,
} from '../../src/catalog/recommendation.repository';
import { RecommendationsService } from '../../src/catalog/recommendations.service';
import { MAX_IMAGES_PER_PRODUCT } from '../../src/catalog/images.service';
import { expectProblem } from '../support/http';
import { createAdmin } from '../support/auth';
import { createProduct } from '../support/catalog';
import { newKey } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { repairOrders } from '../support/order-status';
import { waitFor } from '../support/wait-for';

describe('catalog: reviews, recommendations, images', () => {
  let t: TestApp;
  let admin: string;
  let alice: Buyer;
  let bob: Buyer;
  let carol: Buyer;

  /** An order the customer has paid (set directly: payments are tested elsewhere). */
  const paidOrder = async (b: Buyer, productIds: string[]) => {
    const res = await placeOrder(
      t.http,
      b,
      productIds.map((productId) => ({ productId, quantity: 1 })),
    );
    expect(res.status).toBe(201);
    await repairOrders(t.db.pool, `UPDATE orders SET status = 'PAID' WHERE id = $1`, [res.body.id]);
    return res.body.id as string;
  };

  beforeAll(async () => {
    t = await bootTestApp();
    admin = (await createAdmin(t)).accessToken;
    [alice, bob, carol] = await buyers(t.http, 3);
  });
  afterAll(async () => {
    await t?.close();
  });

  it("a review page's cursor is its product's: sent for another product's reviews (or a product listing's sent here) it is a 400, not a page that skips reviews", async () => {
    const [x, y] = [await createProduct(t, admin), await createProduct(t, admin)];
    for (const b of [alice, bob]) {
      await paidOrder(b, [x.id, y.id]);
      for (const p of [x, y])
        expect(
          (
            await t.http.post(
              `/v1/products/${p.id}/reviews`,
              { rating: 4, comment: 'fine' },
              { token: b.token, idempotencyKey: newKey() },
            )
          ).status,
        ).toBe(201);
    }
    const first = await t.http.get(`/v1/products/${x.id}/reviews?limit=1`);
    const cursor = first.body.nextCursor as string;
    expect(cursor).toEqual(expect.any(String));
    expectProblem(
      await t.http.get(`/v1/products/${y.id}/reviews?limit=10&cursor=${cursor}`),
      400,
      'VALIDATION_FAILED',
    );
    const listing = await t.http.get('/v1/products?sort=newest&limit=1');
    expectProblem(
      await t.http.get(`/v1/products/${x.id}/reviews?cursor=${listing.body.nextCursor}`),
      400,
      'VALIDATION_FAILED',
    );
    // its own product's reviews page on
    const next = await t.http.get(`/v1/products/${x.id}/reviews?limit=10&cursor=${cursor}`);
    expect([next.status, next.body.items.length]).toEqual([200, 1]);
  });

  it('lets only customers with a paid order review a product, once', async () => {
    const p = await createProduct(t, admin);
    const before = await t.http.post(
      `/v1/products/${p.id}/reviews`,
      { rating: 5, comment: 'yum' },
      { token: alice.token },
    );
    expect(before.status).toBe(403);
    expect(before.body.code).toBe('REVIEW_NOT_ALLOWED');
    const unpaid = await placeOrder(t.http, alice, [{ productId: p.id, quantity: 1 }]);
    expect(unpaid.status).toBe(201);
    expect(
      (
        await t.http.post(
          `/v1/products/${p.id}/reviews`,
          { rating: 5, comment: 'yum' },
          { token: alice.token },
        )
      ).status,
    ).toBe(403);
    const paid = await paidOrder(alice, [p.id]);
    const reviewKey = newKey();
    const ok = await t.http.post(
      `/v1/products/${p.id}/reviews`,
      { rating: 4, comment: 'good' },
      { token: alice.token, idempotencyKey: reviewKey },
    );
    expect(ok.status).toBe(201);
    // the same request again (a lost 201): its answer replayed, not 409 REVIEW_EXISTS; the key
    // with another review: 422
    const replayed = await t.http.post(
      `/v1/products/${p.id}/reviews`,
      { rating: 4, comment: 'good' },
      { token: alice.token, idempotencyKey: reviewKey },
    );
    expect([replayed.status, replayed.headers.get('idempotent-replayed'), replayed.body]).toEqual([
      201,
      'true',
      ok.body,
    ]);
    const reused = await t.http.post(
      `/v1/products/${p.id}/reviews`,
      { rating: 2, comment: 'good' },
      { token: alice.token, idempotencyKey: reviewKey },
    );
    expect([reused.status, reused.body.code]).toEqual([422, 'IDEMPOTENCY_KEY_REUSED']);
    const again = await t.http.post(
      `/v1/products/${p.id}/reviews`,
      { rating: 1, comment: 'changed my mind' },
      { token: alice.token },
    );
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('REVIEW_EXISTS');
    // refunded in full since: reviewing again is still "once" (409), not "never bought" (403)
    await repairOrders(t.db.pool, `UPDATE orders SET status = 'REFUNDED' WHERE id = $1`, [paid]);
    const afterRefund = await t.http.post(
      `/v1/products/${p.id}/reviews`,
      { rating: 1, comment: 'x' },
      { token: alice.token },
    );
    expect([afterRefund.status, afterRefund.body.code]).toEqual([409, 'REVIEW_EXISTS']);
    expect(
      (
        await t.http.post(
          `/v1/products/${p.id}/reviews`,
          { rating: 6, comment: 'x' },
          { token: alice.token },
        )
      ).status,
    ).toBe(400);
    const list = await t.http.get(`/v1/products/${p.id}/reviews`);
    expect(list.body.items).toEqual([expect.objectContaining({ rating: 4, comment: 'good' })]);
    // the 201 is the review as the listing shows it, author's name included
    expect(ok.body).toEqual(list.body.items[0]);
    expect(ok.body.authorName).toEqual(expect.any(String));
    expect(ok.body.authorName.length).toBeGreaterThan(0);
    expect((await t.http.get(`/v1/products/${p.id}`)).body.rating).toEqual({
      average: 4,
      count: 1,
    });
    // no such product, or one taken off sale: 404, as for the product itself (and no author names)
    for (const id of ['00000000-0000-4000-8000-000000000000', p.id]) {
      if (id === p.id)
        expect((await t.http.delete(`/v1/admin/products/${p.id}`, { token: admin })).status).toBe(
          204,
        );
      const gone = await t.http.get(`/v1/products/${id}/reviews`);
      expect(gone.status).toBe(404);
      expect(gone.body.code).toBe('PRODUCT_NOT_FOUND');
    }
    expect(
      (await t.http.patch(`/v1/admin/products/${p.id}`, { active: true }, { token: admin })).status,
    ).toBe(200);
  });

  it("a review leaves the shop's cached pages cached: the product's rating shows within their TTL", async () => {
    const [reviewed, other] = [await createProduct(t, admin), await createProduct(t, admin)];
    const [reader] = await buyers(t.http, 1);
    await paidOrder(reader, [reviewed.id]);
    const detail = (id: string) => t.http.get(`/v1/products/${id}`);
    for (const _ of [1, 2]) for (const p of [reviewed, other]) await detail(p.id); // (kept from the second miss)
    const builds = jest.spyOn(t.app.get(ProductRepository), 'findDetail');
    try {
      const res = await t.http.post(
        `/v1/products/${reviewed.id}/reviews`,
        { rating: 5, comment: 'lovely' },
        { token: reader.token },
      );
      expect(res.status).toBe(201);
      // every cached page of the shop was a miss in every process after each review
      expect((await detail(other.id)).status).toBe(200);
      expect((await detail(reviewed.id)).body.rating).toEqual({ average: null, count: 0 });
      expect(builds).not.toHaveBeenCalled();
      await waitFor(
        'the rating on the cached page',
        async () => (await detail(reviewed.id)).body.rating,
        {
          until: (rating) => rating.count === 1,
          timeoutMs: 10_000,
        },
      );
    } finally {
      builds.mockRestore();
    }
  });

  it('keeps the rating average and count consistent under concurrent reviews', async () => {
    const p = await createProduct(t, admin, { stock: 100 });
    const reviewers = await buyers(t.http, 12);
    for (const r of reviewers) await paidOrder(r, [p.id]);
    const results = await Promise.all(
      reviewers.flatMap((r, i) => [
        t.http.post(
          `/v1/products/${p.id}/reviews`,
          { rating: 1 + (i % 5), comment: 'a' },
          { token: r.token },
        ),
        t.http.post(
          `/v1/products/${p.id}/reviews`,
          { rating: 1 + (i % 5), comment: 'twice' },
          { token: r.token },
        ),
      ]),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(12);
    expect(results.filter((r) => r.status === 409)).toHaveLength(12);
    const row = (
      await t.db.pool.query(
        `SELECT rating_sum, rating_count, (SELECT sum(rating)::int FROM reviews WHERE product_id = $1) AS s,
              (SELECT count(*)::int FROM reviews WHERE product_id = $1) AS n
         FROM products WHERE id = $1`,
        [p.id],
      )
    ).rows[0];
    expect(row.rating_count).toBe(12);
    expect(row.rating_sum).toBe(row.s);
    expect(row.n).toBe(12);
  });

  /** `n` new customers, each with a paid order of `productIds`. */
  const boughtTogether = async (n: number, productIds: string[]) => {
    const people = await buyers(t.http, n);
    for (const b of people) await paidOrder(b, productIds);
    return people;
  };
  const K = RECOMMENDATION_MIN_CUSTOMERS;

  it('recommends products bought together by several customers, excluding what the customer already bought', async () => {
    const [tea, honey, lemon, pens, secret] = await Promise.all(
      [1, 2, 3, 4, 5].map(() => createProduct(t, admin, { stock: 50 })),
    );
    // tea, honey and lemon bought together by K customers (Alice one of them), tea and honey by
    // one more (Bob)
    await paidOrder(alice, [tea.id, honey.id, lemon.id]);
    const crowd = await boughtTogether(K - 1, [tea.id, honey.id, lemon.id]);
    await paidOrder(bob, [tea.id, honey.id]);
    await paidOrder(carol, [pens.id]);
    // what fewer than K customers bought together is their basket, nobody else's to see (also-bought
    // is public, and reviews name their authors): tea with the secret, by Alice in K orders and by
    // K - 1 customers in all — counted by customers, so her repeated orders do not push it in
    for (let i = 0; i < K; i++) await paidOrder(alice, [tea.id, secret.id]);
    for (const b of crowd.slice(0, K - 2)) await paidOrder(b, [tea.id, secret.id]);
    const unpaid = await placeOrder(t.http, carol, [
      { productId: tea.id, quantity: 1 },
      { productId: pens.id, quantity: 1 },
    ]);
    expect(unpaid.status).toBe(201);

    await t.app.get(RecommendationsService).recompute();
    await t.app.get(RecommendationsService).recompute(); // idempotent
    // two runs at once (one outlasting its interval, a stalled job run again) end in one set, no error
    await Promise.all(
      Array.from({ length: 4 }, () => t.app.get(RecommendationsService).recompute()),
    );

    const also = await t.http.get(`/v1/products/${tea.id}/also-bought`);
    expect(also.status).toBe(200);
    expect(also.body.items.map((i: { id: string }) => i.id)).toEqual([honey.id, lemon.id]);
    const alsoSecret = await t.http.get(`/v1/products/${secret.id}/also-bought`);
    expect(alsoSecret.body.items).toEqual([]);
    const stored = await t.db.pool.query(
      `SELECT 1 FROM product_recommendations WHERE $1 IN (product_id, recommended_id)`,
      [secret.id],
    );
    expect(stored.rowCount).toBe(0);

    const [dave] = await buyers(t.http, 1);
    await paidOrder(dave, [honey.id]);
    await t.app.get(RecommendationsService).recompute();
    const forDave = await t.http.get('/v1/me/recommendations', { token: dave.token });
    expect(forDave.body.items.map((i: { id: string }) => i.id)).toEqual([tea.id, lemon.id]);

    // a pair one customer bought, written by a worker of an older release still running during a
    // deploy (it counted orders): served to nobody, on the product's page or in a list
    await t.db.pool.query(
      `INSERT INTO product_recommendations (product_id, recommended_id, score, computed_at)
       VALUES ($1, $2, 1, now()), ($3, $2, 1, now())`,
      [tea.id, secret.id, honey.id],
    );
    const alsoAgain = await t.http.get(`/v1/products/${tea.id}/also-bought`);
    expect(alsoAgain.body.items.map((i: { id: string }) => i.id)).toEqual([honey.id, lemon.id]);
    const forDaveAgain = await t.app.get(RecommendationRepository).forCustomer(dave.userId, 10);
    expect(forDaveAgain.map((p) => p.id)).toEqual([tea.id, lemon.id]);
    await t.app.get(RecommendationsService).recompute();

    const [newbie] = await buyers(t.http, 1);
    const fallback = await t.http.get('/v1/me/recommendations', { token: newbie.token });
    expect(fallback.status).toBe(200);
    expect(fallback.body.items.length).toBeGreaterThan(0);
    expect((await t.http.get('/v1/me/recommendations')).status).toBe(401);

    // a customer whose purchases have no neighbours is shown the top-ranked products, minus what
    // they bought (pens, the best seller: everyone else is shown it first)
    await t.db.pool.query(`UPDATE products SET units_sold = 1000000 WHERE id = $1`, [pens.id]);
    await createProduct(t, admin, { stock: 5 }); // (a new catalog version: the UPDATE went around the API)
    const [erin, newcomer] = await buyers(t.http, 2);
    await paidOrder(erin, [pens.id]);
    expect(await t.app.get(RecommendationRepository).forCustomer(erin.userId, 10)).toEqual([]);
    const forNewcomer = await t.http.get('/v1/me/recommendations', { token: newcomer.token });
    const topIds: string[] = forNewcomer.body.items.map((i: { id: string }) => i.id);
    expect(topIds[0]).toBe(pens.id);
    const forErin = await t.http.get('/v1/me/recommendations', { token: erin.token });
    expect(forErin.status).toBe(200);
    // (the newcomer's list less pens, then the next one down when there are more than ten)
    const erinIds: string[] = forErin.body.items.map((i: { id: string }) => i.id);
    expect(erinIds).not.toContain(pens.id);
    expect(erinIds.slice(0, topIds.length - 1)).toEqual(topIds.slice(1));
    await t.db.pool.query(`UPDATE products SET units_sold = 0 WHERE id = $1`, [pens.id]); // (not the next tests' best seller)

    // one priced in another currency than the shop's (before a SHOP_CURRENCY change) is not on sale: not recommended
    await t.db.pool.query(`UPDATE products SET currency = 'USD' WHERE id = $1`, [lemon.id]);
    const recommendations = t.app.get(RecommendationRepository);
    expect((await recommendations.alsoBought(tea.id, 10)).map((p) => p.id)).toEqual([honey.id]);
    expect((await recommendations.forCustomer(dave.userId, 10)).map((p) => p.id)).toEqual([tea.id]);
    await t.db.pool.query(`UPDATE products SET currency = 'INR' WHERE id = $1`, [lemon.id]);
  });

  it("builds a new customer's recommendations once per catalog version (each build scores every product on sale), not once per request", async () => {
    await createProduct(t, admin, { stock: 5 }); // (a write: a new catalog version)
    const newcomers = await buyers(t.http, 3);
    const pages = jest.spyOn(t.app.get(ProductRepository), 'page');
    try {
      const lists = [];
      for (const b of newcomers)
        lists.push(await t.http.get('/v1/me/recommendations', { token: b.token }));
      expect(lists.map((r) => r.status)).toEqual([200, 200, 200]);
      expect(lists[0].body.items.length).toBeGreaterThan(0);
      expect(lists[1].body).toEqual(lists[0].body);
      expect(lists[2].body).toEqual(lists[0].body);
      expect(pages).toHaveBeenCalledTimes(1);
      // a catalog write: the next one is built afresh, and shows it
      const fresh = await createProduct(t, admin, { stock: 5 });
      await t.db.pool.query(`UPDATE products SET units_sold = 1000000 WHERE id = $1`, [fresh.id]);
      await createProduct(t, admin, { stock: 5 }); // (the UPDATE above went around the admin API)
      const after = await t.http.get('/v1/me/recommendations', { token: newcomers[0].token });
      expect(pages).toHaveBeenCalledTimes(2);
      expect(after.body.items[0].id).toBe(fresh.id);
      await t.db.pool.query(`UPDATE products SET units_sold = 0 WHERE id = $1`, [fresh.id]); // (not the next tests' best seller)
    } finally {
      pages.mockRestore();
    }
  });

  it('a listing sorted by anything but relevance does not ask for the best seller (it scales relevance only)', async () => {
    const best = jest.spyOn(t.app.get(ProductRepository), 'maxUnitsSold');
    try {
      for (const sort of ['newest', 'price_asc', 'price_desc', 'popular']) {
        expect(
          (
            await t.http.get(
              `/v1/products?sort=${sort}&limit=${40 + Math.floor(Math.random() * 50)}`,
            )
          ).status,
        ).toBe(200);
      }
      expect(best).not.toHaveBeenCalled();
      expect(
        (
          await t.http.get(
            `/v1/products?sort=relevance&limit=${40 + Math.floor(Math.random() * 50)}`,
          )
        ).status,
      ).toBe(200);
      expect(best).toHaveBeenCalledTimes(1);
    } finally {
      best.mockRestore();
    }
  });

  it("counts a year of paid orders: what was bought together longer ago no longer recommends (each run read the shop's whole history)", async () => {
    const [a, old, recent] = await Promise.all(
      [1, 2, 3].map(() => createProduct(t, admin, { stock: 50 })),
    );
    // K customers bought a with old (longer ago) and with recent
    const longAgo: string[] = [];
    for (const b of await buyers(t.http, K)) {
      longAgo.push(await paidOrder(b, [a.id, old.id]));
      await paidOrder(b, [a.id, recent.id]);
    }
    const back = RECOMMENDATION_WINDOW_DAYS + 1;
    await t.db.pool.query(
      `UPDATE orders SET created_at = now() - make_interval(days => $2) WHERE id = ANY($1::uuid[])`,
      [longAgo, back],
    );
    await t.app.get(RecommendationsService).recompute();
    const also = await t.http.get(`/v1/products/${a.id}/also-bought`);
    expect(also.body.items.map((i: { id: string }) => i.id)).toEqual([recent.id]);
  });

  it('recommends neighbours on sale: ten better ones taken off sale do not leave the list empty', async () => {
    const [a, c, ...better] = await Promise.all(
      Array.from({ length: 12 }, () => createProduct(t, admin, { stock: 50 })),
    );
    // (the better ones bought with a by K + 1 customers, c by K of them)
    await boughtTogether(K, [a.id, c.id, ...better.map((b) => b.id)]);
    await boughtTogether(1, [a.id, ...better.map((b) => b.id)]);
    for (const b of better) {
      expect(
        (await t.http.patch(`/v1/admin/products/${b.id}`, { active: false }, { token: admin }))
          .status,
      ).toBe(200);
    }
    await t.app.get(RecommendationsService).recompute();
    const also = await t.http.get(`/v1/products/${a.id}/also-bought`);
    expect(also.body.items.map((i: { id: string }) => i.id)).toEqual([c.id]);
  });

  it("recommends neighbours on sale in the shop's currency: ten better ones priced in another (before a SHOP_CURRENCY change) neither fill the list nor set the popularity scale", async () => {
    const [a, c, ...better] = await Promise.all(
      Array.from({ length: 12 }, () => createProduct(t, admin, { stock: 50 })),
    );
    // (the better ones bought with a by K + 1 customers, c by K of them)
    await boughtTogether(K, [a.id, c.id, ...better.map((b) => b.id)]);
    await boughtTogether(1, [a.id, ...better.map((b) => b.id)]);
    const ids = better.map((b) => b.id);
    await t.db.pool.query(`UPDATE products SET currency = 'USD' WHERE id = ANY($1::uuid[])`, [ids]);
    await t.app.get(RecommendationsService).recompute();
    const also = await t.http.get(`/v1/products/${a.id}/also-bought`);
    expect(also.body.items.map((i: { id: string }) => i.id)).toEqual([c.id]);
    // the relevance sort's popularity scale is the best seller that is listed
    await t.db.pool.query(`UPDATE products SET units_sold = 1000000 WHERE id = $1`, [ids[0]]);
    expect(await t.app.get(ProductRepository).maxUnitsSold()).toBeLessThan(1_000_000);
    await t.db.pool.query(
      `UPDATE products SET currency = 'INR', units_sold = 0, active = false WHERE id = ANY($1::uuid[])`,
      [ids],
    );
  });

  it(`a product holds at most ${MAX_IMAGES_PER_PRODUCT} images (ready and pending): uploads past it are 409, also when started at once`, async () => {
    const p = await createProduct(t, admin);
    const start = () =>
      t.http.post(
        `/v1/admin/products/${p.id}/images`,
        { contentType: 'image/png', sizeBytes: 1000 },
        { token: admin, idempotencyKey: newKey() },
      );
    // all but three places taken (one of them by a ready image)
    await t.db.pool.query(
      `INSERT INTO product_images (id, product_id, storage_key, content_type, size_bytes, status, created_at)
       SELECT id, $1::uuid, 'products/' || $1 || '/' || id, 'image/png', 1000,
              CASE WHEN n = 1 THEN 'ready' ELSE 'pending' END, now()
         FROM (SELECT gen_random_uuid() AS id, n FROM generate_series(1, $2::int) n) x`,
      [p.id, MAX_IMAGES_PER_PRODUCT - 3],
    );
    const started = await Promise.all(Array.from({ length: 8 }, start));
    expect(started.filter((r) => r.status === 201)).toHaveLength(3);
    const refused = started.filter((r) => r.status !== 201);
    expect(refused).toHaveLength(5);
    for (const r of refused) expectProblem(r, 409, 'CONFLICT');
    const { rows } = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM product_images WHERE product_id = $1`,
      [p.id],
    );
    expect(rows[0].n).toBe(MAX_IMAGES_PER_PRODUCT);
    // an unused upload's place comes back once it is removed
    await t.db.pool.query(
      `DELETE FROM product_images WHERE id = (SELECT id FROM product_images WHERE product_id = $1 AND status = 'pending' LIMIT 1)`,
      [p.id],
    );
    expect((await start()).status).toBe(201);
  });

  it('hands out a pre-signed S3 upload URL and refuses an unauthenticated storage notification', async () => {
    // the upload → notification → ready flow runs against a real S3 server in images-s3.test.ts
    const p = await createProduct(t, admin);
    const bad = await t.http.post(
      `/v1/admin/products/${p.id}/images`,
      { contentType: 'image/gif', sizeBytes: 10 },
      { token: admin },
    );
    expect(bad.status).toBe(400);
    const big = await t.http.post(
      `/v1/admin/products/${p.id}/images`,
      { contentType: 'image/png', sizeBytes: 20_000_000 },
      { token: admin },
    );
    expect(big.status).toBe(400);
    const up = await t.http.post(
      `/v1/admin/products/${p.id}/images`,
      { contentType: 'image/png', sizeBytes: 12345 },
      { token: admin },
    );
    expect(up.status).toBe(201);
    const key = `products/${p.id}/${up.body.imageId}`;
    const url = new URL(up.body.uploadUrl);
    const s = t.config.storage;
    expect(`${url.origin}${url.pathname}`).toBe(`${s.endpoint}/${s.bucket}/${key}`);
    expect(url.searchParams.get('X-Amz-Credential')).toMatch(
      new RegExp(`^${s.accessKeyId}/\\d{8}/${s.region}/s3/aws4_request$`),
    );
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('content-length;content-type;host');
    expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    expect(Date.parse(up.body.expiresAt)).toBeGreaterThan(Date.now());

    const raw = JSON.stringify({
      Records: [
        { eventName: 'ObjectCreated:Put', s3: { bucket: { name: s.bucket }, object: { key } } },
      ],
    });
    for (const authorization of [undefined, `Bearer ${s.webhookToken.slice(1)}`]) {
      const forged = await t.http.request('POST', '/v1/webhooks/storage', undefined, {
        raw,
        headers: authorization ? { authorization } : {},
      });
      expect(forged.status).toBe(400);
      expect(forged.body.code).toBe('WEBHOOK_SIGNATURE_INVALID');
    }
    expect((await t.http.get(`/v1/products/${p.id}`)).body.imageUrl).toBeNull();
  });
});
