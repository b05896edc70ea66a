import { WebhookEventRepository } from '../../src/payments/webhook-event.repository';
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
    await events.markProcessed('evt_sweep_new', new Date());
    await events.noteSweepFailed('evt_sweep_new', minutesAgo(20));
    expect(await events.findUnprocessed(before, 10)).toEqual(['evt_sweep_old']);
  });
});
