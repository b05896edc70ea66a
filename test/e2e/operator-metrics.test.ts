import { INestApplicationContext } from '@nestjs/common';
import { insertProduct } from '../support/fixtures';
import { Buyer, buyers, placeOrder } from '../support/orders';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';
import { waitFor } from '../support/wait-for';

/**
 * What the engineer on call reads from /metrics to say how late the backlog is: the oldest pending
 * outbox row's age; on the real database.
 */
describe('metrics an operator reads in an incident', () => {
  let t: TestApp;
  let worker: INestApplicationContext | undefined;
  let alice: Buyer;

  /** A sample of this app's page (undefined when the page has none). */
  const sample = async (series: string) => {
    const escaped = series.replace(/[{}]/g, (c) => `\\${c}`);
    const found = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(await t.metrics())?.[1];
    return found === undefined ? undefined : Number(found);
  };

  beforeAll(async () => {
    t = await bootTestApp();
    [alice] = await buyers(t.http, 1);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
  });

  it("outbox_oldest_pending_age_seconds: above 0 while an order's event waits for the relay, 0 once the relay has published it", async () => {
    // the API alone: no relay runs, the order's event stays pending
    const p = await insertProduct(t.db.pool, { stock: 5 });
    const order = await placeOrder(t.http, alice, [{ productId: p, quantity: 1 }]);
    expect(order.status).toBe(201);
    const waiting = await waitFor(
      'the pending event to be seen waiting',
      () => sample('outbox_oldest_pending_age_seconds'),
      { until: (age) => age !== undefined && age > 0 },
    );
    expect(waiting).toBeLessThan(60);
    // the worker's relay publishes it: nothing pending, 0 (a count serves scrapes up to 5 s)
    worker = await bootTestWorker(t.config);
    await waitFor('the outbox to be drained', () => sample('outbox_oldest_pending_age_seconds'), {
      until: (age) => age === 0,
      timeoutMs: 20_000,
    });
    expect(await sample('outbox_backlog{status="pending"}')).toBe(0);
  }, 40_000);
});
