import { createHmac, randomBytes } from 'node:crypto';
import { IncomingMessage, ServerResponse, createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import type { HttpClient } from './http';

/**
 * A small in-process stand-in for the Stripe HTTP API (payment intents, refunds, disputes, their
 * lists, idempotency, signed webhook events), so the real `stripe` SDK can be exercised without the network.
 * HTTP is what the app does; the control methods (`succeed`, `decline`, …) are what the
 * customer, the bank or the Stripe dashboard do.
 */
export interface FakeStripe {
  url: string;
  secretKey: string;
  webhookSecret: string;
  /**
   * The configuration that points the app at this fake: its key, its webhook secret, and its URL —
   * or `apiUrl` (a proxy in front of it).
   */
  env(
    apiUrl?: string,
  ): Record<'STRIPE_SECRET_KEY' | 'STRIPE_API_URL' | 'STRIPE_WEBHOOK_SECRET', string>;
  /** Every request received, in order. `path` has no query string; for GET, `body` is the parsed query. */
  requests: {
    method: string;
    path: string;
    idempotencyKey?: string;
    body: Record<string, unknown>;
  }[];
  succeed(intentId: string): Stripe.Event;
  /**
   * As `succeed`, for an intent someone set to manual capture at the provider and captured for
   * `received` of its amount only (`amount_received` under `amount`).
   */
  succeedInPart(intentId: string, received: number): Stripe.Event;
  decline(intentId: string): Stripe.Event;
  /** The customer confirmed with a delayed method (a bank debit): `processing`, which Stripe will not cancel. */
  process(intentId: string): void;
  /** A refund made in the Stripe dashboard (`pending`: one the bank has not settled yet, until `settleRefund`). */
  refundFromDashboard(
    intentId: string,
    amount?: number,
    opts?: { pending?: boolean },
  ): Stripe.Event;
  eventFor(type: string, intentId: string): Stripe.Event;
  /**
   * A charge made with the Charges API, without a PaymentIntent (another integration, an old
   * one): succeeded, `payment_intent` null. Its id.
   */
  chargeWithoutIntent(amount: number, currency?: string): string;
  /** A refund of such a charge made in the Stripe dashboard (`payment_intent` null): its id. */
  refundCharge(chargeId: string, amount?: number): string;
  signed(
    event: Stripe.Event,
    opts?: { secret?: string; timestamp?: number },
  ): { body: string; signature: string };
  /**
   * The next `times` requests on the path fail with `status`; `times` 0 clears the path's failures.
   * `retryAfterSeconds`: the answer says `Stripe-Should-Retry: true` and `Retry-After` (the SDK
   * waits that long, up to a minute, before its retry).
   */
  failNext(
    pathPrefix: string,
    status: number,
    times?: number,
    opts?: { retryAfterSeconds?: number },
  ): void;
  /**
   * The next `times` requests (of any method) on the path are never answered, and take no effect:
   * a Stripe that stalls. Their connections stay open until the client gives up. `times` 0
   * clears the path's stalls.
   */
  stallNext(pathPrefix: string, times?: number): void;
  /**
   * The next idempotent POST on the path fails with a 500 that Stripe saves under its key, as it
   * does once an endpoint began executing (API v1): every retry with that key gets it replayed
   * (`Idempotent-Replayed: true`), for 24 h at least. Nothing takes effect — unless `afterEffect`:
   * the request did its work, then failed (a refund made whose answer is a saved 500).
   */
  failStored(pathPrefix: string, opts?: { afterEffect?: boolean }): void;
  /**
   * The next request (a POST unless `method` says otherwise) whose path starts with `pathPrefix`
   * takes effect (and is stored for idempotent replay) but its answer never leaves: the caller
   * hangs as if the network died after Stripe acted. Resolves once that request has taken effect.
   */
  hangAfterEffect(pathPrefix: string, method?: string): Promise<void>;
  /** From now on, refunds of this intent created through the API are declined by the bank (status 'failed'). */
  declineRefunds(intentId: string): void;
  /** Undoes declineRefunds: the bank accepts this intent's refunds again. */
  acceptRefunds(intentId: string): void;
  /** From now on, refunds of this intent created through the API stay 'pending' until `settleRefund`. */
  holdRefunds(intentId: string): void;
  /** The bank returns a refund reported as succeeded: it becomes failed; returns the `charge.refund.updated` event. */
  reverseRefund(refundId: string): Stripe.Event;
  /** The bank settles a pending refund (succeeded unless told); returns the `charge.refund.updated` event. */
  settleRefund(refundId: string, outcome?: 'succeeded' | 'failed'): Stripe.Event;
  /**
   * The intent, refund or dispute `id` was made `seconds` earlier than it was (an intent's charges
   * too: it was paid that much earlier): what the lists' `created` filters see.
   */
  backdate(id: string, seconds: number): void;
  intent(id: string): Stripe.PaymentIntent | undefined;
  /** The refunds of an intent as Stripe holds them, oldest first. */
  refundsOf(intentId: string): Stripe.Refund[];
  /**
   * The customer's bank disputes the intent's charge (all of it): a `charge.dispute.<type>` event
   * carrying the dispute (one per intent: the same id every time) in `status` — which is then its
   * status at the fake (GET /v1/disputes/:id), whether or not the event is delivered. `dueBy`:
   * its evidence deadline (`evidence_details.due_by`, unix seconds; a week from now if not given).
   */
  dispute(intentId: string, status: string, type?: string, dueBy?: unknown): Stripe.Event;
  /** A real SDK client pointed at this fake, configured as the app configures its own. */
  client(config?: Stripe.StripeConfig): Stripe;
  close(): Promise<void>;
}

type Obj = Record<string, any>;

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: Obj,
  ) {
    super(String(error.message));
  }
}

const now = () => Math.floor(Date.now() / 1000);
const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`;
const clone = <T>(o: T): T => structuredClone(o);
const invalid = (status: number, message: string, extra: Obj = {}) =>
  new ApiError(status, { type: 'invalid_request_error', message, ...extra });
const paramError = (param: string, code: string, message: string) =>
  invalid(400, message, { code, param });
const noSuch = (status: number, kind: string, id: string, param: string) =>
  invalid(status, `No such ${kind}: '${id}'`, { code: 'resource_missing', param });
const SYMBOLS: Record<string, string> = { usd: '$', eur: '€', gbp: '£', inr: '₹' };
const money = (amount: number, currency: string) =>
  `${SYMBOLS[currency] ?? `${currency.toUpperCase()} `}${(amount / 100).toFixed(2)}`;

/** Parses Stripe's form encoding (`metadata[orderId]=…`, `expand[]=…`) into nested objects of strings. */
function parseStripeForm(raw: string): Record<string, unknown> {
  const out: Obj = {};
  for (const [key, value] of new URLSearchParams(raw)) {
    const parts = key.replace(/\]/g, '').split('[');
    let node = out;
    parts.forEach((part, i) => {
      const k = part === '' ? String(Object.keys(node).length) : part;
      if (i === parts.length - 1) node[k] = value;
      else node = (node[k] ??= {}) as Obj;
    });
  }
  return out;
}

function integer(value: unknown, param: string, required = false): number | undefined {
  if (value === undefined && !required) return undefined;
  if (value === undefined) {
    throw paramError(param, 'parameter_missing', `Missing required param: ${param}.`);
  }
  if (typeof value !== 'string' || !/^\d+$/.test(value) || Number(value) < 1) {
    const shown = JSON.stringify(value);
    throw paramError(param, 'parameter_invalid_integer', `Invalid positive integer: ${shown}`);
  }
  return Number(value);
}

/**
 * A list's `created` filter (`created[gte]=…`, `gt`, `lte`, `lt`, or `created=…` for one second)
 * as a test of an object's `created`.
 */
function createdFilter(value: unknown): (created: number) => boolean {
  if (value === undefined) return () => true;
  const bounds = (typeof value === 'object' && value !== null ? value : { eq: value }) as Obj;
  const tests = Object.entries(bounds).map(([op, raw]) => {
    if (typeof raw !== 'string' || !/^\d+$/.test(raw)) {
      const shown = JSON.stringify(raw);
      throw paramError(`created[${op}]`, 'parameter_invalid_integer', `Invalid integer: ${shown}`);
    }
    const at = Number(raw);
    const ops: Record<string, (c: number) => boolean> = {
      eq: (c) => c === at,
      gte: (c) => c >= at,
      gt: (c) => c > at,
      lte: (c) => c <= at,
      lt: (c) => c < at,
    };
    const test = ops[op];
    if (!test) throw invalid(400, `Received unknown parameter: created[${op}]`);
    return test;
  });
  return (created) => tests.every((test) => test(created));
}

/**
 * One page of a list as Stripe answers it: newest first (`all` is oldest first), filtered by
 * `created` (createdFilter), after `starting_after` (an id of the list), `limit` of them (10 by
 * default, at most 100), `has_more` when more follow.
 */
function listPage(all: Obj[], query: Obj, url: string): Obj {
  const limit = integer(query.limit, 'limit') ?? 10;
  if (limit > 100)
    throw paramError('limit', 'parameter_invalid_integer', 'Invalid limit: must be at most 100');
  const inRange = createdFilter(query.created);
  let matching = all.filter((o) => inRange(o.created as number)).reverse();
  if (typeof query.starting_after === 'string') {
    const at = matching.findIndex((o) => o.id === query.starting_after);
    if (at < 0) throw noSuch(400, 'object', query.starting_after, 'starting_after');
    matching = matching.slice(at + 1);
  }
  return {
    object: 'list',
    data: matching.slice(0, limit),
    has_more: matching.length > limit,
    url,
  };
}

function oneOf(value: unknown, param: string, allowed: string[]): string | null {
  if (value === undefined || value === '') return null;
  if (typeof value === 'string' && allowed.includes(value)) return value;
  const message = `Invalid ${param}: must be one of ${allowed.join(', ')}`;
  throw paramError(param, 'parameter_invalid_string', message);
}

/** Delivers `event` to the app's Stripe webhook, signed as Stripe signs it. */
export function deliverSigned(http: HttpClient, stripe: FakeStripe, event: Stripe.Event) {
  const { body, signature } = stripe.signed(event);
  return http.request('POST', '/v1/webhooks/stripe', undefined, {
    raw: body,
    headers: { 'stripe-signature': signature },
  });
}

export async function startFakeStripe(): Promise<FakeStripe> {
  const secretKey = `sk_test_fake_${randomBytes(8).toString('hex')}`;
  const webhookSecret = `whsec_${randomBytes(16).toString('hex')}`;
  const requests: FakeStripe['requests'] = [];
  const intents = new Map<string, Obj>();
  const charges = new Map<string, Obj>();
  const refunds = new Map<string, Obj>(); // oldest first
  const disputeOfIntent = new Map<string, string>(); // intent id → its dispute's id
  const disputes = new Map<string, Obj>(); // by id, as it is now
  const failures: {
    prefix: string;
    status: number;
    remaining: number;
    retryAfterSeconds?: number;
  }[] = [];
  const stalls: { prefix: string; remaining: number }[] = [];
  const storedFailures: { prefix: string; afterEffect: boolean }[] = [];
  const declinedRefunds = new Set<string>();
  const heldRefunds = new Set<string>();
  const hangs: { prefix: string; method: string; reached: () => void }[] = [];
  const idempotency = new Map<
    string,
    { path: string; params: string; status: number; body: string; requestId: string }
  >();

  const intentOrThrow = (id: string) => {
    const pi = intents.get(id);
    if (!pi) throw new Error(`fake-stripe: no payment intent ${id}`);
    return pi;
  };

  function newCharge(pi: Obj, status: 'succeeded' | 'failed'): Obj {
    const id = newId('ch');
    const ok = status === 'succeeded';
    const charge = {
      id,
      object: 'charge',
      amount: pi.amount,
      amount_captured: ok ? pi.amount : 0,
      amount_refunded: 0,
      captured: ok,
      created: now(),
      currency: pi.currency,
      failure_code: ok ? null : 'card_declined',
      failure_message: ok ? null : 'Your card was declined.',
      livemode: false,
      metadata: clone(pi.metadata),
      paid: ok,
      payment_intent: pi.id,
      refunded: false,
      status,
      refunds: {
        object: 'list',
        data: [] as Obj[],
        has_more: false,
        total_count: 0,
        url: `/v1/charges/${id}/refunds`,
      },
    };
    charges.set(id, charge);
    pi.latest_charge = id;
    return charge;
  }

  function event(type: string, object: Obj): Stripe.Event {
    return {
      id: newId('evt'),
      object: 'event',
      api_version: Stripe.API_VERSION,
      created: now(),
      type,
      data: { object: clone(object) },
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
    } as Stripe.Event;
  }

  function createIntent(body: Obj): Obj {
    const amount = integer(body.amount, 'amount', true) as number;
    if (typeof body.currency !== 'string' || body.currency === '') {
      throw paramError('currency', 'parameter_missing', 'Missing required param: currency.');
    }
    if (amount < 50) {
      // Stripe's minimum charge is about 50 of the smallest unit in two-decimal currencies
      throw paramError(
        'amount',
        'amount_too_small',
        `Amount must be at least ${money(50, body.currency)} ${body.currency}`,
      );
    }
    const id = newId('pi');
    const apm = body.automatic_payment_methods as Obj | undefined;
    const pi = {
      id,
      object: 'payment_intent',
      amount,
      amount_capturable: 0,
      amount_received: 0,
      automatic_payment_methods: apm ? { enabled: apm.enabled === 'true' } : null,
      canceled_at: null,
      cancellation_reason: null,
      capture_method: 'automatic',
      client_secret: `${id}_secret_${randomBytes(12).toString('hex')}`,
      confirmation_method: 'automatic',
      created: now(),
      currency: body.currency.toLowerCase(),
      description: body.description ?? null,
      last_payment_error: null,
      latest_charge: null,
      livemode: false,
      metadata: body.metadata ?? {},
      payment_method: null,
      payment_method_types: ['card'],
      status: 'requires_payment_method',
    };
    intents.set(id, pi);
    return pi;
  }

  function cancelIntent(id: string, body: Obj): Obj {
    const pi = intents.get(id);
    if (!pi) throw noSuch(404, 'payment_intent', id, 'intent');
    // Stripe cancels a processing intent only "in rare cases"; the fake, never
    if (pi.status === 'succeeded' || pi.status === 'canceled' || pi.status === 'processing') {
      throw invalid(
        400,
        `You cannot cancel this PaymentIntent because it has a status of ${pi.status}. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action, processing.`,
        { code: 'payment_intent_unexpected_state', payment_intent: clone(pi) },
      );
    }
    const reason = oneOf(body.cancellation_reason, 'cancellation_reason', [
      'duplicate',
      'fraudulent',
      'requested_by_customer',
      'abandoned',
    ]);
    Object.assign(pi, { status: 'canceled', canceled_at: now(), cancellation_reason: reason });
    return pi;
  }

  function createRefund(body: Obj, viaApi: boolean, pendingInDashboard = false): Obj {
    let charge: Obj | undefined;
    if (typeof body.payment_intent === 'string') {
      const pi = intents.get(body.payment_intent);
      if (!pi) throw noSuch(400, 'payment_intent', body.payment_intent, 'payment_intent');
      charge = pi.latest_charge ? charges.get(pi.latest_charge) : undefined;
      if (pi.status !== 'succeeded' || charge?.status !== 'succeeded') {
        throw invalid(
          400,
          `This PaymentIntent (${pi.id}) does not have a successful charge to refund.`,
          {
            code: 'charge_not_refundable',
            param: 'payment_intent',
          },
        );
      }
    } else if (typeof body.charge === 'string') {
      charge = charges.get(body.charge);
      if (!charge) throw noSuch(400, 'charge', body.charge, 'charge');
    } else {
      throw invalid(
        400,
        'One of the following params should be provided for this request: payment_intent or charge.',
      );
    }
    const remaining = charge.amount - charge.amount_refunded;
    if (remaining === 0) {
      throw invalid(400, `Charge ${charge.id} has already been refunded.`, {
        code: 'charge_already_refunded',
      });
    }
    const amount = integer(body.amount, 'amount') ?? remaining;
    if (amount > remaining) {
      throw invalid(
        400,
        `Refund amount (${money(amount, charge.currency)}) is greater than unrefunded amount on charge (${money(remaining, charge.currency)})`,
        { code: 'amount_too_large', param: 'amount' },
      );
    }
    const failed = viaApi && declinedRefunds.has(charge.payment_intent);
    const held =
      (viaApi && !failed && heldRefunds.has(charge.payment_intent)) || pendingInDashboard;
    const refund = {
      id: newId('re'),
      object: 'refund',
      amount,
      balance_transaction: null,
      charge: charge.id,
      created: now(),
      currency: charge.currency,
      metadata: body.metadata ?? {},
      payment_intent: charge.payment_intent,
      reason: oneOf(body.reason, 'reason', ['duplicate', 'fraudulent', 'requested_by_customer']),
      receipt_number: null,
      status: failed ? 'failed' : held ? 'pending' : 'succeeded',
      ...(failed ? { failure_reason: 'declined' } : {}),
    };
    refunds.set(refund.id, refund);
    charge.refunds.data.unshift(refund);
    charge.refunds.total_count += 1;
    // as Stripe: a pending refund counts against what is left to refund from its creation (a
    // second refund of the whole charge is refused while the first is pending), and is given
    // back if it fails
    if (!failed) {
      charge.amount_refunded += amount;
      charge.refunded = charge.amount_refunded === charge.amount;
    }
    return refund;
  }

  function listRefunds(query: Obj): Obj {
    const of = [...refunds.values()].filter(
      (r) =>
        (query.payment_intent === undefined || r.payment_intent === query.payment_intent) &&
        (query.charge === undefined || r.charge === query.charge),
    );
    return listPage(of, query, '/v1/refunds');
  }

  function route(method: string, path: string, body: Obj): Obj {
    const seg = path.split('/').filter(Boolean); // ['v1', resource, id?, action?]
    const at = `${method} ${['', ...seg.slice(1)].map((s, i) => (i === 2 ? ':id' : s)).join('/')}`;
    const get = (map: Map<string, Obj>, kind: string, param: string) => {
      const found = map.get(seg[2]);
      if (!found) throw noSuch(404, kind, seg[2], param);
      return found;
    };
    if (seg[0] === 'v1' && seg.length <= 4) {
      switch (at) {
        case 'POST /payment_intents':
          return createIntent(body);
        case 'GET /payment_intents': {
          const page = listPage([...intents.values()], body, '/v1/payment_intents');
          // `expand[]=data.latest_charge`: each intent with its latest charge's object
          const expand = Object.values((body.expand ?? {}) as Obj);
          if (!expand.includes('data.latest_charge')) return page;
          return {
            ...page,
            data: (page.data as Obj[]).map((pi) => ({
              ...pi,
              latest_charge: pi.latest_charge ? (charges.get(pi.latest_charge) ?? null) : null,
            })),
          };
        }
        case 'GET /payment_intents/:id':
          return get(intents, 'payment_intent', 'intent');
        case 'POST /payment_intents/:id/cancel':
          return cancelIntent(seg[2], body);
        case 'POST /refunds':
          return createRefund(body, true);
        case 'GET /refunds':
          return listRefunds(body);
        case 'GET /refunds/:id':
          return get(refunds, 'refund', 'id');
        case 'GET /charges/:id':
          return get(charges, 'charge', 'charge');
        case 'GET /disputes':
          return listPage([...disputes.values()], body, '/v1/disputes');
        case 'GET /disputes/:id':
          return get(disputes, 'dispute', 'dispute');
      }
    }
    throw invalid(
      404,
      `Unrecognized request URL (${method}: ${path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`,
    );
  }

  function handle(req: IncomingMessage, res: ServerResponse, raw: string): void {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://fake-stripe');
    const path = url.pathname;
    const form = method === 'GET' ? url.search.slice(1) : raw;
    const body = parseStripeForm(form);
    const key = req.headers['idempotency-key'];
    const idempotencyKey = typeof key === 'string' && key !== '' ? key : undefined;
    requests.push({ method, path, idempotencyKey, body });
    const requestId = newId('req');
    const send = (status: number, payload: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, {
        'Content-Type': 'application/json',
        'Request-Id': requestId,
        'Stripe-Version': Stripe.API_VERSION,
        ...headers,
      });
      res.end(payload);
    };
    const fail = (status: number, error: Obj) => send(status, JSON.stringify({ error }, null, 2));

    const stall = stalls.find((s) => path.startsWith(s.prefix));
    if (stall) {
      if (--stall.remaining === 0) stalls.splice(stalls.indexOf(stall), 1);
      return; // no answer, no effect
    }
    const rule = failures.find((f) => path.startsWith(f.prefix));
    if (rule) {
      if (--rule.remaining === 0) failures.splice(failures.indexOf(rule), 1);
      const error = {
        type: 'api_error',
        message: `Injected failure (HTTP ${rule.status}) by the fake Stripe.`,
      };
      return rule.retryAfterSeconds === undefined
        ? fail(rule.status, error)
        : send(rule.status, JSON.stringify({ error }, null, 2), {
            'Stripe-Should-Retry': 'true',
            'Retry-After': String(rule.retryAfterSeconds),
          });
    }

    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (bearer === undefined) {
      return fail(401, {
        type: 'invalid_request_error',
        message:
          "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
      });
    }
    if (bearer !== secretKey) {
      return fail(401, {
        type: 'invalid_request_error',
        message: `Invalid API Key provided: ${bearer.slice(0, 8)}${'*'.repeat(Math.max(0, bearer.length - 12))}${bearer.slice(-4)}`,
      });
    }

    const params = [...new URLSearchParams(form)]
      .map(([k, v]) => `${k}=${v}`)
      .sort()
      .join('&');
    const idempotent = method === 'POST' && idempotencyKey !== undefined;
    const prior = idempotent ? idempotency.get(idempotencyKey) : undefined;
    if (prior) {
      const retry = `Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`;
      if (prior.path !== path) {
        return fail(400, {
          type: 'idempotency_error',
          message: `Keys for idempotent requests can only be used for the same endpoint they were first used for ('${prior.path}' vs '${path}'). ${retry}`,
        });
      }
      if (prior.params !== params) {
        return fail(400, {
          type: 'idempotency_error',
          message: `Keys for idempotent requests can only be used with the same parameters they were first used with. ${retry}`,
        });
      }
      return send(prior.status, prior.body, {
        'Idempotent-Replayed': 'true',
        'Original-Request': prior.requestId,
      });
    }

    const stored = idempotent ? storedFailures.findIndex((f) => path.startsWith(f.prefix)) : -1;
    if (stored >= 0 && idempotencyKey !== undefined) {
      const [{ afterEffect }] = storedFailures.splice(stored, 1);
      if (afterEffect) route(method, path, body);
      const text = JSON.stringify(
        {
          error: {
            type: 'api_error',
            message: 'An unknown error occurred (a failure the fake Stripe saved under the key).',
          },
        },
        null,
        2,
      );
      idempotency.set(idempotencyKey, { path, params, status: 500, body: text, requestId });
      return send(500, text, { 'Idempotency-Key': idempotencyKey });
    }
    let status = 200;
    let payload: Obj;
    try {
      payload = route(method, path, body);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      status = e.status;
      payload = {
        error: {
          ...e.error,
          request_log_url: `https://dashboard.stripe.com/test/logs/${requestId}`,
        },
      };
    }
    const text = JSON.stringify(payload, null, 2);
    if (idempotent && status < 500)
      idempotency.set(idempotencyKey, { path, params, status, body: text, requestId });
    const hang = hangs.find((h) => method === h.method && path.startsWith(h.prefix));
    if (hang) {
      hangs.splice(hangs.indexOf(hang), 1);
      hang.reached();
      return; // the effect happened; the answer is lost
    }
    send(status, text, idempotent ? { 'Idempotency-Key': idempotencyKey } : {});
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        handle(req, res, Buffer.concat(chunks).toString('utf8'));
      } catch (e) {
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end(
          JSON.stringify({
            error: { type: 'api_error', message: `fake-stripe bug: ${String(e)}` },
          }),
        );
      }
    });
  });
  const succeed = (intentId: string): Stripe.Event => {
    const pi = intentOrThrow(intentId);
    if (pi.status !== 'requires_payment_method' && pi.status !== 'processing')
      throw new Error(`fake-stripe: cannot pay ${intentId} in status ${pi.status}`);
    newCharge(pi, 'succeeded');
    Object.assign(pi, {
      status: 'succeeded',
      amount_received: pi.amount,
      last_payment_error: null,
      payment_method: newId('pm'),
    });
    return event('payment_intent.succeeded', pi);
  };

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  return {
    url,
    secretKey,
    webhookSecret,
    env: (apiUrl = url) => ({
      STRIPE_SECRET_KEY: secretKey,
      STRIPE_API_URL: apiUrl,
      STRIPE_WEBHOOK_SECRET: webhookSecret,
    }),
    requests,
    process(intentId) {
      const pi = intentOrThrow(intentId);
      if (pi.status !== 'requires_payment_method')
        throw new Error(`fake-stripe: cannot process ${intentId} in status ${pi.status}`);
      pi.status = 'processing';
    },
    succeed,
    succeedInPart(intentId, received) {
      succeed(intentId);
      const pi = intentOrThrow(intentId);
      Object.assign(pi, { capture_method: 'manual', amount_received: received });
      return event('payment_intent.succeeded', pi);
    },
    decline(intentId) {
      const pi = intentOrThrow(intentId);
      if (pi.status !== 'requires_payment_method' && pi.status !== 'processing')
        throw new Error(`fake-stripe: cannot decline ${intentId} in status ${pi.status}`);
      const charge = newCharge(pi, 'failed');
      pi.status = 'requires_payment_method'; // a failed debit hands the intent back to the customer
      pi.last_payment_error = {
        type: 'card_error',
        code: 'card_declined',
        decline_code: 'generic_decline',
        charge: charge.id,
        message: 'Your card was declined.',
        doc_url: 'https://stripe.com/docs/error-codes/card-declined',
      };
      return event('payment_intent.payment_failed', pi);
    },
    refundFromDashboard(intentId, amount, opts = {}) {
      const pi = intentOrThrow(intentId);
      try {
        const refund = createRefund(
          { payment_intent: pi.id, ...(amount === undefined ? {} : { amount: String(amount) }) },
          false,
          opts.pending,
        );
        return event('charge.refunded', charges.get(refund.charge as string) as Obj);
      } catch (e) {
        throw e instanceof ApiError
          ? new Error(`fake-stripe: dashboard refund refused: ${e.message}`)
          : e;
      }
    },
    dispute(intentId, status, type = 'updated', dueBy = now() + 7 * 24 * 3600) {
      const pi = intentOrThrow(intentId);
      const id = disputeOfIntent.get(intentId) ?? newId('dp');
      disputeOfIntent.set(intentId, id);
      const dispute: Obj = {
        id,
        object: 'dispute',
        amount: pi.amount,
        currency: pi.currency,
        charge: pi.latest_charge,
        payment_intent: intentId,
        reason: 'fraudulent',
        status,
        evidence_details: { due_by: dueBy, has_evidence: false, past_due: false },
        created: disputes.get(id)?.created ?? now(),
      };
      disputes.set(id, dispute);
      return event(`charge.dispute.${type}`, dispute);
    },
    chargeWithoutIntent(amount, currency = 'inr') {
      const id = newId('ch');
      charges.set(id, {
        id,
        object: 'charge',
        amount,
        amount_captured: amount,
        amount_refunded: 0,
        captured: true,
        created: now(),
        currency,
        failure_code: null,
        failure_message: null,
        livemode: false,
        metadata: {},
        paid: true,
        payment_intent: null,
        refunded: false,
        status: 'succeeded',
        refunds: {
          object: 'list',
          data: [] as Obj[],
          has_more: false,
          total_count: 0,
          url: `/v1/charges/${id}/refunds`,
        },
      });
      return id;
    },
    refundCharge(chargeId, amount) {
      if (!charges.has(chargeId)) throw new Error(`fake-stripe: no charge ${chargeId}`);
      return createRefund(
        { charge: chargeId, ...(amount === undefined ? {} : { amount: String(amount) }) },
        false,
      ).id as string;
    },
    eventFor(type, intentId) {
      const pi = intentOrThrow(intentId);
      if (type.startsWith('payment_intent.')) return event(type, pi);
      const subject =
        type.startsWith('refund.') || type.startsWith('charge.refund.')
          ? [...refunds.values()].filter((r) => r.payment_intent === intentId).at(-1)
          : pi.latest_charge && charges.get(pi.latest_charge);
      if (!subject)
        throw new Error(`fake-stripe: ${intentId} has nothing to put in a ${type} event`);
      return event(type, subject);
    },
    signed(event, opts = {}) {
      const body = JSON.stringify(event, null, 2);
      const t = opts.timestamp ?? now();
      const v1 = createHmac('sha256', opts.secret ?? webhookSecret)
        .update(`${t}.${body}`, 'utf8')
        .digest('hex');
      return { body, signature: `t=${t},v1=${v1}` };
    },
    failNext(pathPrefix, status, times = 1, opts = {}) {
      if (times > 0)
        failures.push({
          prefix: pathPrefix,
          status,
          remaining: times,
          retryAfterSeconds: opts.retryAfterSeconds,
        });
      else
        for (const f of failures.filter((x) => x.prefix === pathPrefix))
          failures.splice(failures.indexOf(f), 1);
    },
    stallNext(pathPrefix, times = 1) {
      if (times > 0) stalls.push({ prefix: pathPrefix, remaining: times });
      else
        for (const x of stalls.filter((y) => y.prefix === pathPrefix))
          stalls.splice(stalls.indexOf(x), 1);
    },
    failStored(pathPrefix, opts = {}) {
      storedFailures.push({ prefix: pathPrefix, afterEffect: opts.afterEffect ?? false });
    },
    hangAfterEffect(pathPrefix, method = 'POST') {
      return new Promise<void>((reached) => hangs.push({ prefix: pathPrefix, method, reached }));
    },
    declineRefunds(intentId) {
      declinedRefunds.add(intentId);
    },
    acceptRefunds(intentId) {
      declinedRefunds.delete(intentId);
    },
    holdRefunds(intentId) {
      heldRefunds.add(intentId);
    },
    reverseRefund(refundId) {
      const refund = refunds.get(refundId);
      if (!refund || refund.status !== 'succeeded')
        throw new Error(`fake-stripe: ${refundId} has not succeeded`);
      refund.status = 'failed';
      refund.failure_reason = 'expired_or_canceled_card';
      const charge = charges.get(refund.charge as string) as Obj;
      charge.amount_refunded -= refund.amount;
      charge.refunded = charge.amount_refunded === charge.amount;
      return event('charge.refund.updated', refund);
    },
    settleRefund(refundId, outcome = 'succeeded') {
      const refund = refunds.get(refundId);
      if (!refund || refund.status !== 'pending')
        throw new Error(`fake-stripe: ${refundId} is not pending`);
      refund.status = outcome;
      if (outcome === 'failed') {
        refund.failure_reason = 'declined';
        const charge = charges.get(refund.charge as string) as Obj;
        charge.amount_refunded -= refund.amount; // counted while it was pending
        charge.refunded = charge.amount_refunded === charge.amount;
      }
      return event('charge.refund.updated', refund);
    },
    backdate(id, seconds) {
      const made = intents.get(id) ?? refunds.get(id) ?? disputes.get(id);
      if (!made) throw new Error(`fake-stripe: no intent, refund or dispute ${id}`);
      made.created -= seconds;
      if (made.object === 'payment_intent')
        for (const charge of charges.values())
          if (charge.payment_intent === id) charge.created -= seconds;
    },
    intent(id) {
      const pi = intents.get(id);
      return pi && (clone(pi) as Stripe.PaymentIntent);
    },
    refundsOf(intentId) {
      return [...refunds.values()]
        .filter((r) => r.payment_intent === intentId)
        .map((r) => clone(r) as Stripe.Refund);
    },
    client(config = {}) {
      return new Stripe(secretKey, {
        host: '127.0.0.1',
        port,
        protocol: 'http',
        maxNetworkRetries: 2,
        timeout: 5000,
        ...config,
      });
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}
