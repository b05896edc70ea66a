import { DataSource, type Logger, type QueryRunner } from 'typeorm';
import { RecommendationRepository } from '../../src/catalog/recommendation.repository';
import type { AppConfig } from '../../src/config/config';
import { dataSourceOptions } from '../../src/database/data-source-options';
import type { TransactionHost } from '../../src/database/transaction-host';
import { PAID_STATUSES } from '../../src/orders/order-state-machine';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/** The customer the shop's every 100th order is from: 60 paid orders of 20 lines. */
const HEAVY = '00000000-0000-4000-8000-000000000001';
const user = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const PAID = [...PAID_STATUSES];

/**
 * The statement before the cost review, its products' ids only: the customer's purchases as a
 * join of their orders to order_items, twice (the IN and the NOT IN).
 */
const BEFORE = `
  SELECT p.id FROM products p
    JOIN inventory_items i ON i.product_id = p.id
    JOIN (SELECT r.recommended_id, sum(r.score) AS score FROM product_recommendations r
           WHERE r.product_id IN (SELECT DISTINCT oi.product_id FROM orders o
                                    JOIN order_items oi ON oi.order_id = o.id
                                   WHERE o.user_id = $1 AND o.status IN ($2, $3, $4, $5))
             AND r.recommended_id NOT IN (SELECT DISTINCT oi.product_id FROM orders o
                                            JOIN order_items oi ON oi.order_id = o.id
                                           WHERE o.user_id = $1 AND o.status IN ($2, $3, $4, $5))
             AND r.score >= 3
           GROUP BY r.recommended_id) s ON s.recommended_id = p.id
   WHERE p.active AND p.currency = 'INR'
   ORDER BY s.score DESC, p.id LIMIT 10`;

/**
 * A customer's recommendations (`GET /v1/me/recommendations`) read what the customer bought once,
 * through their own orders (orders_user_recent_idx, then order_items_pkey). Cost review: for a
 * customer with 300 paid orders of 20 lines on a shop of 60,400 orders (218,000 lines) the
 * purchases were read twice, each time by reading order_items whole — 90 ms a request, growing
 * with the shop's orders. Here a tenth of that shop: 6,040 orders (22,160 lines), the
 * customer's 60 of 20 lines — at this size the share (1%, the review's 0.5%) at which the
 * statement before reads order_items whole by a clear margin (its plan costed 1,372, the index
 * path 2,301). The rows are written in a transaction that the reads and plans share, rolled back
 * at the end: no autovacuum marks them all-visible meanwhile (which changes what an index-only
 * scan costs, and so the plans).
 */
describe("a customer's recommendations", () => {
  let db: TestDatabase;
  let source: DataSource;
  /** The transaction the rows are written in, and every read and plan made. */
  let shop: QueryRunner;
  let repo: RecommendationRepository;
  /** The statements sent, in order. */
  const sent: { sql: string; params: unknown[] }[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    const capture: Logger = {
      logQuery: (sql, params) => void sent.push({ sql, params: params ?? [] }),
      logQueryError: () => undefined,
      logQuerySlow: () => undefined,
      logSchemaBuild: () => undefined,
      logMigration: () => undefined,
      log: () => undefined,
    };
    source = new DataSource({ ...dataSourceOptions(db.url), logging: ['query'], logger: capture });
    await source.initialize();
    shop = source.createQueryRunner();
    await shop.startTransaction();
    await shop.query(
      `INSERT INTO users (id, email, name, password_hash)
       SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'u' || g || '@x.test', 'U', 'h'
         FROM generate_series(1, 201) g`,
    );
    // 400 products, every 50th off sale
    await shop.query(
      `INSERT INTO products (id, sku, name, price_amount, currency, active)
       SELECT ('10000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'RP-' || g, 'Product ' || g,
              100 + g, 'INR', g % 50 <> 0
         FROM generate_series(1, 400) g`,
    );
    await shop.query(
      `INSERT INTO inventory_items (product_id, on_hand) SELECT id, 10 FROM products`,
    );
    // random order ids, as the application makes them: the customer's orders and their lines
    // are spread over the tables, not side by side
    await shop.query(
      `CREATE TEMPORARY TABLE seeded AS
       SELECT g, gen_random_uuid() AS id, g % 100 = 0 AS heavy FROM generate_series(1, 6040) g`,
    );
    await shop.query(
      `INSERT INTO orders (id, user_id, status, cancellation_reason, currency, total_amount, created_at, updated_at)
       SELECT id,
              CASE WHEN heavy THEN $1::uuid
                   ELSE ('00000000-0000-4000-8000-' || lpad((2 + g % 199)::text, 12, '0'))::uuid END,
              CASE WHEN g % 7 = 0 THEN 'FULFILLED' WHEN g % 11 = 0 AND NOT heavy THEN 'CANCELLED' ELSE 'PAID' END,
              CASE WHEN g % 11 = 0 AND g % 7 <> 0 AND NOT heavy THEN 'CUSTOMER_REQUESTED' END,
              'INR', 1000, now() - (g % 300) * interval '1 day', now()
         FROM seeded`,
      [HEAVY],
    );
    // the customer's 20 lines an order among the first 200 products, the others' 3-4 among all
    await shop.query(
      `INSERT INTO order_items (order_id, product_id, sku, name, quantity, unit_price_amount, line_total_amount)
       SELECT s.id,
              ('10000000-0000-4000-8000-' || lpad((1 + CASE WHEN s.heavy THEN (s.g / 100 * 37 + k * 101) % 200
                                                           ELSE (s.g * 37 + k * 101) % 400 END)::text, 12, '0'))::uuid,
              's', 'n', 1, 100, 100
         FROM seeded s, LATERAL generate_series(1, CASE WHEN s.heavy THEN 20 ELSE 3 + s.g % 2 END) k`,
    );
    // ten neighbours a product, some scored below RECOMMENDATION_MIN_CUSTOMERS
    await shop.query(
      `INSERT INTO product_recommendations (product_id, recommended_id, score, computed_at)
       SELECT ('10000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid,
              ('10000000-0000-4000-8000-' || lpad((1 + (g + j * 13) % 400)::text, 12, '0'))::uuid,
              1 + (g * j) % 20, now()
         FROM generate_series(1, 400) g, generate_series(1, 10) j`,
    );
    await shop.query(
      'ANALYZE users, products, inventory_items, orders, order_items, product_recommendations',
    );
    const tx = {
      withManager: (work: (m: QueryRunner['manager']) => unknown) => work(shop.manager),
    } as unknown as TransactionHost;
    repo = new RecommendationRepository(tx, { currency: 'INR' } as AppConfig);
  });
  afterAll(async () => {
    await shop?.rollbackTransaction();
    await shop?.release();
    await source?.destroy();
    await db?.drop();
  });

  /** The plan PostgreSQL picks for `sql` in the shop's transaction. */
  async function planOf(sql: string, params: unknown[]): Promise<string> {
    const rows: { 'QUERY PLAN': string }[] = await shop.query(`EXPLAIN ${sql}`, params);
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  }

  /** The statement `read` sends (its last), its plan, and what it answered. */
  async function statementOf<T>(read: () => Promise<T>) {
    sent.length = 0;
    const answer = await read();
    const { sql, params } = sent.at(-1)!;
    return { answer, plan: await planOf(sql, params) };
  }

  it("the seeded shop has the reviewer's shape: the statement before read order_items whole", async () => {
    const plan = await planOf(BEFORE, [HEAVY, ...PAID]);
    expect(plan).toMatch(/Seq Scan on order_items/);
  });

  it("reaches the customer's lines through their orders, never by reading order_items whole", async () => {
    const { plan } = await statementOf(() => repo.forCustomer(HEAVY, 10));
    expect(plan).not.toMatch(/Seq Scan on (order_items|orders)\b/);
    expect(plan).toContain('orders_user_recent_idx');
    expect(plan).toContain('order_items_pkey');
    // one read of the purchases, asked by both conditions
    expect(plan.match(/order_items_pkey/g)).toHaveLength(1);
  });

  it('answers what the statement before answered: the same products, in the same order', async () => {
    // the heavy customer, others (~30 orders of 3-4 lines), one who bought nothing
    for (const userId of [HEAVY, user(2), user(3), user(50), user(200), user(201)]) {
      const rows: { id: string }[] = await shop.query(BEFORE, [userId, ...PAID]);
      const now = await repo.forCustomer(userId, 10);
      expect({ userId, ids: now.map((p) => p.id) }).toEqual({ userId, ids: rows.map((r) => r.id) });
      if (userId !== user(201)) expect(now.length).toBe(10);
    }
  });

  it("the customer's purchases alone (the fallback's) are read the same way, and are the same", async () => {
    const { answer, plan } = await statementOf(() => repo.boughtBy(HEAVY));
    expect(plan).not.toMatch(/Seq Scan on (order_items|orders)\b/);
    expect(plan).toContain('order_items_pkey');
    const rows: { product_id: string }[] = await shop.query(
      `SELECT DISTINCT oi.product_id FROM orders o JOIN order_items oi ON oi.order_id = o.id
        WHERE o.user_id = $1 AND o.status = ANY($2)`,
      [HEAVY, PAID],
    );
    expect([...answer].sort()).toEqual(rows.map((r) => r.product_id).sort());
    expect(answer.length).toBeGreaterThan(20);
  });
});
