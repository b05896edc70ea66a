import { DataSource } from 'typeorm';
import { DomainError } from '../../src/common/errors/domain-error';
import { dataSourceOptions } from '../../src/database/data-source-options';
import { isConnectionFailure } from '../../src/database/db-circuit-breaker';
import { TransactionHost } from '../../src/database/transaction-host';
import { buyers, placeOrder } from '../support/orders';
import { assertStockInvariants, insertProduct, stockOf } from '../support/fixtures';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

// A process that freezes inside a transaction, or a host that vanishes without FIN/RST, used to
// keep its row locks for as long as PostgreSQL believed the connection alive (two hours by the
// OS keepalive defaults): every checkout of that product queued behind it. The pool's sessions
// now carry idle_in_transaction_session_timeout and server-side keepalives.
describe('a pool connection whose holder vanished inside a transaction', () => {
  let t: TestApp;
  let frozen: DataSource | undefined;

  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await frozen?.destroy().catch(() => undefined);
    await t?.close();
  });

  it("the app's pool sessions carry the idle-in-transaction limit and server keepalives", async () => {
    const tx = t.app.get(TransactionHost);
    const settings = await tx.query<{ name: string; setting: string; unit: string | null }>(
      `SELECT name, setting, unit FROM pg_settings
        WHERE name IN ('idle_in_transaction_session_timeout', 'tcp_keepalives_idle',
                       'tcp_keepalives_interval', 'tcp_keepalives_count')
        ORDER BY name`,
    );
    expect(settings).toEqual([
      { name: 'idle_in_transaction_session_timeout', setting: '15000', unit: 'ms' },
      { name: 'tcp_keepalives_count', setting: '3', unit: null },
      { name: 'tcp_keepalives_idle', setting: '10', unit: 's' },
      { name: 'tcp_keepalives_interval', setting: '5', unit: 's' },
    ]);
  });

  it('a holder frozen with the row locked loses its session; checkouts of that product go through', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const [buyer] = await buyers(t.http, 1);

    // the same options as the app's pool, with a short limit so the test need not wait 15 s
    frozen = new DataSource({
      ...dataSourceOptions(t.db.url, { poolSize: 1, idleInTransactionMs: 300 }),
      entities: [],
    });
    await frozen.initialize();
    const holder = frozen.createQueryRunner();
    await holder.connect();
    await holder.startTransaction();
    await holder.query(`SELECT on_hand FROM inventory_items WHERE product_id = $1 FOR UPDATE`, [
      productId,
    ]);
    await holder.query(`UPDATE inventory_items SET reserved = reserved + 1 WHERE product_id = $1`, [
      productId,
    ]);
    // … and the holder goes silent: no COMMIT, no ROLLBACK, the socket left open

    const started = Date.now();
    const order = await placeOrder(t.http, buyer, [{ productId, quantity: 2 }]);
    expect(order.status).toBe(201);
    expect(Date.now() - started).toBeLessThan(10_000);

    // the frozen holder's work was rolled back with its session; its connection reports a failure
    // of the connection class (the breaker's kind), never a half-committed write
    const late = await holder.query('SELECT 1').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(late).toBeDefined();
    expect(isConnectionFailure(late)).toBe(true);
    await holder.release().catch(() => undefined);

    expect(await stockOf(t.db.pool, productId)).toMatchObject({ onHand: 5, reserved: 2 });
    await assertStockInvariants(t.db.pool, [productId]);
  });

  it('an app transaction whose session the server ends between statements answers 503, not 500, and writes nothing', async () => {
    const tx = t.app.get(TransactionHost);
    await tx.query(`CREATE TABLE IF NOT EXISTS ended_probe (v int)`);
    const outcome = await tx
      .run(async () => {
        await tx.query(`INSERT INTO ended_probe VALUES (1)`);
        const [{ pid }] = await tx.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`);
        await t.db.pool.query(`SELECT pg_terminate_backend($1)`, [pid]);
        // TypeORM releases the runner when the connection reports its end
        const runner = tx.manager.queryRunner!;
        await waitFor('the ended session to release its runner', async () => runner.isReleased, {
          intervalMs: 10,
        });
        await tx.query(`INSERT INTO ended_probe VALUES (2)`);
        return 'committed';
      })
      .catch((err: unknown) => err);
    expect(outcome).toBeInstanceOf(DomainError);
    expect((outcome as DomainError).code).toBe('SERVICE_UNAVAILABLE');
    expect((await t.db.pool.query(`SELECT count(*)::int AS n FROM ended_probe`)).rows).toEqual([
      { n: 0 },
    ]);
    // the pool is healthy afterwards
    expect(await tx.query<{ v: number }>('SELECT 1 AS v')).toEqual([{ v: 1 }]);
  });
});
