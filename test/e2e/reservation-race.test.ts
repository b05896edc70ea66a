import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import { Clock } from '../../src/common/time/clock';
import { TransactionHost, pgConstraint, pgErrorCode } from '../../src/database/transaction-host';
import { InventoryRepository } from '../../src/inventory/inventory.repository';
import {
  StockLine,
  StockReservationRepository,
  shortfallsOf,
} from '../../src/inventory/stock-reservation.repository';
import { assertStockInvariants, insertProduct, newKey, stockOf } from '../support/fixtures';
import type { HttpResponse } from '../support/http';
import { buyers, placeOrder } from '../support/orders';
import { untilWaitingOnLocks } from '../support/lock-waiters';
import { waitFor } from '../support/wait-for';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * Issue 11, defect 1: the reservation statement (StockReservationRepository.reserveAllOnCommit)
 * must decide and write from the same row version, so a release, restock or sale committed while
 * it waits for the row lock can never make PostgreSQL's CHECK inventory_reserved_within_on_hand
 * (23514) reject it — the statement's own test must. Driven through the repository's SQL and the
 * real TransactionHost (BEGIN, then the reservation sent with COMMIT), with an identity mapError
 * so raw database errors stay visible.
 */
describe('stock reservation under concurrent reserve / release / restock', () => {
  let t: TestApp;
  let tx: TransactionHost;
  let stock: StockReservationRepository;
  let inventory: InventoryRepository;
  let clock: Clock;

  beforeAll(async () => {
    // 24 reserving clients + releasers, a restocker and a seller, each on its own connection
    t = await bootTestApp({ env: { DATABASE_POOL_SIZE: '40' } });
    tx = t.app.get(TransactionHost);
    stock = t.app.get(StockReservationRepository);
    inventory = t.app.get(InventoryRepository);
    clock = t.app.get(Clock);
  });
  afterAll(async () => {
    await t?.close();
  });

  const reserve = (lines: StockLine[], orderId = randomUUID()) =>
    tx.run(async () => stock.reserveAllOnCommit(orderId, lines, (err) => err));

  /**
   * Gives back (release) or sells (commit) a reservation made earlier, as the order transitions
   * do: settle_stock sent with the COMMIT, which takes the row lock itself (no lock here first).
   */
  const settle = (kind: 'release' | 'commit', orderId: string, lines: StockLine[]) =>
    tx.run(async () => stock.settleOnCommit(kind, orderId, lines));

  async function ledgerOf(productId: string) {
    const { rows } = await t.db.pool.query(
      `SELECT sum(on_hand_delta)::int AS "onHand", sum(reserved_delta)::int AS reserved
         FROM stock_movements WHERE product_id = $1`,
      [productId],
    );
    return rows[0] as { onHand: number; reserved: number };
  }

  /** Waits until the reservation statement is blocked on a lock. */
  async function untilTheReservationWaitsForALock(): Promise<void> {
    await untilWaitingOnLocks(t.db.pool, 'the reservation to wait for the row lock', {
      matching: '%reserve_stock(%',
    });
  }

  it('a release committed while the reservation waits for the row is seen: the unit is reserved', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 10 });
    await reserve([{ productId, quantity: 10 }]); // sold out: 10 on hand, 10 reserved
    const releaser: PoolClient = await t.db.pool.connect();
    try {
      await releaser.query('BEGIN');
      await releaser.query(
        `UPDATE inventory_items SET reserved = reserved - 1 WHERE product_id = $1`,
        [productId],
      );
      await releaser.query(
        `INSERT INTO stock_movements (product_id, kind, on_hand_delta, reserved_delta, reason, order_id)
         VALUES ($1, 'release', 0, -1, 'test', $2)`,
        [productId, randomUUID()],
      );
      const reservation = reserve([{ productId, quantity: 1 }]).then(
        () => 'reserved',
        (err: unknown) =>
          `${pgErrorCode(err)} ${pgConstraint(err) ?? JSON.stringify(shortfallsOf(err))}`,
      );
      await untilTheReservationWaitsForALock();
      await releaser.query('COMMIT');
      // before the fix: 23514 inventory_reserved_within_on_hand (the new row was built from the
      // version the statement's snapshot saw, reserved 10 + 1 > 10, and checked before the update
      // noticed that version was gone); a single-statement guarded UPDATE answers a false shortage
      expect(await reservation).toBe('reserved');
    } finally {
      releaser.release();
    }
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 10, reserved: 10 });
    expect(await ledgerOf(productId)).toEqual({ onHand: 10, reserved: 10 });
  });

  it("a checkout waiting for one of its rows holds none of the others: the locks go in product id order, not the lines'", async () => {
    const [first, second] = await buyers(t.http, 2);
    const [p1, p2] = (
      await Promise.all([
        insertProduct(t.db.pool, { stock: 5 }),
        insertProduct(t.db.pool, { stock: 5 }),
      ])
    ).sort();
    // the backends waiting on a lock (X for p1; Y too if X took p2 before it waited)
    const waiting = async () =>
      (
        await t.db.pool.query(
          `SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
              AND pid <> pg_backend_pid()`,
        )
      ).rowCount ?? 0;
    const holder: PoolClient = await t.db.pool.connect();
    let x: Promise<HttpResponse> | undefined;
    let y: Promise<HttpResponse> | undefined;
    let yAnswer: HttpResponse | undefined;
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM inventory_items WHERE product_id = $1 FOR UPDATE`, [p1]);
      // X names p2 first: sorted, it waits for p1 holding nothing; in the lines' order it would
      // hold p2 while it waits
      x = placeOrder(t.http, first, [
        { productId: p2, quantity: 1 },
        { productId: p1, quantity: 1 },
      ]);
      await untilWaitingOnLocks(t.db.pool, 'checkout X to wait for p1');
      y = placeOrder(t.http, second, [{ productId: p2, quantity: 1 }]).then(
        (res) => (yAnswer = res),
      );
      // while p1 is still held: Y is answered, or it waits behind X (locks taken in the lines'
      // order: until p1 is let go; a deadlock had the holder wanted p2, which TransactionHost
      // retries out of sight — no other test noticed)
      const outcome = await waitFor(
        'Y to be answered or to wait on a row lock',
        async () => (yAnswer ? 'answered' : (await waiting()) > 1 ? 'waiting behind X' : undefined),
        { intervalMs: 10 },
      );
      expect(outcome).toBe('answered');
      expect(yAnswer?.status).toBe(201);
    } finally {
      await holder.query('COMMIT');
      holder.release();
    }
    expect((await x).status).toBe(201);
    expect((await y)?.status).toBe(201);
    expect(await stockOf(t.db.pool, p1)).toEqual({ onHand: 5, reserved: 1 });
    expect(await stockOf(t.db.pool, p2)).toEqual({ onHand: 5, reserved: 2 });
    await assertStockInvariants(t.db.pool, [p1, p2]);
  });

  it('24 reserving clients against releases, restocks and sales of one SKU: never a 23514', async () => {
    const productId = await insertProduct(t.db.pool, { stock: 8 });
    const seen = { reserved: 0, short: 0, released: 0, sold: 0, restocked: 0, checkViolations: 0 };
    const unexpected: string[] = [];
    // on until the race was really exercised (the floors asserted below: stock kept running out
    // and coming back), however long a loaded machine takes that, but at most 12 s: well inside
    // the test's 20 s timeout, so a race never exercised fails on those floors, not the timeout
    const started = Date.now();
    const exercised = () => seen.reserved > 50 && seen.short > 50 && seen.released + seen.sold > 20;
    const going = () => !exercised() && Date.now() - started < 12_000;

    const loop = async (step: (i: number) => Promise<void>) => {
      for (let i = 0; going(); i++) await step(i);
    };
    // reservations made and not settled yet, for the settlers to release or sell
    const held: { orderId: string; lines: StockLine[] }[] = [];
    const reserver = (n: number) =>
      loop(async (i) => {
        try {
          const orderId = randomUUID();
          const lines = [{ productId, quantity: 1 + ((n + i) % 2) }];
          await reserve(lines, orderId);
          held.push({ orderId, lines });
          seen.reserved++;
        } catch (err) {
          if (shortfallsOf(err)) seen.short++;
          else if (pgErrorCode(err) === '23514') seen.checkViolations++;
          else unexpected.push(String(err));
        }
      });
    const settler = (kind: 'release' | 'commit') =>
      loop(async () => {
        const reservation = held.shift();
        if (!reservation) return void (await new Promise((r) => setTimeout(r, 1)));
        try {
          await settle(kind, reservation.orderId, reservation.lines);
          seen[kind === 'release' ? 'released' : 'sold']++;
        } catch (err) {
          if (pgErrorCode(err) === '23514') seen.checkViolations++;
          else unexpected.push(String(err));
        }
      });
    const restocker = () =>
      loop(async () => {
        const level = await inventory.level(productId);
        if (level && level.onHand < 12) {
          const restock = await inventory.adjust(
            productId,
            1,
            'restock',
            randomUUID(),
            clock.now(),
          );
          if (restock && !('refused' in restock)) seen.restocked++;
        } else {
          await new Promise((r) => setTimeout(r, 1)); // pacing: let the others take the stock
        }
      });

    await Promise.all([
      ...Array.from({ length: 24 }, (_, n) => reserver(n)),
      settler('release'),
      settler('release'),
      settler('release'),
      settler('commit'),
      restocker(),
    ]);

    expect(unexpected).toEqual([]);
    expect(seen.checkViolations).toBe(0);
    // the race really was exercised: stock kept running out and coming back
    expect(seen.reserved).toBeGreaterThan(50);
    expect(seen.short).toBeGreaterThan(50);
    expect(seen.released + seen.sold).toBeGreaterThan(20);
    // the counters agree with the ledger, and nothing is oversold
    const level = await stockOf(t.db.pool, productId);
    expect(await ledgerOf(productId)).toEqual(level);
    expect(level.reserved).toBeLessThanOrEqual(level.onHand);
  }, 20_000);

  it('a CHECK violation that still reaches the reservation answers 409 INSUFFICIENT_STOCK, not 500', async () => {
    const [buyer] = await buyers(t.http, 1);
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    // A test-only trigger makes the reservation's write overshoot on-hand, as the race used to:
    // PostgreSQL's CHECK inventory_reserved_within_on_hand (23514) rejects the statement.
    await t.db.pool.query(`
      CREATE FUNCTION overshoot() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN NEW.reserved := NEW.on_hand + 1; RETURN NEW; END $$`);
    await t.db.pool.query(
      `CREATE TRIGGER overshoot BEFORE UPDATE ON inventory_items FOR EACH ROW
         WHEN (NEW.product_id = '${productId}') EXECUTE FUNCTION overshoot()`,
    );
    try {
      const res = await placeOrder(t.http, buyer, [{ productId, quantity: 2 }]);
      expect(res.status).toBe(409);
      expect(res.body.code).toBe('INSUFFICIENT_STOCK');
      expect(res.body.products).toEqual([{ productId, requested: 2 }]);
    } finally {
      await t.db.pool.query(`DROP TRIGGER overshoot ON inventory_items`);
    }
    expect(await stockOf(t.db.pool, productId)).toEqual({ onHand: 5, reserved: 0 });
    const { rows } = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM orders WHERE user_id = $1`,
      [buyer.userId],
    );
    expect(rows[0].n).toBe(0);
  });

  it('through HTTP: buyers order and cancel one SKU while it is restocked — only 201 or 409 INSUFFICIENT_STOCK', async () => {
    const crowd = await buyers(t.http, 12);
    const productId = await insertProduct(t.db.pool, { stock: 4 });
    // until 20 orders have been placed (each then cancelled, its unit given back) — a count, not
    // a time: 4 s gave 9 on a loaded machine; the restocks go on for as long as the buyers do
    let placed = 0;
    let buying = true;
    const statuses: Record<string, number> = {};
    const count = (k: string) => (statuses[k] = (statuses[k] ?? 0) + 1);

    await Promise.all([
      (async () => {
        await Promise.all(
          crowd.map(async (buyer) => {
            while (placed < 20) {
              const res = await placeOrder(t.http, buyer, [{ productId, quantity: 1 }]);
              count(`order ${res.status} ${res.body?.code ?? ''}`.trim());
              if (res.status !== 201) continue;
              placed++;
              // cancelling gives the unit back (a release) while others are reserving
              const cancel = await t.http.post(
                `/v1/orders/${res.body.id}/cancel`,
                {},
                { token: buyer.token, idempotencyKey: newKey() },
              );
              count(`cancel ${cancel.status}`);
            }
          }),
        );
        buying = false;
      })(),
      (async () => {
        while (buying) {
          const level = await inventory.level(productId);
          if (level && level.onHand < 8)
            await inventory.adjust(productId, 1, 'restock', randomUUID(), clock.now());
          else await new Promise((r) => setTimeout(r, 5)); // pacing, not a wait before an assertion
        }
      })(),
    ]);

    expect(
      Object.keys(statuses).filter(
        (k) => !/^order (201|409 INSUFFICIENT_STOCK)$|^cancel 200$/.test(k),
      ),
    ).toEqual([]);
    expect(statuses['order 201']).toBeGreaterThanOrEqual(20);
    expect(statuses['cancel 200']).toBe(statuses['order 201']);
    await assertStockInvariants(t.db.pool, [productId]);
  }, 60_000);
});
