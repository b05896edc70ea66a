import { TransactionHost } from '../../src/database/transaction-host';
import { OrderTransitionsService } from '../../src/orders/order-transitions.service';
import { untilWaitingOnLocks } from '../support/lock-waiters';
import { assertStockInvariants, insertProduct, stockOf } from '../support/fixtures';
import { buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * A cancel, an expiry or a payment settles an order's reservation (release, commit) in the
 * message that carries its COMMIT, as a checkout reserves: the hot inventory row is locked only
 * while the server runs that statement and commits. It used to be locked from the release's
 * first statement to the end of the transaction — across its round trips, the outbox event,
 * the idempotency record and every turn of a loaded event loop — so during a sale each payment
 * and each cancel of an order holding the hot product queued every checkout of it.
 *
 * Here the transition's transaction is held open after its work (a gate), and a checkout of the
 * same product must go through meanwhile.
 */
describe('settling a reservation holds the inventory rows only for the COMMIT message', () => {
  let t: TestApp;
  let tx: TransactionHost;
  let transitions: OrderTransitionsService;

  beforeAll(async () => {
    t = await bootTestApp();
    tx = t.app.get(TransactionHost);
    transitions = t.app.get(OrderTransitionsService);
  });
  afterAll(async () => {
    await t?.close();
  });

  /**
   * Runs `transition` in a transaction left open until the returned `commit()`; meanwhile a
   * checkout of `productId` by another customer must answer without waiting on a row lock.
   */
  async function checkoutDuringOpenTransition(
    productId: string,
    transition: () => Promise<unknown>,
  ) {
    const [other] = await buyers(t.http, 1);
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let worked!: () => void;
    const done = new Promise<void>((resolve) => (worked = resolve));
    const held = tx.run(async () => {
      await transition();
      worked();
      await gate; // the transaction's work is done; its COMMIT has not been sent
    });
    try {
      await done;
      const checkout = placeOrder(t.http, other, [{ productId, quantity: 1 }]);
      // the old code: the checkout's reservation waits on the row the transition holds
      // (any lock wait: the checkout's message is longer than pg_stat_activity keeps of a query)
      const blocked = untilWaitingOnLocks(
        t.db.pool,
        'a checkout blocked on the inventory row',
      ).then(
        () => 'blocked' as const,
        () => 'never blocked' as const,
      );
      const first = await Promise.race([checkout.then(() => 'answered' as const), blocked]);
      expect(first).toBe('answered');
      expect((await checkout).status).toBe(201);
    } finally {
      open();
      await held;
    }
  }

  it('a cancel (release)', async () => {
    const p = await insertProduct(t.db.pool, { stock: 10 });
    const [alice] = await buyers(t.http, 1);
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    expect(order.status).toBe(201);
    await checkoutDuringOpenTransition(p, () =>
      transitions.cancel(order.body.id as string, 'CUSTOMER_REQUESTED', 'test'),
    );
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 10, reserved: 1 });
    await assertStockInvariants(t.db.pool, [p]);
    const ledger = await t.db.pool.query(
      `SELECT kind, on_hand_delta, reserved_delta FROM stock_movements WHERE order_id = $1 ORDER BY kind`,
      [order.body.id],
    );
    expect(ledger.rows).toEqual([
      { kind: 'release', on_hand_delta: 0, reserved_delta: -2 },
      { kind: 'reserve', on_hand_delta: 0, reserved_delta: 2 },
    ]);
  });

  it('a payment (commit), counted once towards popularity', async () => {
    const p = await insertProduct(t.db.pool, { stock: 10 });
    const q = await insertProduct(t.db.pool, { stock: 10 });
    const [alice] = await buyers(t.http, 1);
    const order = await placeOrder(t.http, alice, [
      { productId: p, quantity: 2 },
      { productId: q, quantity: 3 },
    ]);
    expect(order.status).toBe(201);
    await checkoutDuringOpenTransition(p, () =>
      transitions.markPaid(order.body.id as string, 'test'),
    );
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 8, reserved: 1 });
    expect(await stockOf(t.db.pool, q)).toEqual({ onHand: 7, reserved: 0 });
    await assertStockInvariants(t.db.pool, [p, q]);
    const sold = await t.db.pool.query(
      `SELECT id, units_sold FROM products WHERE id = ANY($1) ORDER BY units_sold`,
      [[p, q]],
    );
    expect(sold.rows.map((r) => r.units_sold)).toEqual([2, 3]);
    const status = await t.db.pool.query(`SELECT status FROM orders WHERE id = $1`, [
      order.body.id,
    ]);
    expect(status.rows[0].status).toBe('PAID');
  });

  it('a transition that fails after settling leaves the stock as it was (the settle rolls back with it)', async () => {
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const [alice] = await buyers(t.http, 1);
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    await expect(
      tx.run(async () => {
        await transitions.cancel(order.body.id as string, 'CUSTOMER_REQUESTED', 'test');
        throw new Error('fails after the release');
      }),
    ).rejects.toThrow('fails after the release');
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 5, reserved: 2 });
    const status = await t.db.pool.query(`SELECT status FROM orders WHERE id = $1`, [
      order.body.id,
    ]);
    expect(status.rows[0].status).toBe('INVENTORY_RESERVED');
    await assertStockInvariants(t.db.pool, [p]);
  });
});
