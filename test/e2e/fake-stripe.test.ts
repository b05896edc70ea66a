import Stripe from 'stripe';
import { FakeStripe, startFakeStripe } from '../support/fake-stripe';

/** The fake Stripe API, exercised through the real SDK exactly as the app configures it. */
describe('fake Stripe (through the real stripe SDK)', () => {
  let fake: FakeStripe;
  let stripe: Stripe;
  let n = 0;
  const key = () => `test-key-${process.pid}-${++n}`;
  const createIntent = (amount = 2500, idempotencyKey = key()) =>
    stripe.paymentIntents.create(
      { amount, currency: 'INR', metadata: { orderId: `o-${n}` } },
      { idempotencyKey },
    );
  const paidIntent = async (amount = 2500) => {
    const pi = await createIntent(amount);
    fake.succeed(pi.id);
    return pi;
  };
  const errorOf = (p: Promise<unknown>): Promise<Stripe.errors.StripeError> =>
    p.then(
      () => {
        throw new Error('expected the Stripe call to fail');
      },
      (e: Stripe.errors.StripeError) => e,
    );

  beforeAll(async () => {
    fake = await startFakeStripe();
    const { hostname, port, protocol } = new URL(fake.url);
    stripe = new Stripe(fake.secretKey, {
      host: hostname,
      port: Number(port),
      protocol: protocol === 'http:' ? 'http' : 'https',
      maxNetworkRetries: 2,
      timeout: 5000,
    });
  });
  afterAll(() => fake?.close());

  it('creates and retrieves a payment intent shaped like Stripe', async () => {
    const created = await stripe.paymentIntents.create(
      {
        amount: 24900,
        currency: 'INR',
        metadata: { orderId: 'order-1' },
        automatic_payment_methods: { enabled: true },
      },
      { idempotencyKey: key() },
    );
    expect(created).toMatchObject({
      object: 'payment_intent',
      amount: 24900,
      currency: 'inr',
      status: 'requires_payment_method',
      metadata: { orderId: 'order-1' },
      automatic_payment_methods: { enabled: true },
      last_payment_error: null,
      latest_charge: null,
    });
    expect(created.id).toMatch(/^pi_/);
    expect(created.client_secret).toMatch(new RegExp(`^${created.id}_secret_\\w+$`));
    expect(created.lastResponse.requestId).toMatch(/^req_/);
    expect(fake.requests.at(-1)).toMatchObject({
      method: 'POST',
      path: '/v1/payment_intents',
      body: { amount: '24900', metadata: { orderId: 'order-1' } },
    });

    const read = await stripe.paymentIntents.retrieve(created.id);
    expect(read).toMatchObject({ id: created.id, amount: 24900, status: created.status });
    expect(fake.intent(created.id)?.metadata).toEqual({ orderId: 'order-1' });
  });

  it('answers unknown ids with 404 resource_missing and bad keys with 401', async () => {
    const missing = await errorOf(stripe.paymentIntents.retrieve('pi_nope'));
    expect(missing).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(missing).toMatchObject({ statusCode: 404, code: 'resource_missing', param: 'intent' });

    const wrongKey = new Stripe('sk_test_wrong_key_1234', {
      host: '127.0.0.1',
      port: Number(new URL(fake.url).port),
      protocol: 'http',
    });
    const denied = await errorOf(wrongKey.paymentIntents.retrieve('pi_nope'));
    expect(denied).toBeInstanceOf(Stripe.errors.StripeAuthenticationError);
    expect(denied.statusCode).toBe(401);
    expect(denied.message).toMatch(/^Invalid API Key provided/);
  });

  it('replays a create with the same idempotency key instead of making a second intent', async () => {
    const k = key();
    const first = await createIntent(1500, k);
    const again = await createIntent(1500, k);
    expect(again.id).toBe(first.id);
    expect(again.lastResponse.headers['idempotent-replayed']).toBe('true');
    expect(first.lastResponse.headers['idempotent-replayed']).toBeUndefined();
    expect(fake.requests.filter((r) => r.idempotencyKey === k)).toHaveLength(2);
  });

  it('refuses the same idempotency key with other parameters or another endpoint', async () => {
    const k = key();
    await createIntent(1500, k);
    const changed = await errorOf(createIntent(1600, k));
    expect(changed).toBeInstanceOf(Stripe.errors.StripeIdempotencyError);
    expect(changed.statusCode).toBe(400);
    expect(changed.message).toMatch(/same parameters/);

    const elsewhere = await errorOf(
      stripe.refunds.create({ payment_intent: 'pi_x' }, { idempotencyKey: k }),
    );
    expect(elsewhere).toBeInstanceOf(Stripe.errors.StripeIdempotencyError);
  });

  it('pays, refunds partially, lists refunds newest first and refuses over-refunds', async () => {
    const pi = await createIntent(3000);
    const paid = fake.succeed(pi.id);
    expect(paid).toMatchObject({ object: 'event', type: 'payment_intent.succeeded' });
    const paidIntent = paid.data.object as Stripe.PaymentIntent;
    expect(paidIntent).toMatchObject({ id: pi.id, status: 'succeeded', amount_received: 3000 });
    expect(paidIntent.latest_charge).toMatch(/^ch_/);

    const r1 = await stripe.refunds.create(
      { payment_intent: pi.id, amount: 1000, metadata: { orderId: 'o' } },
      { idempotencyKey: key() },
    );
    expect(r1).toMatchObject({
      object: 'refund',
      amount: 1000,
      currency: 'inr',
      payment_intent: pi.id,
      charge: paidIntent.latest_charge,
      status: 'succeeded',
      metadata: { orderId: 'o' },
    });
    const r2 = await stripe.refunds.create({ payment_intent: pi.id, amount: 500 });

    const list = await stripe.refunds.list({ payment_intent: pi.id });
    expect(list).toMatchObject({ object: 'list', has_more: false, url: '/v1/refunds' });
    expect(list.data.map((r) => r.id)).toEqual([r2.id, r1.id]);

    const tooMuch = await errorOf(
      stripe.refunds.create({ payment_intent: pi.id, amount: 1501 }, { idempotencyKey: key() }),
    );
    expect(tooMuch).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(tooMuch).toMatchObject({ statusCode: 400, code: 'amount_too_large', param: 'amount' });
    expect(tooMuch.message).toBe(
      'Refund amount (₹15.01) is greater than unrefunded amount on charge (₹15.00)',
    );

    await stripe.refunds.create({ payment_intent: pi.id }, { idempotencyKey: key() });
    const done = await errorOf(stripe.refunds.create({ payment_intent: pi.id, amount: 1 }));
    expect(done.code).toBe('charge_already_refunded');
  });

  it('lists intents, refunds and disputes newest first by their creation time (created[gte], [lt] …), page by page through the SDK', async () => {
    const since = Math.floor(Date.now() / 1000);
    const made = [await paidIntent(1100), await paidIntent(1200), await createIntent(1300)];
    const refund = await stripe.refunds.create({ payment_intent: made[0].id, amount: 100 });
    fake.dispute(made[1].id, 'needs_response', 'created');
    const madeHere = (list: { id: string }[]) =>
      list.map((o) => o.id).filter((id) => made.some((m) => m.id === id));
    const pages = () =>
      fake.requests.filter((r) => r.method === 'GET' && r.path === '/v1/payment_intents').length;

    // pages of 2: the SDK follows starting_after to the end
    const before = pages();
    const all = await stripe.paymentIntents
      .list({ created: { gte: since }, limit: 2 })
      .autoPagingToArray({ limit: 1000 });
    expect(madeHere(all)).toEqual(made.map((m) => m.id).reverse());
    expect(pages() - before).toBeGreaterThanOrEqual(2);
    expect((await stripe.paymentIntents.list({ created: { gte: since + 3600 } })).data).toEqual([]);
    const older = await stripe.paymentIntents
      .list({ created: { lt: since } })
      .autoPagingToArray({ limit: 1000 });
    expect(madeHere(older)).toEqual([]);

    const refunds = await stripe.refunds
      .list({ created: { gte: since }, limit: 1 })
      .autoPagingToArray({ limit: 1000 });
    expect(refunds.map((r) => r.id)).toContain(refund.id);
    const disputes = await stripe.disputes
      .list({ created: { gte: since } })
      .autoPagingToArray({ limit: 1000 });
    expect(disputes.filter((d) => d.payment_intent === made[1].id)).toEqual([
      expect.objectContaining({ object: 'dispute', status: 'needs_response' }),
    ]);

    const bad = await errorOf(stripe.paymentIntents.list({ created: { gte: -1 } }));
    expect(bad).toMatchObject({ statusCode: 400, code: 'parameter_invalid_integer' });
    const gone = await errorOf(stripe.paymentIntents.list({ starting_after: 'pi_gone' }));
    expect(gone).toMatchObject({ statusCode: 400, code: 'resource_missing' });
  });

  it('replays an error for the same key (no new effect) and refuses refunds of unpaid intents', async () => {
    const pi = await paidIntent(1000);
    const k = key();
    const first = await errorOf(
      stripe.refunds.create({ payment_intent: pi.id, amount: 1001 }, { idempotencyKey: k }),
    );
    const again = await errorOf(
      stripe.refunds.create({ payment_intent: pi.id, amount: 1001 }, { idempotencyKey: k }),
    );
    expect([first.code, again.code]).toEqual(['amount_too_large', 'amount_too_large']);
    expect(again.headers?.['idempotent-replayed']).toBe('true');

    const unpaid = await createIntent();
    const refused = await errorOf(stripe.refunds.create({ payment_intent: unpaid.id }));
    expect(refused).toMatchObject({ statusCode: 400, code: 'charge_not_refundable' });
  });

  it('cancels an open intent once, and refuses to cancel a paid one', async () => {
    const open = await createIntent();
    const canceled = await stripe.paymentIntents.cancel(
      open.id,
      { cancellation_reason: 'abandoned' },
      { idempotencyKey: key() },
    );
    expect(canceled).toMatchObject({ status: 'canceled', cancellation_reason: 'abandoned' });
    const twice = await errorOf(
      stripe.paymentIntents.cancel(open.id, {}, { idempotencyKey: key() }),
    );
    expect(twice).toMatchObject({ statusCode: 400, code: 'payment_intent_unexpected_state' });
    expect(fake.eventFor('payment_intent.canceled', open.id).data.object).toMatchObject({
      status: 'canceled',
    });

    const paid = await paidIntent();
    const refused = await errorOf(
      stripe.paymentIntents.cancel(paid.id, {}, { idempotencyKey: key() }),
    );
    expect(refused).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(refused).toMatchObject({ statusCode: 400, code: 'payment_intent_unexpected_state' });
    expect(refused.message).toMatch(/status of succeeded/);
    expect(fake.intent(paid.id)?.status).toBe('succeeded');
  });

  it('declines a card: back to requires_payment_method with card_declined, then can still pay', async () => {
    const pi = await createIntent();
    const failed = fake.decline(pi.id);
    expect(failed.type).toBe('payment_intent.payment_failed');
    expect(failed.data.object).toMatchObject({
      status: 'requires_payment_method',
      last_payment_error: { code: 'card_declined', type: 'card_error' },
    });
    expect((await stripe.paymentIntents.retrieve(pi.id)).last_payment_error?.code).toBe(
      'card_declined',
    );
    expect(fake.succeed(pi.id).data.object).toMatchObject({ status: 'succeeded' });
  });

  it('reports a dashboard refund as charge.refunded and honours bank-declined refunds', async () => {
    const pi = await paidIntent(2000);
    const ev = fake.refundFromDashboard(pi.id, 500);
    expect(ev.type).toBe('charge.refunded');
    expect(ev.data.object).toMatchObject({
      object: 'charge',
      payment_intent: pi.id,
      amount: 2000,
      amount_refunded: 500,
      refunded: false,
      refunds: { data: [{ amount: 500, status: 'succeeded' }] },
    });

    fake.declineRefunds(pi.id);
    const r = await stripe.refunds.create({ payment_intent: pi.id }, { idempotencyKey: key() });
    expect(r).toMatchObject({ status: 'failed', amount: 1500, failure_reason: 'declined' });
    expect(fake.eventFor('charge.refunded', pi.id).data.object).toMatchObject({
      amount_refunded: 500,
    });
    expect(fake.eventFor('refund.failed', pi.id).data.object).toMatchObject({ id: r.id });
  });

  it('fails the next requests on a path with 5xx, which the SDK retries with the same key', async () => {
    fake.failNext('/v1/payment_intents', 500);
    const k = key();
    const pi = await createIntent(700, k);
    const attempts = fake.requests.filter((r) => r.idempotencyKey === k);
    expect(attempts).toHaveLength(2);
    expect(pi.amount).toBe(700);

    fake.failNext('/v1/refunds', 503, 1);
    const paid = await paidIntent(800);
    const noRetry = { idempotencyKey: key(), maxNetworkRetries: 0 };
    const unavailable = await errorOf(stripe.refunds.create({ payment_intent: paid.id }, noRetry));
    expect(unavailable).toBeInstanceOf(Stripe.errors.StripeAPIError);
    expect(unavailable.statusCode).toBe(503);
    // 5xx is not stored under the key: the same request now goes through.
    const refund = await stripe.refunds.create({ payment_intent: paid.id }, noRetry);
    expect(refund).toMatchObject({ status: 'succeeded', amount: 800 });
  });

  it('signs events so that the SDK verifies them, and only with the right secret and time', async () => {
    const pi = await createIntent();
    const event = fake.succeed(pi.id);
    const { body, signature } = fake.signed(event);
    const verified = stripe.webhooks.constructEvent(body, signature, fake.webhookSecret, 300);
    expect(verified).toEqual(event);

    const wrong = fake.signed(event, { secret: 'whsec_other' });
    expect(() =>
      stripe.webhooks.constructEvent(wrong.body, wrong.signature, fake.webhookSecret, 300),
    ).toThrow(Stripe.errors.StripeSignatureVerificationError);

    const nowS = Math.floor(Date.now() / 1000);
    const stale = fake.signed(event, { timestamp: nowS - 301 });
    expect(() =>
      stripe.webhooks.constructEvent(stale.body, stale.signature, fake.webhookSecret, 300),
    ).toThrow(/Timestamp outside the tolerance zone/);
    const recent = fake.signed(event, { timestamp: nowS - 200 });
    expect(
      stripe.webhooks.constructEvent(recent.body, recent.signature, fake.webhookSecret, 300).id,
    ).toBe(event.id);
  });
});
