import type { INestApplicationContext } from '@nestjs/common';
import Stripe from 'stripe';
import { PaymentFinalizer } from '../../src/payments/payment-finalizer.service';
import { WebhookEventRepository } from '../../src/payments/webhook-event.repository';
import { QueueName } from '../../src/queue/queues';
import { drain } from '../support/drain';
import { TestApp, bootTestApp } from '../support/test-app';
import { bootTestWorker } from '../support/test-worker';

/**
 * A body signed with our webhook secret is Stripe's, but not every such body is an event we can
 * record: a thin (v2) event has no `data.object`, a misdirected destination or a tool holding the
 * secret may send anything. The code read `event.data.object` of whatever it got and answered 500
 * — which Stripe retries for days before it disables the endpoint.
 */
describe('signed webhook bodies of unexpected shapes', () => {
  const stripe = new Stripe('sk_test_unused');
  let t: TestApp;
  let worker: INestApplicationContext;

  beforeAll(async () => {
    t = await bootTestApp();
    worker = await bootTestWorker(t.config);
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
  });

  const post = (raw: string) =>
    t.http.request('POST', '/v1/webhooks/stripe', undefined, {
      raw,
      headers: {
        'stripe-signature': stripe.webhooks.generateTestHeaderString({
          payload: raw,
          secret: t.config.stripe.webhookSecret,
        }),
      },
    });
  const counts = async () =>
    (
      await t.db.pool.query(
        `SELECT (SELECT count(*) FROM webhook_events)::int AS events,
                (SELECT count(*) FROM outbox WHERE topic = 'payment.event')::int AS outbox`,
      )
    ).rows[0];

  it('answers 400 problem+json, storing nothing, for a signed body that is no event', async () => {
    const before = await counts();
    for (const body of [
      {},
      null,
      [],
      'x',
      42,
      {
        type: 'payment_intent.succeeded',
        data: { object: { id: 'pi_1', object: 'payment_intent' } },
      },
      { id: 'evt_no_type', data: { object: {} } },
      { id: 7, type: 'payment_intent.succeeded' },
      { id: '', type: 'payment_intent.succeeded' },
      { id: 'evt_long', type: 'x'.repeat(256) },
      { id: ['evt_array'], type: 'payment_intent.succeeded' },
      // ids no job can be named by (BullMQ: not digits only, no `:`), nor Stripe's form
      { id: '12345', type: 'payment_intent.succeeded' },
      { id: 'evt_a:b', type: 'payment_intent.succeeded' },
      { id: 'evt_' + 'x'.repeat(252), type: 'payment_intent.succeeded' },
    ]) {
      const res = await post(JSON.stringify(body));
      expect([JSON.stringify(body), res.status, res.body?.code]).toEqual([
        JSON.stringify(body),
        400,
        'VALIDATION_FAILED',
      ]);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    }
    expect(await counts()).toEqual(before);
  });

  it('records an event without a usable object (a thin event, a null or odd object) and marks it processed', async () => {
    const bodies = [
      {
        id: 'evt_thin_1',
        object: 'v2.core.event',
        type: 'v1.billing.meter.error_report_triggered',
      },
      { id: 'evt_null_data', type: 'payment_intent.succeeded', data: null },
      { id: 'evt_null_object', type: 'payment_intent.succeeded', data: { object: null } },
      {
        id: 'evt_odd_object',
        type: 'payment_intent.succeeded',
        data: { object: { id: { nested: true }, object: 'payment_intent' } },
      },
      {
        id: 'evt_odd_charge',
        type: 'charge.refunded',
        data: { object: { object: 'charge', payment_intent: 12 } },
      },
      // larger than the API's 64 KB: the webhooks take up to 1 MB
      {
        id: 'evt_large',
        type: 'customer.updated',
        data: { object: { object: 'customer', pad: 'x'.repeat(200 * 1024) } },
      },
    ];
    for (const body of bodies) {
      const res = await post(JSON.stringify(body));
      expect([body.id, res.status, res.body]).toEqual([
        body.id,
        200,
        { received: true, duplicate: false },
      ]);
    }
    await drain(worker, t.db.pool, { queues: [QueueName.Payments] });
    const rows = await t.db.pool.query(
      `SELECT id, intent_id, processed_at IS NOT NULL AS processed FROM webhook_events WHERE id = ANY($1) ORDER BY id`,
      [bodies.map((b) => b.id)],
    );
    expect(rows.rows).toEqual(
      bodies
        .map((b) => ({ id: b.id, intent_id: null, processed: true }))
        .sort((a, b) => a.id.localeCompare(b.id)),
    );
  });

  it('an event about an intent the simulated gateway does not know is "not ours", done with — as with Stripe', async () => {
    const res = await post(
      JSON.stringify({
        id: 'evt_unknown_intent',
        type: 'payment_intent.succeeded',
        data: { object: { id: 'pi_nobody_knows', object: 'payment_intent' } },
      }),
    );
    expect(res.status).toBe(200);
    // (it was retried by every job attempt and every reconciliation sweep, and never purged)
    expect(await worker.get(PaymentFinalizer).processEvent('evt_unknown_intent')).toEqual({
      kind: 'no-payment',
      eventId: 'evt_unknown_intent',
    });
    expect(
      (await worker.get(WebhookEventRepository).find('evt_unknown_intent'))?.processedAt,
    ).toBeInstanceOf(Date);
  });
});
