import { WebhookEventRepository } from '../../src/payments/webhook-event.repository';
import { WebhookEventRetention } from '../../src/payments/webhook-event-retention';
import { TestApp, bootTestApp } from '../support/test-app';

/**
 * The unprocessed-event sweep takes a batch, oldest first: an event it tried and that failed again
 * goes to the back of the line, so events that keep failing cannot hold the batch's front for ever.
 */
describe('the unprocessed webhook events sweep: its line', () => {
  let t: TestApp;
  let events: WebhookEventRepository;

  beforeAll(async () => {
    t = await bootTestApp();
    events = t.app.get(WebhookEventRepository);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('puts an event that failed again behind the others, and skips it until its turn comes again', async () => {
    const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000);
    const ids = ['evt_sweep_old', 'evt_sweep_mid', 'evt_sweep_new'];
    for (const [i, id] of ids.entries()) {
      expect(
        await events.record({
          id,
          type: 'payment_intent.succeeded',
          intentId: null,
          payload: {},
          at: minutesAgo(30 - i),
        }),
      ).toBe(true);
    }
    const before = minutesAgo(5);
    expect((await events.findUnprocessed(before, 10)).filter((id) => ids.includes(id))).toEqual(
      ids,
    );
    expect(await events.findUnprocessed(before, 2)).toEqual(ids.slice(0, 2));

    // the oldest fails again now: it waits its turn behind the others
    await events.noteSweepFailed('evt_sweep_old', minutesAgo(10));
    expect(await events.findUnprocessed(before, 2)).toEqual(['evt_sweep_mid', 'evt_sweep_new']);
    expect(await events.findUnprocessed(before, 10)).toEqual([
      'evt_sweep_mid',
      'evt_sweep_new',
      'evt_sweep_old',
    ]);
    await events.noteSweepFailed('evt_sweep_mid', minutesAgo(1)); // tried within the sweep's delay: not yet due
    expect(await events.findUnprocessed(before, 10)).toEqual(['evt_sweep_new', 'evt_sweep_old']);

    // a processed event leaves the line, and a late failure note does not bring it back
    await events.markProcessed('evt_sweep_new', new Date(), 'no-payment');
    await events.noteSweepFailed('evt_sweep_new', minutesAgo(20));
    expect(await events.findUnprocessed(before, 10)).toEqual(['evt_sweep_old']);
  });
});

// A processed provider event is never read again, yet its payload holds the customer's payment
// details: kept 30 days, then removed; an unprocessed one is never removed.
describe('processed webhook events: retention', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await bootTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('removes events processed more than 30 days ago, keeps newer and unprocessed ones', async () => {
    const daysAgo = (d: number) => new Date(Date.now() - d * 86_400_000);
    const rows: [string, Date, Date | null][] = [
      ['evt_ret_old_done', daysAgo(40), daysAgo(31)],
      ['evt_ret_new_done', daysAgo(40), daysAgo(29)],
      ['evt_ret_old_open', daysAgo(40), null],
    ];
    for (const [id, received, processed] of rows) {
      await t.db.pool.query(
        `INSERT INTO webhook_events (id, type, intent_id, payload, received_at, processed_at)
         VALUES ($1, 'payment_intent.succeeded', NULL, '{"data":{"object":{"receipt_email":"a@b.c"}}}', $2, $3)`,
        [id, received, processed],
      );
    }
    expect(await t.app.get(WebhookEventRetention).purge()).toBe(1);
    const left = await t.db.pool.query(
      `SELECT id FROM webhook_events WHERE id LIKE 'evt_ret_%' ORDER BY id`,
    );
    expect(left.rows.map((r) => r.id)).toEqual(['evt_ret_new_done', 'evt_ret_old_open']);
    expect(await t.app.get(WebhookEventRetention).purge()).toBe(0);
  });
});
