import { TransactionHost } from '../../src/database/transaction-host';
import { insertProduct } from '../support/fixtures';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

/**
 * A statement PostgreSQL sends nothing back for (DATABASE_QUERY_TIMEOUT_MS: here 1 s) has its
 * connection dropped by the app. Its backend, waiting on a lock, kept running — and kept its
 * transaction's locks (an idempotency key's, hot rows') — until the lock it waited for came free
 * and it found the socket gone. The app now asks the server to cancel it first: it ends at once.
 */
describe('a statement the app gave up on does not keep its locks on the server', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await bootTestApp({ env: { DATABASE_QUERY_TIMEOUT_MS: '1000' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("the dropped connection's backend is cancelled: the locks it held are free at once", async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const holder = await t.db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM inventory_items WHERE product_id = $1 FOR UPDATE', [
        productId,
      ]);
      const tx = t.app.get(TransactionHost);
      // a transaction that holds a lock (4242), then waits on the row the holder has
      const dropped = tx
        .run(async () => {
          await tx.query('SELECT pg_advisory_xact_lock(4242)');
          await tx.query('SELECT on_hand FROM inventory_items WHERE product_id = $1 FOR UPDATE', [
            productId,
          ]);
        })
        .then(
          () => 'answered',
          (err: Error) => err.message,
        );
      expect(await dropped).toBe('The database is unavailable; retry later.'); // (503)
      // the holder still has its row: yet the dropped transaction's lock is free, its backend gone
      const free = await waitFor(
        'the dropped transaction to give up its lock',
        async () =>
          (await t.db.pool.query<{ got: boolean }>('SELECT pg_try_advisory_lock(4242) AS got'))
            .rows[0].got,
        { until: (got) => got, timeoutMs: 3_000, intervalMs: 50 },
      );
      expect(free).toBe(true);
      await t.db.pool.query('SELECT pg_advisory_unlock_all()');
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
    }
  }, 30_000);
});
