import type { PoolClient } from 'pg';
import { queryPlan } from '../support/query-plan';
import { createTestDatabase, type TestDatabase } from '../support/test-database';

/**
 * The reconciliation's minutely sweep for the intents still open of cancelled orders
 * (`PaymentRepository.findOpenOfCancelled`) read every payment of every cancelled order ever — a
 * shop's abandoned checkouts — to find the few still open: the open payments are indexed by
 * their last change (migration 1763800032000), and the sweep reads those first.
 */
describe('payments still open at the provider', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  it('the sweep for open intents of cancelled orders starts from the open payments, not from every cancelled order', async () => {
    // a shop's history: thousands of cancelled orders whose intents were cancelled, a few open
    const history = async (client: PoolClient) => {
      const [{ id: user }] = (
        await client.query<{ id: string }>(
          `INSERT INTO users (email, name, password_hash, password_epoch) VALUES ('sweep@test.local', 'Sweep', 'x', 'epoch-of-a-test-user-1') RETURNING id`,
        )
      ).rows;
      await client.query(
        `WITH o AS (
           INSERT INTO orders (id, user_id, status, cancellation_reason, currency, total_amount, created_at, updated_at)
           SELECT gen_random_uuid(), $1, 'CANCELLED', 'RESERVATION_EXPIRED', 'INR', 1000, now(), now()
             FROM generate_series(1, 5000)
           RETURNING id)
         INSERT INTO payments (id, order_id, provider, intent_id, client_secret, amount, currency, status, created_at, updated_at)
         SELECT gen_random_uuid(), o.id, 'stripe', 'pi_' || o.id, 'secret', 1000, 'INR',
                CASE WHEN row_number() OVER () <= 5 THEN 'requires_payment_method' ELSE 'canceled' END,
                now() - interval '1 hour', now() - interval '1 hour'
           FROM o`,
        [user],
      );
      await client.query('ANALYZE orders');
      await client.query('ANALYZE payments');
    };
    // the statement's shape (PaymentRepository.unchangedSince with openOnly)
    const plan = await queryPlan(
      db,
      `SELECT p.id FROM payments p
        WHERE p.order_id IN (SELECT o.id FROM orders o WHERE o.status IN ($1))
          AND p.updated_at < $2 AND p.status NOT IN ($3, $4)
        ORDER BY p.updated_at ASC LIMIT 100`,
      ['CANCELLED', new Date(), 'succeeded', 'canceled'],
      history,
    );
    expect(plan).toMatch(/payments_open_by_updated/);
  });
});
