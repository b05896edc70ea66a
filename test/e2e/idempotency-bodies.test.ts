import { randomUUID } from 'node:crypto';
import {
  INLINE_BODY_MAX_BYTES,
  IdempotencyRepository,
} from '../../src/idempotency/idempotency.repository';
import { IdempotencyService } from '../../src/idempotency/idempotency.service';
import { insertProduct, newKey } from '../support/fixtures';
import { untilWaitingOnLocks } from '../support/lock-waiters';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * Each distinct response body is stored once (migration IdempotencyBodies), not once per key: a
 * cancel of an order already cancelled changes nothing and answers 200 with the whole order, and
 * every fresh Idempotency-Key stored it again for 24 h (a 100-line order 10-28 KB a record; one
 * IPv4 address within the rate limits 1-2 GB a day). Replays are the same bytes as before; the
 * purge drops a body once no live key can need it, and never one a key references.
 */
describe('idempotency records share their response bodies', () => {
  let t: TestApp;
  let buyer: Buyer;
  let orderId: string;

  /** What the records hold of response bodies, in bytes as stored: in the records and in idempotency_bodies. */
  const storedBodyBytes = async () => {
    const { rows } = await t.db.pool.query<{ n: number }>(
      `SELECT (SELECT coalesce(sum(pg_column_size(response_body)), 0) FROM idempotency_keys)
            + (SELECT coalesce(sum(pg_column_size(body)), 0) FROM idempotency_bodies) AS n`,
    );
    return Number(rows[0].n);
  };

  /** The repository's own statement storing a completed record by hash (COMPLETE_BY_HASH_SQL), sent outside the app. */
  const complete = (
    run: (sql: string, params: unknown[]) => Promise<unknown>,
    principal: string,
    key: string,
    body: string,
    expiresIn: string,
  ) =>
    run(IdempotencyRepository.COMPLETE_BY_HASH_SQL, [
      principal,
      key,
      'POST',
      '/v1/x',
      'f',
      200,
      body,
      new Date(),
      new Date(Date.now() + intervalMs(expiresIn)),
    ]);

  beforeAll(async () => {
    t = await bootTestApp();
    [buyer] = await buyers(t.http, 1);
    const products: string[] = [];
    for (let i = 0; i < 100; i++)
      products.push(await insertProduct(t.db.pool, { stock: 5, priceAmount: 1000 }));
    const placed = await placeOrder(
      t.http,
      buyer,
      products.map((productId) => ({ productId, quantity: 1 })),
    );
    expect(placed.status).toBe(201);
    orderId = placed.body.id;
    const cancelled = await t.http.post(
      `/v1/orders/${orderId}/cancel`,
      {},
      { token: buyer.token, idempotencyKey: newKey() },
    );
    expect(cancelled.status).toBe(200);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('200 cancels of a cancelled 100-line order with fresh keys store its body once; each key replays it byte for byte', async () => {
    const before = await storedBodyBytes();
    const keys = Array.from({ length: 200 }, () => newKey());
    const answers: string[] = [];
    for (let i = 0; i < keys.length; i += 8) {
      const batch = await Promise.all(
        keys
          .slice(i, i + 8)
          .map((idempotencyKey) =>
            t.http.post(`/v1/orders/${orderId}/cancel`, {}, { token: buyer.token, idempotencyKey }),
          ),
      );
      for (const res of batch) {
        expect(res.status).toBe(200);
        answers.push(res.text);
      }
    }
    expect(new Set(answers).size).toBe(1);
    const [body] = answers;
    expect(JSON.parse(body)).toMatchObject({ id: orderId, status: 'CANCELLED' });
    expect(JSON.parse(body).items).toHaveLength(100);

    // the 200 records: one body between them, stored once (at most its size again: a body is
    // stored as PostgreSQL keeps a text, compressed)
    const { rows } = await t.db.pool.query(
      `SELECT count(*)::int AS records, count(DISTINCT response_body_hash)::int AS hashes,
              count(response_body)::int AS own_bodies
         FROM idempotency_keys WHERE key = ANY($1::text[])`,
      [keys],
    );
    expect(rows).toEqual([{ records: 200, hashes: 1, own_bodies: 0 }]);
    const added = (await storedBodyBytes()) - before;
    const one = await t.db.pool.query<{ n: number }>(`SELECT pg_column_size($1::text)::int AS n`, [
      body,
    ]);
    expect(added).toBeLessThanOrEqual(one.rows[0].n);

    // every key replays the answer it was given, byte for byte
    for (let i = 0; i < keys.length; i += 8) {
      const replays = await Promise.all(
        keys
          .slice(i, i + 8)
          .map((idempotencyKey) =>
            t.http.post(`/v1/orders/${orderId}/cancel`, {}, { token: buyer.token, idempotencyKey }),
          ),
      );
      for (const res of replays) {
        expect(res.status).toBe(200);
        expect(res.headers.get('idempotent-replayed')).toBe('true');
        expect(res.text).toBe(body);
      }
    }
  }, 120_000); // (~20 s idle; past 60 s while the whole suite ran on a slow day)

  it('a record written before idempotency_bodies (its body in its own row) still replays', async () => {
    const key = newKey();
    const first = await t.http.post(
      `/v1/orders/${orderId}/cancel`,
      {},
      { token: buyer.token, idempotencyKey: key },
    );
    // as the release before wrote it
    await t.db.pool.query(
      `UPDATE idempotency_keys k SET response_body = b.body, response_body_hash = NULL
         FROM idempotency_bodies b WHERE b.hash = k.response_body_hash AND k.key = $1`,
      [key],
    );
    const replay = await t.http.post(
      `/v1/orders/${orderId}/cancel`,
      {},
      { token: buyer.token, idempotencyKey: key },
    );
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.text).toBe(first.text);
  });

  it('small answers stay in their own record (a checkout, a payment: unique, and the hot path), large ones are stored by hash — on both ways a response is saved', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5, priceAmount: 1000 });
    const orderKey = newKey();
    const placed = await placeOrder(t.http, buyer, [{ productId, quantity: 1 }], orderKey);
    expect(placed.status).toBe(201);
    expect(Buffer.byteLength(placed.text)).toBeLessThanOrEqual(INLINE_BODY_MAX_BYTES);
    const key = newKey();
    const pay = () =>
      t.http.post(
        `/v1/orders/${placed.body.id}/payment`,
        {},
        { token: buyer.token, idempotencyKey: key },
      );
    const first = await pay();
    expect(first.status).toBe(201);
    const held = await t.db.pool.query(
      `SELECT response_body, response_body_hash FROM idempotency_keys WHERE key = ANY($1::text[])
        ORDER BY created_at`,
      [[orderKey, key]],
    );
    expect(held.rows).toEqual([
      { response_body: placed.text, response_body_hash: null },
      { response_body: first.text, response_body_hash: null },
    ]);
    const replay = await pay();
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.status).toBe(201);
    expect(replay.text).toBe(first.text);

    // a claim completed (a route outside one transaction) with an answer over the bound: by hash
    const large = JSON.stringify({ large: 'x'.repeat(INLINE_BODY_MAX_BYTES), id: randomUUID() });
    const repo = t.app.get(IdempotencyRepository);
    const scope = {
      principal: 'user:large',
      key: newKey(),
      method: 'POST',
      route: '/v1/x',
      fingerprint: 'f',
      sameBody: ['f'],
    };
    const claim = await repo.begin(scope, new Date(), new Date(Date.now() + 86_400_000));
    if (!claim.token) throw new Error('the claim was not taken');
    await repo.finish(scope, claim.token, { status: 201, body: large });
    const byHash = await t.db.pool.query(
      `SELECT k.response_body, b.body FROM idempotency_keys k
         JOIN idempotency_bodies b ON b.hash = k.response_body_hash WHERE k.key = $1`,
      [scope.key],
    );
    expect(byHash.rows).toEqual([{ response_body: null, body: large }]);
    expect((await repo.find(scope))?.stored.body).toBe(large);
  });

  it('the purge drops bodies only expired keys referenced, and keeps one a live key of another principal shares', async () => {
    const gone = `{"gone":"${randomUUID()}"}`;
    const shared = `{"shared":"${randomUUID()}"}`;
    const run = (sql: string, params: unknown[]) => t.db.pool.query(sql, params);
    await complete(run, 'user:a', 'expired-1', gone, '-1 hour');
    await complete(run, 'user:a', 'expired-2', shared, '-1 hour');
    await complete(run, 'user:b', 'live', shared, '1 day');
    await t.app.get(IdempotencyService).purgeExpired();

    const keys = await t.db.pool.query(
      `SELECT principal, key FROM idempotency_keys WHERE principal IN ('user:a', 'user:b')`,
    );
    expect(keys.rows).toEqual([{ principal: 'user:b', key: 'live' }]);
    const bodies = await t.db.pool.query(
      `SELECT body FROM idempotency_bodies WHERE body IN ($1, $2)`,
      [gone, shared],
    );
    expect(bodies.rows).toEqual([{ body: shared }]);
    const found = await t.app.get(IdempotencyRepository).find({
      principal: 'user:b',
      key: 'live',
      method: 'POST',
      route: '/v1/x',
      fingerprint: 'f',
      sameBody: ['f'],
    });
    expect(found?.stored.body).toBe(shared);
    // and no live record anywhere names a body that is not there
    const dangling = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM idempotency_keys k
        WHERE k.response_body_hash IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM idempotency_bodies b WHERE b.hash = k.response_body_hash)`,
    );
    expect(dangling.rows).toEqual([{ n: 0 }]);
  });

  it('a body a store re-references while the purge is deleting it stays (the purge waits for the store, and judges the expiry again)', async () => {
    // a table of a shop's size, so the DELETE reaches its rows by ctid (a Tid Scan) as it does
    // in production, not through a small table's join
    await t.db.pool.query(
      `INSERT INTO idempotency_bodies (hash, body, expires_at)
       SELECT sha256(convert_to('{"n":' || g || '}', 'UTF8')), '{"n":' || g || '}', now() + interval '1 day'
         FROM generate_series(1, 20000) g`,
    );
    await t.db.pool.query('ANALYZE idempotency_bodies');
    const body = `{"raced":"${randomUUID()}"}`;
    const run = (sql: string, params: unknown[]) => t.db.pool.query(sql, params);
    await complete(run, 'user:c', 'old', body, '-1 hour');
    const store = await t.db.pool.connect();
    try {
      // the store, committed only once the purge's DELETE waits on the body's row it locked
      await store.query('BEGIN');
      await complete((sql, params) => store.query(sql, params), 'user:d', 'new', body, '1 day');
      const purge = t.app.get(IdempotencyRepository).purgeBodies(new Date());
      await untilWaitingOnLocks(t.db.pool, "the purge to wait on the store's body row", {
        matching: 'DELETE FROM%idempotency_bodies%',
      });
      await store.query('COMMIT');
      await purge;
    } finally {
      store.release();
    }
    // and the next run too: the store raised the body's expiry to its key's
    await t.app.get(IdempotencyRepository).purgeBodies(new Date());
    const left = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM idempotency_bodies WHERE body = $1`,
      [body],
    );
    expect(left.rows).toEqual([{ n: 1 }]);
  });

  it('stores and purges racing over one body, 40 times: a body a live key references is always there', async () => {
    const body = `{"many":"${randomUUID()}"}`;
    const run = (sql: string, params: unknown[]) => t.db.pool.query(sql, params);
    for (let round = 0; round < 40; round++) {
      // the body past its expiry: every key that referenced it expired
      await complete(run, 'user:e', `old-${round}`, body, '-1 hour');
      await t.db.pool.query(
        `UPDATE idempotency_keys SET expires_at = now() - interval '1 hour' WHERE principal = 'user:e'`,
      );
      await t.db.pool.query(
        `UPDATE idempotency_bodies SET expires_at = now() - interval '1 hour' WHERE body = $1`,
        [body],
      );
      await Promise.all([
        complete(run, 'user:f', `new-${round}`, body, '1 day'),
        t.app.get(IdempotencyRepository).purgeBodies(new Date()),
      ]);
      const left = await t.db.pool.query(
        `SELECT count(*)::int AS n FROM idempotency_keys k JOIN idempotency_bodies b ON b.hash = k.response_body_hash
          WHERE k.principal = 'user:f' AND k.key = $1`,
        [`new-${round}`],
      );
      expect({ round, n: left.rows[0].n }).toEqual({ round, n: 1 });
    }
  });
});

const intervalMs = (interval: string): number => {
  const [amount, unit] = interval.split(' ');
  const ms = { hour: 3_600_000, day: 86_400_000 }[unit];
  if (ms === undefined) throw new Error(`interval ${interval}`);
  return Number(amount) * ms;
};
