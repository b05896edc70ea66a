import { INestApplicationContext } from '@nestjs/common';
import { ReservationExpiryService } from '../../src/orders/reservation-expiry.service';
import { createAdmin } from '../support/auth';
import { createProduct } from '../support/catalog';
import { drain } from '../support/drain';
import { newKey, stockOf } from '../support/fixtures';
import { cancellationsOf } from '../support/order-status';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';

/**
 * A product taken off sale (a recall, a price mistake) left the unpaid orders holding its units
 * open: none of them could be paid any more (a payment begun after is refused), yet they held
 * the units until their windows ran out — the product mended and back on sale looked sold out,
 * and each counted against its customer's open orders meanwhile (admin review). The worker now
 * cancels them once the withdrawal commits (`product.withdrawn`), the shop's doing.
 */
describe('a product taken off sale releases the unpaid orders no payment has begun for', () => {
  let t: TestApp;
  let worker: INestApplicationContext;
  let admin: string;
  let alice: Buyer;
  let carol: Buyer;
  let bob: Buyer;

  beforeAll(async () => {
    t = await bootTestApp();
    worker = await bootTestWorker(t.config);
    admin = (await createAdmin(t)).accessToken;
    [alice, carol, bob] = await buyers(t.http, 3);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
  });

  const cancelled = async (orderId: string) => (await cancellationsOf(t.db.pool, [orderId]))[0];

  it('at once, as withdrawn: one whose payment began goes on, and one placed after its return to sale is left alone', async () => {
    const p = (await createProduct(t, admin, { stock: 3 })).id;
    const reserved = await placeOrder(t.http, alice, [{ productId: p, quantity: 2 }]);
    const paying = await placeOrder(t.http, carol, [{ productId: p, quantity: 1 }]);
    expect([reserved.status, paying.status]).toEqual([201, 201]);
    const started = await t.http.post(
      `/v1/orders/${paying.body.id}/payment`,
      {},
      { token: carol.token, idempotencyKey: newKey() },
    );
    expect(started.status).toBe(201);

    expect((await t.http.delete(`/v1/admin/products/${p}`, { token: admin })).status).toBe(204);
    await drain(worker, t.db.pool);

    expect(await cancelled(reserved.body.id)).toEqual({
      status: 'CANCELLED',
      reason: 'PAYMENT_FAILED',
      actor: 'system:product-withdrawn',
    });
    expect((await cancelled(paying.body.id)).status).toBe('PAYMENT_PENDING');
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 3, reserved: 1 });

    // mended and back on sale: its two released units are sold at once, not after a window
    const back = await t.http.patch(`/v1/admin/products/${p}`, { active: true }, { token: admin });
    expect([back.status, back.body.availableQuantity]).toEqual([200, 2]);
    const after = await placeOrder(t.http, bob, [{ productId: p, quantity: 2 }]);
    expect(after.status).toBe(201);
    // the withdrawal's job run again (a retry, a second publish): an order placed after the
    // return to sale is not the withdrawal's
    expect(await worker.get(ReservationExpiryService).releaseWithdrawn({ productId: p })).toBe(0);
    expect((await cancelled(after.body.id)).status).toBe('INVENTORY_RESERVED');
    // the one whose payment began before the withdrawal, left unpaid, runs out as the customer's:
    // never "withdrawn before its payment began"
    await t.db.pool.query(
      `UPDATE orders SET reservation_expires_at = now() - interval '1 minute' WHERE id = $1`,
      [paying.body.id],
    );
    expect(await worker.get(ReservationExpiryService).expire(paying.body.id)).toBe(true);
    expect(await cancelled(paying.body.id)).toEqual({
      status: 'CANCELLED',
      reason: 'RESERVATION_EXPIRED',
      actor: 'system:expiry',
    });
  }, 60_000);

  it('taken off sale by a PATCH too, and every order of it, beyond a batch', async () => {
    const p = (await createProduct(t, admin, { stock: 300 })).id;
    const placed: string[] = [];
    const customers = [alice, bob, carol];
    for (let i = 0; i < 105; i++) {
      const res = await placeOrder(t.http, customers[i % 3], [{ productId: p, quantity: 1 }]);
      expect(res.status).toBe(201);
      placed.push(res.body.id as string);
    }
    const off = await t.http.patch(`/v1/admin/products/${p}`, { active: false }, { token: admin });
    expect(off.status).toBe(200);
    // (run here as the worker's job runs it — beside it, if the relay has published it already:
    // the cancels are guarded — rather than waited for with its hundred emails behind it)
    await worker.get(ReservationExpiryService).releaseWithdrawn({ productId: p });
    const left = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM orders WHERE id = ANY($1::uuid[]) AND status <> 'CANCELLED'`,
      [placed],
    );
    expect(left.rows[0].n).toBe(0);
    expect(await stockOf(t.db.pool, p)).toEqual({ onHand: 300, reserved: 0 });
  }, 120_000);
});
