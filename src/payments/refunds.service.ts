import { IDEMPOTENCY_TTL_MS } from '../idempotency/idempotency-key';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { logOrder } from '../common/logging/order-log';
import { DomainError } from '../common/errors/domain-error';
import { IdGenerator, isUuid, uuidFromName } from '../common/ids';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { OrderRepository } from '../orders/order.repository';
import { OrderTransitionsService } from '../orders/order-transitions.service';
import { CANCELLABLE } from '../orders/order-state-machine';
import { OutboxRepository } from '../outbox/outbox.repository';
import { MetricsService } from '../metrics/metrics.service';
import { OnJob } from '../queue/on-job.decorator';
import { JobName, JobPayloads } from '../queue/queues';
import {
  CallBudget,
  GatewayError,
  REPLAYED_FAILURE,
  GatewayRefund,
  PAYMENT_GATEWAY,
  PaymentGateway,
  budgetOf,
  gatewayKeys,
} from './payment-gateway';
import { Payment, PaymentRepository } from './payment.repository';
import { REVERSED_AT_PROVIDER } from './payment-reader';
import { NewRefund, REFUND_WATCH_MS, Refund, RefundRepository } from './refund.repository';

const SYSTEM = 'system:payments';
/** Answers from the provider that mean "not that much is left to refund". */
const EXCEEDS = new Set(['amount_too_large', 'charge_already_refunded']);
/** The provider's own refusal of a refund it had accepted (its `failed`, final there). */
const FAILED_THERE = 'failed_at_provider';
/**
 * Failures no later list can undo: the provider's `failed` is final — a list that still says
 * succeeded was read before it (another pass, an event's job), and is stale. Only a failure we
 * inferred from an answer (a refusal we classified) can turn out to have succeeded after all.
 */
const FINAL_FAILURES = [REVERSED_AT_PROVIDER, FAILED_THERE];

/**
 * A failed refund that is raised for a person (raiseIfFailed): refused or failed by
 * the provider — not as more than is left (a refund made at the provider came first, and what it
 * leaves is refunded after it: expected, not news), and not reversed (raised by `reversed`, and
 * refunded once more as the rest, by design).
 */
const raisedForAPerson = (refund: Refund): boolean =>
  !EXCEEDS.has(refund.failure ?? '') && refund.failure !== REVERSED_AT_PROVIDER;
/** Where a refund is settled: by the request that asked for it (which answers a failure), or later. */
interface Settling {
  inRequest?: boolean;
  /** The request's deadline for its provider calls (the admin waits); a worker's calls have none. */
  budget?: CallBudget;
}
/** Refused attempts one Idempotency-Key may retry afresh; the last refusal is then its answer. */
const MAX_ATTEMPTS_PER_KEY = 10;
/**
 * A pending refund older than this is looked for in the provider's list before it is sent again:
 * the provider forgets idempotency keys (Stripe: after at least 24 h), and the same key would then
 * make a second refund. Well inside that window, so a resend never relies on a forgotten key.
 */
const RESEND_LIST_FIRST_AFTER_MS = 60 * 60_000;
/**
 * A refund whose create Stripe answered with a 500 it saved under the key moves on to the key's
 * next generation (StripeGateway) only this long after it was made: well before the provider may
 * forget the first key (Stripe: 24 h at least).
 */
const ADVANCE_KEY_UNTIL_MS = 20 * 3600_000;
/**
 * Refunds of one remaining amount the provider may refuse as more than is left (a refund made at
 * the provider meanwhile, pending there) before the rest of that amount is no longer asked.
 */
const MAX_REST_ATTEMPTS = 5;

/**
 * The id of the key's `n`-th attempt in its `generation`: `refund:<actor>:<key>`, then a line
 * break + `attempt:<n>`; from the second generation on (the key used again once its 24 h record
 * of an earlier refund expired) `refund:<actor>:<key>` + a line break + `generation:<g>`, then the
 * attempts as before — a separator no key holds (printable ASCII only), so no key of the same
 * caller names another key's generation or attempt (`K:generation:2` is not K's second
 * generation, `K:attempt:2` not K's second attempt: with `:attempt:` as the separator, a refused
 * K's retry answered `K:attempt:2`'s refund as its own, a 201 for a refund it had not made).
 * (Attempts after the first that the previous build made under `:attempt:` are still followed:
 * legacyAttemptId.)
 */
const attemptId = (actor: string, key: string, n: number, generation: number): string =>
  uuidFromName(
    `refund:${actor}:${key}${generation > 1 ? `\ngeneration:${generation}` : ''}${n > 1 ? `\nattempt:${n}` : ''}`,
  );
/**
 * The name the previous build gave the key's `n`-th attempt (n > 1): `…:attempt:<n>`. Followed
 * only for a refund without a key recorded (made by that build): a retry within the key's day of
 * an attempt it made and never answered continues it, not a second refund beside it.
 */
const legacyAttemptId = (actor: string, key: string, n: number, generation: number): string =>
  uuidFromName(
    `refund:${actor}:${key}${generation > 1 ? `\ngeneration:${generation}` : ''}:attempt:${n}`,
  );
/**
 * A key's refund belongs to an earlier lifetime of the key once this long has passed since it was
 * made: the key's record (IDEMPOTENCY_TTL_MS from its claim, which came first) has expired by
 * then, with a margin for the time between the claim and the refund's row (its checks, a provider
 * call for an earlier attempt) — within it, the old refund would be answered as made anew.
 */
const KEY_LIFETIME_MS = IDEMPOTENCY_TTL_MS - 5 * 60_000;

/** Where a key's refund stands: the attempt to continue, in the key's current generation. */
interface KeyAttempt {
  id: string;
  number: number;
  generation: number;
  refund: Refund | null;
  /** The ids of the attempts before it in its generation (as found: new or old names). */
  earlier: string[];
}

const retryShortly = (detail: string): DomainError =>
  new DomainError('SERVICE_UNAVAILABLE', detail, { headers: { 'Retry-After': '30' } });

/** How often a watched payment's refunds are read from the provider again (recheckWatched). */
const REFUND_RECHECK_MS = 6 * 3600_000;
/** Watched payments read per reconciliation run (every minute): a provider call each. */
const REFUND_RECHECK_BATCH = 20;

/** An admin's refund (RefundsService#request). */
interface RefundRequest {
  orderId: string;
  amount?: number;
  currency?: string;
  actor: string;
  idempotencyKey: string;
  waitMs?: number;
}

/**
 * Refunds, in three short steps with the provider call between them (never inside a
 * transaction): reserve the amount against the captured payment and record the refund as
 * pending; ask the provider with the key `refund:<id>`; settle from its answer. A crash between
 * steps leaves a pending refund that its follow-up job (`settlePending`, a few seconds later,
 * retried shortly) — or, as the last net, `retryStale` — sends again with the same key, so the
 * provider refunds once. Refunds made elsewhere (the provider's dashboard) are adopted by `syncFromGateway`.
 */
@Injectable()
export class RefundsService {
  private readonly logger = new Logger(RefundsService.name);

  constructor(
    private readonly refunds: RefundRepository,
    private readonly payments: PaymentRepository,
    private readonly orders: OrderRepository,
    private readonly transitions: OrderTransitionsService,
    private readonly outbox: OutboxRepository,
    @Inject(PAYMENT_GATEWAY) private readonly gateway: PaymentGateway,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
    metrics: MetricsService,
  ) {
    this.reversals = metrics.counter(
      'refunds_reversed_total',
      'Refunds the payment provider failed after reporting them succeeded (the customer was not refunded)',
    );
    this.automaticFailures = metrics.counter(
      'automatic_refunds_failed_total',
      'Automatic refunds of a cancelled order the payment provider refused or failed (the customer is still charged)',
    );
    this.requestedFailures = metrics.counter(
      'requested_refunds_failed_total',
      "Admins' refunds answered as pending that the payment provider then refused or failed (the customer was not refunded)",
    );
  }

  private readonly reversals: Counter<string>;
  private readonly automaticFailures: Counter<string>;
  private readonly requestedFailures: Counter<string>;

  /**
   * An admin's refund of `amount` (all that remains when omitted; `currency`, when an amount is
   * given, is the amount's, which must be the payment's own). The refund's id derives from the
   * caller and their Idempotency-Key, so a retry after a crash continues the same refund. A retry
   * after the provider refused it (502: API.md's "a retry with the same key runs afresh") is a new
   * attempt with the next id in the key's chain — and so a new provider key, as the provider
   * replays the refusal it stored for the first one; the provider's own cap on the charge keeps
   * attempts from ever adding up to more than was captured.
   *
   * `waitMs`: how long the caller waits on the provider in all, from its first call (not its
   * database reads): a refund the provider has not answered by then stays pending — answered so,
   * and settled by its follow-up job with the same provider key. Without it, the SDK's own
   * timeout and retries (~25 s on a provider that does not answer).
   */
  async request(input: RefundRequest): Promise<Refund> {
    let budget: CallBudget | undefined;
    const waiting = () =>
      input.waitMs === undefined ? undefined : (budget ??= budgetOf(input.waitMs));
    let result = await this.requestAttempt(input, waiting);
    if (
      result.status === 'failed' &&
      input.amount === undefined &&
      EXCEEDS.has(result.failure ?? '')
    ) {
      // "all that remains" was sized from our records, which a refund made at the provider (its
      // dashboard) and not heard of yet does not count: the provider refused it as too much, and
      // the admin who asked for no amount was answered 409 with money still refundable (race
      // review). The key's next attempt reads the provider's list first (adopting that refund)
      // and asks for what remains after it — once: a second refusal is the answer.
      result = await this.requestAttempt(input, waiting);
    }
    if (result.status === 'failed') {
      throw new DomainError(
        EXCEEDS.has(result.failure ?? '') ? 'REFUND_EXCEEDS_CAPTURED' : 'PAYMENT_PROVIDER_REJECTED',
        `The payment provider refused the refund (${result.failure ?? 'unknown reason'}).`,
      );
    }
    return result;
  }

  /** One attempt of the key's (request): the refund it continues or makes, failed or not. */
  private async requestAttempt(
    input: RefundRequest,
    waiting: () => CallBudget | undefined,
  ): Promise<Refund> {
    const payment = await this.payments.findByOrder(input.orderId);
    let attempt = await this.currentAttempt(input.actor, input.idempotencyKey);
    if (!attempt.refund && attempt.number > 1 && payment) {
      // before a new attempt: an earlier one the provider made after all (we recorded a refusal)
      // is reinstated from its list, and is then the answer — never a second refund; one it still
      // holds as pending may yet be made, so the retry must wait
      let remotes: GatewayRefund[];
      let providerPending: number;
      try {
        ({ remotes, providerPending } = await this.sync(payment, waiting()));
      } catch (err) {
        if (err instanceof GatewayError) throw err;
        throw retryShortly('Earlier refunds of this payment are still settling; retry shortly.');
      }
      attempt = await this.currentAttempt(input.actor, input.idempotencyKey);
      const earlier = new Set(attempt.earlier);
      if (
        !attempt.refund &&
        remotes.some(
          (r) => r.status === 'pending' && r.refundId !== undefined && earlier.has(r.refundId),
        )
      ) {
        throw retryShortly(
          'An earlier attempt of this refund is still pending at the payment provider; retry shortly.',
        );
      }
      // what remains is not known while a refund made at the provider, not by us, is pending
      // there (it counts it, we record it once it succeeds): "all that remains" would be refused
      // again (ours pending there are reserved in our records: the rest is sized around them)
      if (!attempt.refund && input.amount === undefined && providerPending > 0) {
        throw retryShortly(
          'A refund of this payment is still pending at the payment provider; retry shortly.',
        );
      }
    }
    const id = attempt.id;
    let refund = attempt.refund;
    if (!refund) {
      const status = await this.orders.statusOf(input.orderId);
      if (!status) {
        throw new DomainError('ORDER_NOT_FOUND', 'No such order.');
      }
      if (!payment || payment.status !== 'succeeded') {
        throw new DomainError(
          'ORDER_NOT_REFUNDABLE',
          'The order has no captured payment to refund.',
        );
      }
      if (CANCELLABLE.includes(status)) {
        // the payment's success is recorded, the order's move to PAID not yet (the finalizer is
        // between its steps): a refund now would leave the order to be confirmed as never refunded
        throw new DomainError(
          'ORDER_NOT_REFUNDABLE',
          'The payment succeeded but the order is not recorded as paid yet; retry shortly.',
          { headers: { 'Retry-After': '30' } },
        );
      }
      // the order's own currency, not the shop's today (SHOP_CURRENCY may have changed since)
      if (input.currency !== undefined && input.currency !== payment.currency) {
        throw new DomainError('VALIDATION_FAILED', `The order was paid in ${payment.currency}.`, {
          errors: [{ field: 'amount.currency', message: `must be ${payment.currency}` }],
        });
      }
      refund = await this.tx.run(() =>
        this.reserve(
          {
            ...this.newRefund(id, payment, 'requested', input.actor),
            requestKey: input.idempotencyKey,
          },
          input.amount ?? null,
        ),
      );
      if (!refund) {
        throw new DomainError(
          'REFUND_EXCEEDS_CAPTURED',
          'The amount exceeds what remains refundable.',
        );
      }
      logOrder({
        orderId: refund.orderId,
        action: 'refund.requested',
        refundId: refund.id,
        amount: refund.amount,
        actor: input.actor,
      });
    }
    // another order, amount or currency, or the rest where an amount was asked (the key's record
    // expired after 24 h, its refund did not): another request under the same key
    const otherAmount =
      input.amount === undefined ? refund.requestedRest === false : input.amount !== refund.amount;
    const otherCurrency = input.currency !== undefined && input.currency !== refund.currency;
    if (refund.orderId !== input.orderId || otherAmount || otherCurrency) {
      throw new DomainError(
        'IDEMPOTENCY_KEY_REUSED',
        'This Idempotency-Key was already used for another refund.',
      );
    }
    return refund.status === 'pending'
      ? (await this.attempt(refund, payment!, { inRequest: true, budget: waiting() })).refund
      : refund;
  }

  /**
   * The key's attempt to continue: the first refund in its chain (`refund:<actor>:<key>`, then
   * its `attempt:2`, …) that is not a failure, or the free id after the last failure — of this
   * order or another: a refused refund stored no answer, so its key runs afresh (API.md), for
   * any refund. Same-key requests never run at once (the idempotency interceptor holds the key).
   *
   * Within one lifetime of the key's record (KEY_LIFETIME_MS from the refund it made) a retry
   * whose answer was never stored (a crash) continues that refund. After it, the key is a first
   * request again (API.md: the result is stored for 24 h): a new generation of the chain, a new
   * refund. (Answering with the earlier refund made a 201 claim a refund it had not made, and any
   * other amount under the key was 422 for ever.)
   */
  private async currentAttempt(actor: string, key: string): Promise<KeyAttempt> {
    let generation = 1;
    while (await this.refunds.findById(attemptId(actor, key, 1, generation + 1))) generation++;
    const earlier: string[] = [];
    for (let n = 1; ; n++) {
      let id = attemptId(actor, key, n, generation);
      let refund = await this.refunds.findById(id);
      if (!refund && n > 1) {
        // the previous build's name for it, if that build made it (no key recorded): a refund
        // with a key under that name is another key's (one spelled `K:attempt:<n>`)
        const legacyId = legacyAttemptId(actor, key, n, generation);
        const legacy = await this.refunds.findById(legacyId);
        if (legacy && legacy.requestKey === null) [id, refund] = [legacyId, legacy];
      }
      if (refund && refund.status === 'failed' && n < MAX_ATTEMPTS_PER_KEY) {
        earlier.push(id);
        continue;
      }
      const expired =
        refund !== null &&
        this.clock.now().getTime() >= refund.createdAt.getTime() + KEY_LIFETIME_MS;
      return expired
        ? {
            id: attemptId(actor, key, 1, generation + 1),
            number: 1,
            generation: generation + 1,
            refund: null,
            earlier: [],
          }
        : { id, number: n, generation, refund, earlier };
    }
  }

  /**
   * Step 1 of the automatic refund of a payment that succeeded for an order already cancelled
   * (or expired): the whole remaining amount reserved and recorded as pending, with its follow-up
   * job, once per payment. Joins the caller's transaction — the one that records the success —
   * so the success is never committed without the refund that must follow it.
   */
  reservePaidAfterCancel(payment: Payment): Promise<Refund | null> {
    return this.tx.run(async () => {
      await this.refunds.lockPayment(payment.id);
      const existing = await this.refunds.findAutomatic(payment.id);
      if (existing) return existing;
      return this.reserve(
        this.newRefund(this.ids.uuid(), payment, 'paid_after_cancel', SYSTEM),
        null,
      );
    });
  }

  /**
   * A payment that succeeded for an order already cancelled (or expired) is refunded in full,
   * once: the customer is never charged for nothing.
   */
  async refundPaidAfterCancel(payment: Payment): Promise<Refund | null> {
    const refund = await this.reservePaidAfterCancel(payment);
    if (!refund) {
      this.logger.warn(`payment ${payment.intentId}: nothing left to refund automatically`);
      return null;
    }
    return refund.status === 'pending' ? this.execute(refund, payment) : refund;
  }

  /**
   * The rest of a payment for a cancelled (or expired) order, refunded too. The automatic refund
   * is sized when the success is recorded (refundPaidAfterCancel); a refund made at the provider
   * before we knew of it makes the provider refuse that one as too large — failed, and once the
   * provider's refund is adopted (syncFromGateway) the rest would stay charged. Called after a
   * sync (`remotes`: the provider's list it read): nothing while a refund of the payment is
   * pending, ours or one made at the provider (which the provider counts against what is left,
   * while we record it only once it succeeds: the rest would be refused as too large), or once
   * nothing is left. One refund per remaining amount (its id derives from it: reason `requested`,
   * actor `system:payments`), so a rerun adds nothing and a rest the bank refuses is not asked
   * again and again — except after a refusal as more than is left (a provider's refund pending
   * then, since failed, leaves the same amount): then another, up to MAX_REST_ATTEMPTS.
   */
  async refundRestOfCancelled(
    payment: Payment,
    remotes: GatewayRefund[] = [],
  ): Promise<Refund | null> {
    if ((await this.orders.findById(payment.orderId))?.status !== 'CANCELLED') return null;
    if (remotes.some((r) => r.status === 'pending')) return null;
    const refund = await this.tx.run(async () => {
      const held = await this.refunds.lockPayment(payment.id);
      if (held?.status !== 'succeeded' || (await this.refunds.findPending(payment.id))) return null;
      // an automatic refund that failed and was raised for a person ("refund them another way"):
      // never sent again unasked — they may have refunded the customer already
      if ((await this.refunds.findFailedBy(payment.id, SYSTEM)).some(raisedForAPerson)) return null;
      const rest = held.amount - held.refundReserved;
      if (rest <= 0) return null;
      const base = `paid-after-cancel:${payment.id}:rest:${rest}`;
      for (let n = 1; n <= MAX_REST_ATTEMPTS; n++) {
        const id = uuidFromName(n === 1 ? base : `${base}:attempt:${n}`);
        const found = await this.refunds.findById(id);
        if (!found) return this.reserve(this.newRefund(id, payment, 'requested', SYSTEM), rest);
        if (found.status !== 'failed' || !EXCEEDS.has(found.failure ?? '')) return found;
      }
      this.logger.error(
        `payment ${payment.intentId}: the rest (${rest}) of a cancelled order's payment was refused as more than is left ${MAX_REST_ATTEMPTS} times; refund it by hand`,
      );
      return null;
    });
    return refund?.status === 'pending' ? this.execute(refund, payment) : refund;
  }

  /**
   * Converges our refunds with the provider's list for the payment (after `charge.refunded`):
   * settles our pending ones, and records refunds made at the provider that we never asked for.
   * `budget`: a request's, when one waits for the list.
   */
  async syncFromGateway(payment: Payment, budget?: CallBudget): Promise<GatewayRefund[]> {
    return (await this.sync(payment, budget)).remotes;
  }

  /**
   * syncFromGateway, also telling what the provider's refunds not made by us still pending there
   * would return (`providerPending`).
   */
  private async sync(
    payment: Payment,
    budget?: CallBudget,
  ): Promise<{ remotes: GatewayRefund[]; providerPending: number }> {
    const listedAt = await this.payments.databaseNow();
    const remotes = await this.gateway.listRefunds(payment.intentId, budget);
    const external: GatewayRefund[] = [];
    let providerPending = 0; // made at the provider, not by us, and not settled yet
    for (const remote of remotes) {
      const ours =
        (isUuid(remote.refundId) ? await this.refunds.findById(remote.refundId) : null) ??
        (await this.refunds.findByProviderId(remote.id));
      if (ours) {
        if (ours.status === 'pending') await this.settle(ours, remote, {});
        else if (
          ours.status === 'failed' &&
          remote.status === 'succeeded' &&
          !FINAL_FAILURES.includes(ours.failure ?? '')
        )
          await this.reinstate(ours, remote);
        else if (ours.status === 'succeeded' && remote.status === 'failed')
          await this.reversed(ours);
      } else if (remote.status === 'succeeded') {
        external.push(remote);
      } else if (remote.status === 'pending') {
        providerPending += remote.amount;
      }
    }
    // ours first: the provider lists the newest first, and a refund made at the provider after
    // one of ours failed there waits for ours to settle (adoptExternal) — were it taken first,
    // every pass would stop at it and ours would never settle
    for (const remote of external) await this.adoptExternal(payment, remote);
    // asked just now; a refund still pending at the provider (a dashboard one, not recorded until
    // it succeeds) keeps the payment watched for a while more (recheckWatched) — and what such
    // refunds would return holds fulfilment as our pending ones do (OrderRepository#transition):
    // the watch otherwise ends 30 days after the payment's last refund of ours (RefundRepository.reserve)
    const now = this.clock.now();
    await this.payments.noteRefundsChecked(
      payment.id,
      now,
      remotes.some((r) => r.status === 'pending')
        ? new Date(now.getTime() + REFUND_WATCH_MS)
        : undefined,
    );
    await this.payments.noteProviderPending(payment.id, listedAt, providerPending);
    return { remotes, providerPending };
  }

  /**
   * The net under the refund events: the provider fails a refund it reported succeeded (the
   * customer's bank returned it) or settles a dashboard refund that started pending days later,
   * and says so only in events that an endpoint subscribed as API.md lists never receives (and
   * any event can be lost). Each watched payment (a refund in the last 30 days) has its refunds
   * read from the provider again every REFUND_RECHECK_MS: a returned refund becomes failed
   * (`reversed`: logged, counted, refundable again), a settled dashboard refund is recorded, and
   * what a cancelled order's refunds leave is refunded. Returns how many payments were read.
   */
  async recheckWatched(batch = REFUND_RECHECK_BATCH): Promise<number> {
    const now = this.clock.now();
    const due = await this.payments.findRefundsToRecheck(
      now,
      new Date(now.getTime() - REFUND_RECHECK_MS),
      batch,
    );
    let read = 0;
    for (const payment of due) {
      try {
        await this.refundRestOfCancelled(payment, await this.syncFromGateway(payment));
        read++;
      } catch (err) {
        this.logger.warn(
          `refunds of payment ${payment.intentId} not rechecked: ${(err as Error).message}`,
        );
        // to the back of the line, so one that keeps failing does not hold the batch for ever —
        // also one the provider was unavailable for: a call about that payment alone that always
        // timed out, first in line, stopped every run at itself
        await this.payments.noteRefundsChecked(payment.id, this.clock.now()).catch(() => undefined);
        // the provider down: the rest would only wait for the same timeout each (next run)
        if (err instanceof GatewayError && err.kind === 'unavailable') break;
      }
    }
    return read;
  }

  /**
   * Pending refunds untouched for `staleMs`. Never sent, or no answer (a crash or timeout
   * mid-call): ask again with the same key. Accepted but pending at the provider: read the
   * provider's current state (asking again would only replay its first answer).
   */
  async retryStale(staleMs: number): Promise<number> {
    const stale = await this.refunds.findStalePending(
      new Date(this.clock.now().getTime() - staleMs),
    );
    let settled = 0;
    for (const refund of stale) {
      // one that fails (a dashboard refund waiting for ours, the database) waits at the back of
      // the line; the rest go on — unless the provider itself is unavailable: then the rest
      // would only wait for the same timeout each, and the next run tries again
      let outcome: 'settled' | 'pending' | 'unavailable';
      try {
        outcome = await this.retryOne(refund);
      } catch (err) {
        this.logger.warn(`stale refund ${refund.id} not settled yet: ${(err as Error).message}`);
        await this.tx
          .run(() => this.refunds.touch(refund.id, this.clock.now()))
          .catch(() => undefined);
        outcome =
          err instanceof GatewayError && err.kind === 'unavailable' ? 'unavailable' : 'pending';
      }
      if (outcome === 'settled') settled++;
      if (outcome === 'unavailable') break;
    }
    return settled;
  }

  /** One stale refund: settled now, still pending, or the provider did not answer. */
  private async retryOne(refund: Refund): Promise<'settled' | 'pending' | 'unavailable'> {
    const payment = await this.payments.findById(refund.paymentId);
    if (!payment) return 'pending';
    if (refund.providerRefundId) {
      await this.syncFromGateway(payment);
      const now = await this.refunds.findById(refund.id);
      if (now?.status !== 'pending') return 'settled';
      await this.tx.run(() => this.refunds.touch(refund.id, this.clock.now()));
      return 'pending';
    }
    const { refund: after, unanswered } = await this.attempt(refund, payment);
    if (unanswered) return 'unavailable';
    return after.status !== 'pending' ? 'settled' : 'pending';
  }

  /**
   * The follow-up job of a pending refund (`payments.settle-refund`): nothing to do once it has
   * settled; otherwise it is finished as its request would have (same provider key). A refund the
   * provider holds as pending is left to its refund events (and the stale sweep); no answer from
   * the provider throws, so the job is retried shortly.
   */
  async settlePending(refundId: string): Promise<string> {
    const refund = await this.refunds.findById(refundId);
    if (!refund) return 'unknown-refund';
    if (refund.status !== 'pending') return refund.status;
    const payment = await this.payments.findById(refund.paymentId);
    if (!payment) return 'unknown-payment';
    if (refund.providerRefundId) await this.syncFromGateway(payment);
    else await this.execute(refund, payment);
    const now = (await this.refunds.findById(refundId))!;
    if (now.status !== 'pending') return now.status;
    if (now.providerRefundId) return 'pending-at-provider';
    throw new Error(`refund ${refundId}: no answer from the payment provider yet; retrying`);
  }

  /** Step 1: the amount reserved and the refund recorded as pending, with its follow-up job. */
  private async reserve(refund: NewRefund, amount: number | null): Promise<Refund | null> {
    const reserved = await this.refunds.reserve(refund, amount, this.clock.now());
    if (reserved?.status === 'pending') {
      await this.outbox.add('refund.requested', reserved.orderId, {
        orderId: reserved.orderId,
        refundId: reserved.id,
      });
    }
    return reserved;
  }

  /** Step 2 and 3: the provider call (same key every time), then settle from its answer. */
  private async execute(refund: Refund, payment: Payment): Promise<Refund> {
    return (await this.attempt(refund, payment)).refund;
  }

  /**
   * execute(), also saying whether the provider left the call unanswered (unknown outcome).
   * `inRequest`: made by the request that asked for the refund, which answers a failure itself.
   */
  private async attempt(
    refund: Refund,
    payment: Payment,
    at: Settling = {},
  ): Promise<{ refund: Refund; unanswered: boolean }> {
    let remote: GatewayRefund | undefined;
    // The same key makes a resend safe only while the provider remembers it (Stripe: at least
    // 24 h). A refund older than RESEND_LIST_FIRST_AFTER_MS — an answer lost to a crash, then a
    // long outage — is looked for in the provider's list first (by our id in its metadata): made
    // there already, it is settled from it, never sent a second time. No list, no resend.
    if (this.clock.now().getTime() - refund.createdAt.getTime() > RESEND_LIST_FIRST_AFTER_MS) {
      try {
        remote = (await this.gateway.listRefunds(payment.intentId, at.budget)).find(
          (r) => r.refundId === refund.id,
        );
      } catch (err) {
        return this.unanswered(refund, err);
      }
    }
    try {
      remote ??= await this.gateway.createRefund(
        {
          intentId: payment.intentId,
          amount: refund.amount,
          refundId: refund.id,
          orderId: refund.orderId,
          idempotencyKey: gatewayKeys.refund(refund.id),
          // a day on, the provider may forget the first key: an attempt under it could then make
          // the refund afresh beside one a concurrent attempt made under the next generation
          advanceKeyOnReplay:
            this.clock.now().getTime() - refund.createdAt.getTime() < ADVANCE_KEY_UNTIL_MS,
        },
        at.budget,
      );
    } catch (err) {
      if (err instanceof GatewayError && err.kind === 'rejected') {
        const failed = await this.tx.run(async () => {
          const failed = await this.refunds.settle(
            refund.id,
            'failed',
            { failure: err.code ?? err.message },
            this.clock.now(),
          );
          if (failed) this.raiseIfFailed(failed, at);
          return failed;
        });
        return { refund: failed ?? (await this.refunds.findById(refund.id))!, unanswered: false };
      }
      return this.unanswered(refund, err);
    }
    return { refund: await this.settle(refund, remote, at), unanswered: false };
  }

  /** Unknown outcome: the refund stays pending and retryStale asks again (same key). */
  private async unanswered(
    refund: Refund,
    err: unknown,
  ): Promise<{ refund: Refund; unanswered: boolean }> {
    this.logger.warn(
      `refund ${refund.id}: provider unavailable (${(err as Error).message}); will retry`,
    );
    await this.tx.run(() => this.refunds.touch(refund.id, this.clock.now()));
    // a failure the provider saved under this refund's key is about that key alone: the stale
    // sweep goes on to the others (one such refund had held every other one back for a day)
    const keyOnly = err instanceof GatewayError && err.code === REPLAYED_FAILURE;
    return { refund, unanswered: !keyOnly };
  }

  private async settle(refund: Refund, remote: GatewayRefund, at: Settling): Promise<Refund> {
    const now = this.clock.now();
    if (remote.status === 'pending') {
      await this.tx.run(() => this.refunds.attachProviderId(refund.id, remote.id, now));
      return refund;
    }
    const outcome = remote.status;
    const settled = await this.tx.run(async () => {
      const settled = await this.refunds.settle(
        refund.id,
        outcome,
        {
          providerRefundId: remote.id,
          failure: remote.status === 'failed' ? FAILED_THERE : undefined,
        },
        now,
      );
      if (settled?.status === 'succeeded') await this.announce(settled);
      if (settled) this.raiseIfFailed(settled, at);
      return settled;
    });
    return settled ?? (await this.refunds.findById(refund.id))!;
  }

  /**
   * A refund of ours for a cancelled order (the automatic one, or its rest) that the provider
   * refused (other than as more than is left) or failed — once, by the call that settled it so:
   * the customer is still charged for an order they do not get, and no retry here would change
   * the provider's answer (the same key replays it; a disputed charge or an empty balance needs a
   * person). Raised: an error log and `automatic_refunds_failed_total`, which the README says to
   * alert on.
   *
   * Called in the transaction that settles the refund so, raised once it commits — or when its
   * COMMIT's outcome cannot be learned (afterCommitOrUnknown): raised only after a commit seen, a
   * failure whose COMMIT answer was lost in a blink was never raised (the job's retry finds the
   * refund failed already: nothing to settle, nothing raised). Raised twice at worst, when that
   * COMMIT in fact rolled back and the retry settles it again.
   *
   * An admin's refund that fails after its request was answered — 201 `pending` (the provider
   * holds it, or did not answer), then failed by the provider or refused on a later attempt —
   * is raised too: the admin was told not to issue another one for it, and nobody else would
   * learn that the customer was not refunded (the request that fails it answers the admin itself:
   * not raised). An error log and `requested_refunds_failed_total`.
   */
  private raiseIfFailed(refund: Refund, at: Settling): void {
    if (refund.status !== 'failed' || !raisedForAPerson(refund)) return;
    this.tx.afterCommitOrUnknown(() => this.raiseFailed(refund, at));
  }

  private raiseFailed(refund: Refund, at: Settling): void {
    if (refund.actor === SYSTEM) {
      this.automaticFailures.inc();
      this.logger.error(
        `automatic refund ${refund.id} of cancelled order ${refund.orderId} (${refund.amount} ${refund.currency}) ` +
          `failed (${refund.failure ?? 'refused'}): the customer is still charged — refund them another way`,
      );
    } else if (!at.inRequest) {
      this.requestedFailures.inc();
      this.logger.error(
        `refund ${refund.id} of order ${refund.orderId} (${refund.amount} ${refund.currency}), requested by ${refund.actor} ` +
          `and answered as pending, failed (${refund.failure ?? 'refused'}): the customer was not refunded — refund them again`,
      );
    }
  }

  /**
   * The provider failed a refund it had reported as succeeded (the customer's bank returned it):
   * the money is back in the shop's balance and the customer has not been refunded. The refund
   * becomes failed, its amount refundable again and off the order's refunded amount (the status
   * stays: API.md has no transition out of REFUNDED / PARTIALLY_REFUNDED), so an admin's refund
   * or one made in the Stripe dashboard fits and is recorded. A cancelled order's automatic
   * refund reversed is sent once more by itself, as its rest (refundRestOfCancelled, after this
   * sync); that rest reversed in turn is not (one refund per remaining amount: a card the bank
   * keeps returning money from is not paid again and again) — a person refunds it. Raised for a
   * person, once (as raiseIfFailed: when the reversal commits, or may have): an error log and
   * `refunds_reversed_total`; and the customer is emailed (`order.refund-reversed`: EmailService
   * sends it only when the refund's own email went out, or may have).
   */
  private async reversed(refund: Refund): Promise<void> {
    await this.tx.run(async () => {
      const reversed = await this.refunds.reverse(
        refund.id,
        REVERSED_AT_PROVIDER,
        this.clock.now(),
      );
      if (!reversed) return;
      await this.transitions.withdrawRefund(
        reversed.orderId,
        reversed.id,
        reversed.amount,
        'refund:provider',
      );
      // the customer, told "refunded" by email, is told it did not reach them (a cancelled
      // order's too: its automatic refund had its email)
      await this.outbox.add('order.refund-reversed', reversed.orderId, {
        orderId: reversed.orderId,
        refundId: reversed.id,
      });
      this.tx.afterCommitOrUnknown(() => {
        this.reversals.inc();
        this.logger.error(
          `refund ${refund.id} of order ${refund.orderId} (${refund.amount} ${refund.currency}) was reversed by the provider: ` +
            'the customer has not been refunded — it is refundable again; refund them',
        );
      });
    });
  }

  private async reinstate(refund: Refund, remote: GatewayRefund): Promise<void> {
    this.logger.warn(
      `refund ${refund.id} was recorded as failed but succeeded at the provider: reinstated`,
    );
    await this.tx.run(async () => {
      const back = await this.refunds.reinstate(
        refund.id,
        remote.id,
        FINAL_FAILURES,
        this.clock.now(),
      );
      if (back) await this.announce(back);
    });
  }

  private async adoptExternal(payment: Payment, remote: GatewayRefund): Promise<void> {
    await this.tx.run(async () => {
      const status = (await this.refunds.lockPayment(payment.id))?.status;
      if (await this.refunds.findByProviderId(remote.id)) return;
      if (status === 'canceled') {
        // never becomes succeeded: nothing to adopt against, and retrying would never end
        this.logger.error(
          `provider refund ${remote.id} names ${payment.intentId}, recorded as canceled: not adopted`,
        );
        return;
      }
      if (status !== 'succeeded') {
        // the provider refunded a payment whose success we have not recorded yet (its event is
        // late or still retrying): thrown, so the refund is adopted once the success is ours
        throw new Error(
          `provider refund ${remote.id}: payment ${payment.intentId} is not recorded as succeeded yet`,
        );
      }
      const refund = await this.refunds.reserve(
        {
          ...this.newRefund(this.ids.uuid(), payment, 'external', 'system:provider'),
          providerRefundId: remote.id,
        },
        remote.amount,
        this.clock.now(),
      );
      if (refund) {
        await this.announce(refund);
        return;
      }
      if (await this.refunds.findPending(payment.id)) {
        // Ours, still pending, holds part of the amount, and the provider will refuse it (both
        // would exceed what was captured); this one happened. Thrown: the event's job (or the
        // reconciliation sweep) adopts it once ours has settled, instead of dropping it.
        throw new Error(
          `provider refund ${remote.id} waits for the pending refunds of ${payment.intentId} to settle`,
        );
      }
      this.logger.error(
        `provider refund ${remote.id} exceeds what we hold as refundable for ${payment.intentId}`,
      );
    });
  }

  /**
   * A succeeded refund moves a paid order to PARTIALLY_REFUNDED / REFUNDED (with its event);
   * a cancelled order keeps its status, and the customer still hears about the refund.
   */
  private async announce(refund: Refund): Promise<void> {
    const applied = await this.transitions.applyRefund(
      refund.orderId,
      refund.id,
      refund.amount,
      `refund:${refund.actor}`,
    );
    if (!applied)
      await this.outbox.add('order.refunded', refund.orderId, {
        orderId: refund.orderId,
        refundId: refund.id,
      });
  }

  private newRefund(
    id: string,
    payment: Payment,
    reason: NewRefund['reason'],
    actor: string,
  ): NewRefund {
    return {
      id,
      orderId: payment.orderId,
      paymentId: payment.id,
      currency: payment.currency,
      reason,
      actor,
    };
  }

  /** The job that runs settlePending (JobHandlers finds it at worker boot). */
  @OnJob(JobName.SettleRefund)
  handleSettleRefund({ refundId }: JobPayloads[JobName.SettleRefund]) {
    return this.settlePending(refundId);
  }
}
