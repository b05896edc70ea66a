import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { IdGenerator, isCanonicalUuid } from '../common/ids';
import { logOrder } from '../common/logging/order-log';
import { RateLimitedLog } from '../common/logging/rate-limited-log';
import { Clock } from '../common/time/clock';
import { TransactionHost } from '../database/transaction-host';
import { MetricsService } from '../metrics/metrics.service';
import { OrderRepository } from '../orders/order.repository';
import { OrderTransitionsService } from '../orders/order-transitions.service';
import { OnJob } from '../queue/on-job.decorator';
import { JobName, JobPayloads } from '../queue/queues';
import {
  dateOfUnixSeconds,
  DisputeOfIntent,
  GatewayDispute,
  GatewayError,
  GatewayIntent,
  PAYMENT_GATEWAY,
  PaymentGateway,
  isGatewayUnavailable,
} from './payment-gateway';
import { DisputeRepository, RecordedDispute } from './dispute.repository';
import { DISPUTE_RELEASED } from './entities/payment-dispute.entity';
import { Payment, PaymentRepository } from './payment.repository';
import { RefundsService } from './refunds.service';
import { ShopIdentity } from './shop-identity';
import { WebhookEvent, WebhookEventRepository } from './webhook-event.repository';

const ACTOR = 'system:payments';

/** What moving an order to match its intent did (the intent as the gateway says now). */
export type ConvergeOutcome =
  /** Not final yet (the customer's turn, or in flight): the order stays PAYMENT_PENDING. */
  | { kind: 'pending'; orderId: string; intentStatus: 'requires_payment_method' | 'processing' }
  /** Paid: the order is PAID and CONFIRMED (stock committed once), or was already past that. */
  | { kind: 'confirmed'; orderId: string }
  /** Declined or canceled: the order is CANCELLED (PAYMENT_FAILED), its stock released once. */
  | { kind: 'cancelled'; orderId: string }
  /**
   * Paid for an order already cancelled (or expired): refunded in full, once. `refundId` is null
   * when nothing was left to refund (refunded before).
   */
  | { kind: 'refunded-after-cancel'; orderId: string; refundId: string | null };

/** What acting on one webhook event did (the result of a `payments.process-event` job). */
export type EventOutcome =
  /** No such event in the inbox. */
  | { kind: 'unknown-event'; eventId: string }
  /** The event names no intent of ours (nor one whose order exists): marked processed. */
  | { kind: 'no-payment'; eventId: string }
  /**
   * An event of a type this release does not act on, about an intent: `left` unprocessed for a
   * release that does (UNHANDLED_EVENT_GRACE_MS), or set aside once that has passed.
   */
  | { kind: 'unhandled'; eventId: string; left: boolean }
  /** A refund event: our refunds of the payment converged with the provider's list. */
  | { kind: 'refunds-synced'; orderId: string }
  /**
   * A dispute event: the dispute's status recorded (`changed`: its first report, or a new
   * status); `status` null when its object is not a dispute we can read (logged, nothing recorded).
   */
  | { kind: 'dispute'; orderId: string; status: string | null; changed: boolean }
  /**
   * News of money (succeeded or authorized, refunded, disputed) about one of our intents — its
   * metadata names an order as we write them and this shop (ShopIdentity) — whose order the
   * database does not have: restored from a backup older than the payment. Raised for a person
   * (an error line, `payments_orphaned_total{event}`) and recorded as `orphan` in webhook_events:
   * the provider still holds the money, which no order here accounts for. Such an intent not paid
   * yet is `no-payment`; so is one that names another shop (another deployment on the account),
   * or none (made before intents carried it: ours or another's, no telling).
   */
  | { kind: 'orphan'; eventId: string; intentId: string; orderId: string }
  | ConvergeOutcome;

/** What cancelling the intent of a cancelled order did (a `payments.cancel-intent` job). */
export type CancelIntentOutcome =
  /** No payment, or its intent is final already. */
  | { kind: 'nothing-to-cancel'; orderId: string }
  /** Cancelled at the gateway: it can no longer be paid. */
  | { kind: 'intent-cancelled'; orderId: string }
  /** The gateway would not cancel it (in flight): its success, if it comes, is refunded. */
  | { kind: 'intent-open'; orderId: string; intentStatus: 'requires_payment_method' | 'processing' }
  /** The customer had paid just before: converged (refunded, as the order is cancelled). */
  | ConvergeOutcome;

/** Order statuses a succeeded payment has already been applied to (or that it can no longer move). */
const SETTLED_ORDER_STATUSES: ReadonlySet<string> = new Set([
  'CONFIRMED',
  'FULFILLED',
  'PARTIALLY_REFUNDED',
  'REFUNDED',
  'CANCELLED',
]);

/** A pending payment without news for this long is checked against the gateway. */
export const RECONCILE_AFTER_MS = 10 * 60 * 1000;
/**
 * An accepted webhook event still unprocessed this long after it arrived has lost its job (its
 * retries take ~2 min; an outage, or an outbox row parked as dead): the sweep processes it.
 */
export const UNPROCESSED_EVENT_AFTER_MS = 5 * 60 * 1000;
/**
 * The provider event types this release acts on (by prefix): an intent's, a charge's (its
 * refunds and disputes among them), a refund's.
 */
const HANDLED_EVENT_TYPES = ['payment_intent.', 'charge.', 'refund.'];
/**
 * An event of another type about one of our payments is left unprocessed this long — the sweep
 * brings it back — then set aside (processed, with a warning). During a rolling deploy, a worker
 * of the release before took events of a type only the new release handles (disputes, when they
 * came) and marked them processed as a payment's news: the dispute was never recorded, and the
 * order went on to fulfilment (rolling-deploy review). Left, the new release's worker takes it.
 */
export const UNHANDLED_EVENT_GRACE_MS = 60 * 60 * 1000;
/**
 * What an orphan event (EventOutcome `orphan`) is news of: the label of
 * `payments_orphaned_total`, a fixed set.
 */
type OrphanNews = 'payment' | 'refund' | 'dispute';
/**
 * A dispute read from the provider, and when it was asked (the database's clock, before the read:
 * DisputeRepository#record orders the reports of one dispute by it).
 */
type ReadDispute = DisputeOfIntent & { readAt: Date };
/**
 * The orphans' error lines: one per intent and kind of news a minute (a payment's several events),
 * and at most 100 intents named apart in a minute — a restore that lost a sale's orders is one
 * line a minute past them, counting the rest (`npm run payments:orphans` lists every one).
 */
const orphanLines = new RateLimitedLog(60_000, 100);
const isDisputeEvent = (type: string): boolean => type.startsWith('charge.dispute.');
const isRefundEvent = (type: string): boolean =>
  type === 'charge.refunded' || type.startsWith('charge.refund.') || type.startsWith('refund.');
/** Events the sweep takes on per run (the next run takes the rest). */
const SWEEP_BATCH = 100;
/** A refund still pending this long after its last provider call is sent again (same key). */
export const RETRY_REFUND_AFTER_MS = 60 * 1000;

/**
 * Acts on a webhook event by re-reading the intent from the gateway (events can be late, stale,
 * duplicated or out of order) and moving the order to match: succeeded → PAID (stock committed
 * once) → CONFIRMED, or an automatic refund when the order was already cancelled; a declined or
 * canceled intent → CANCELLED (PAYMENT_FAILED, stock released once). Every step is a guarded
 * transition or carries a deterministic provider key, so a rerun after a crash at any point
 * converges to the same result.
 */
/**
 * The provider has no intent under this id (404 resource_missing) — for one of ours, recorded
 * when it was made there: the provider key was changed (another account, test and live
 * swapped), or, in development, the simulated intents went with their database. Nothing can be
 * charged under it through this account, so it is taken as cancelled — only where the order is
 * cancelled or past its deadline (cancelIntentOf, settleOverdue), and a day after that deadline
 * (unknownLongEnough): such an order otherwise stayed PAYMENT_PENDING with its stock reserved,
 * its expiry failing and every sweep asking again for good. Until then it waits (a key mended in
 * time finds the intent again, and an order paid in time is confirmed).
 */
/** How long past its order's deadline an intent the provider does not know is waited for. */
const UNKNOWN_INTENT_GRACE_MS = 24 * 60 * 60 * 1000;
/** How long a dispute not final goes unheard of before it is read from the provider again. */
const DISPUTE_RECHECK_MS = 6 * 60 * 60 * 1000;
/** Disputes read again per reconciliation run (every minute); disputes reminded of, too. */
const DISPUTE_RECHECK_BATCH = 20;
/** How long before its evidence deadline a dispute still waiting for our answer is raised again. */
const DISPUTE_REMIND_BEFORE_MS = 3 * 24 * 60 * 60 * 1000;
/** How often, past that day, an event about an intent the provider does not know is asked again. */
const UNKNOWN_EVENT_RETRY_MS = 6 * 60 * 60 * 1000;
/** When such an event is given up (marked processed: then purged with its customer details). */
const UNKNOWN_EVENT_GIVE_UP_MS = 30 * 24 * 60 * 60 * 1000;
/** How long an event goes unprocessed before each failed retry of it is logged at error. */
export const STUCK_EVENT_MS = 24 * 60 * 60 * 1000;

/**
 * The dispute a `charge.dispute.*` event carries (Stripe's Dispute object), or null for anything
 * else: its id, status, amount (minor units) and currency are required. Only its id is acted on
 * (the rest is read from the provider: disputeOfEvent); an orphan's error line falls back on it.
 */
function readDispute(object: unknown): GatewayDispute | null {
  const d = (typeof object === 'object' && object !== null ? object : {}) as Record<
    string,
    unknown
  >;
  if (
    d.object !== 'dispute' ||
    typeof d.id !== 'string' ||
    !/^[\x21-\x7e]{1,255}$/.test(d.id) ||
    typeof d.status !== 'string' ||
    !/^[a-z_]{1,64}$/.test(d.status) ||
    !Number.isSafeInteger(d.amount) ||
    (d.amount as number) < 0 ||
    typeof d.currency !== 'string' ||
    !/^[a-z]{3}$/i.test(d.currency)
  ) {
    return null;
  }
  return {
    id: d.id,
    status: d.status,
    amount: d.amount as number,
    currency: d.currency.toUpperCase(),
    reason: typeof d.reason === 'string' && /^[a-z_]{1,64}$/.test(d.reason) ? d.reason : null,
    evidenceDueBy: dateOfUnixSeconds(
      typeof d.evidence_details === 'object' && d.evidence_details !== null
        ? (d.evidence_details as Record<string, unknown>).due_by
        : null,
    ),
  };
}

/**
 * What an event about an intent of ours whose order we do not have is news of — money taken
 * (succeeded, or authorized to capture), refunded or disputed — or null: not paid yet, nothing
 * moved (its success, should it come, is news of its own).
 */
function orphanNewsOf(type: string, intent: GatewayIntent): OrphanNews | null {
  if (isDisputeEvent(type)) return 'dispute';
  if (isRefundEvent(type)) return 'refund';
  return intent.status === 'succeeded' || intent.capturable ? 'payment' : null;
}

function isUnknownIntent(err: unknown): boolean {
  return err instanceof GatewayError && err.kind === 'rejected' && err.code === 'resource_missing';
}

@Injectable()
export class PaymentFinalizer {
  private readonly logger = new Logger(PaymentFinalizer.name);

  constructor(
    private readonly payments: PaymentRepository,
    private readonly events: WebhookEventRepository,
    private readonly orders: OrderRepository,
    private readonly transitions: OrderTransitionsService,
    private readonly refunds: RefundsService,
    private readonly disputes: DisputeRepository,
    @Inject(PAYMENT_GATEWAY) private readonly gateway: PaymentGateway,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
    metrics: MetricsService,
    private readonly shop: ShopIdentity,
  ) {
    this.disputed = metrics.counter(
      'payments_disputed_total',
      "Payments the customer's bank disputed (an inquiry or a chargeback): each must be answered at the provider",
    );
    this.deadlinesNear = metrics.counter(
      'payments_dispute_deadlines_near_total',
      'Disputes still waiting for our evidence within 3 days of their deadline (or past it): each is lost by default unless answered at the provider',
    );
    this.amountMismatches = metrics.counter(
      'payments_amount_mismatch_total',
      'Payments that succeeded for another amount or currency than their order (changed at the provider): cancelled and refunded',
    );
    this.orphaned = metrics.counter(
      'payments_orphaned_total',
      'Webhook events of money (event: payment taken, refund, dispute) about one of our intents whose order the database does not have (restored from an older backup): each needs a person (npm run payments:orphans)',
      ['event'],
    );
    for (const news of ['payment', 'refund', 'dispute'] satisfies OrphanNews[])
      this.orphaned.inc({ event: news }, 0);
  }

  private readonly amountMismatches: Counter<string>;
  private readonly orphaned: Counter<'event'>;
  private readonly disputed: Counter<string>;
  private readonly deadlinesNear: Counter<string>;

  async processEvent(eventId: string): Promise<EventOutcome> {
    const event = await this.events.find(eventId);
    if (!event) return { kind: 'unknown-event', eventId };
    if (event.intentId && !HANDLED_EVENT_TYPES.some((prefix) => event.type.startsWith(prefix))) {
      const now = this.clock.now();
      if (now.getTime() - event.receivedAt.getTime() < UNHANDLED_EVENT_GRACE_MS) {
        // to the back of the sweep's line: a hundred of them must not hold its front for an hour
        await this.events.noteSweepFailed(eventId, now);
        return { kind: 'unhandled', eventId, left: true };
      }
      await this.events.markProcessed(eventId, now, 'unhandled');
      this.logger.warn(
        `event ${eventId} (${event.type}) set aside: no release acted on its type within ${UNHANDLED_EVENT_GRACE_MS / 60_000} min`,
      );
      return { kind: 'unhandled', eventId, left: false };
    }
    // a dispute's event is not believed: the dispute it names is read from the provider, and the
    // intent that says it disputes is the payment it is recorded for (undefined: not a dispute's
    // event; null: its object names no dispute)
    const disputed = isDisputeEvent(event.type) ? await this.disputeOfEvent(event) : undefined;
    const intentId = disputed ? disputed.intentId : event.intentId;
    const found = intentId
      ? ((await this.payments.findByIntent(intentId)) ??
        ((await this.namesNoOrderOfOurs(eventId, event.type)) ? null : await this.adopt(intentId)))
      : null;
    if (found && 'orphan' in found) {
      const news = orphanNewsOf(event.type, found.orphan);
      if (news) return this.recordOrphan(eventId, event.type, found.orphan, news, disputed);
    }
    const payment = found && !('orphan' in found) ? found : null;
    if (!payment) {
      await this.events.markProcessed(eventId, this.clock.now(), 'no-payment');
      return { kind: 'no-payment', eventId };
    }
    if (isRefundEvent(event.type)) {
      // a refund's event can overtake the payment's own (a success job still retrying, or late):
      // the payment is settled from the gateway first, so a refund made at the provider is
      // recorded against a paid order — never dropped while the order goes on to be confirmed
      if (payment.status !== 'succeeded' || (await this.awaitsSettlement(payment.orderId)))
        await this.converge(payment);
      const remotes = await this.refunds.syncFromGateway(payment);
      // a cancelled order's payment: what the provider's refunds and ours leave is refunded too
      await this.refunds.refundRestOfCancelled(payment, remotes);
      await this.events.markProcessed(eventId, this.clock.now(), 'refunds-synced');
      return { kind: 'refunds-synced', orderId: payment.orderId };
    }
    if (disputed !== undefined) return this.recordDispute(payment, eventId, disputed);
    return this.converge(payment, eventId);
  }

  /**
   * The dispute a `charge.dispute.*` event names, as the provider holds it now (with the intent it
   * disputes), or null when the event's object is not a dispute. Never the event's own copy: a
   * late or retried event (Stripe retries for 3 days) carried an old status back over a newer one,
   * and an event the provider contradicts (a `won` while the dispute is open) was kept for good —
   * the goods shipped during a chargeback. A provider that does not answer fails the job, which is
   * retried (and the sweep after it), as for an intent's event.
   */
  private async disputeOfEvent(event: WebhookEvent): Promise<ReadDispute | null> {
    const named = readDispute(await this.events.objectOf(event.id));
    if (!named) return null;
    const readAt = await this.payments.databaseNow();
    const remote = await this.gateway.retrieveDispute(named.id);
    if (remote.intentId !== event.intentId)
      this.logger.warn(
        `event ${event.id} (${event.type}) names intent ${event.intentId ?? 'none'} for dispute ${named.id}; ` +
          `the payment provider says it disputes ${remote.intentId ?? 'no intent'}: taken as the provider says`,
      );
    return { ...remote, id: named.id, readAt };
  }

  /**
   * News of money about one of our intents whose order the database does not have (EventOutcome
   * `orphan`): the database was restored from a backup older than the order, while the provider
   * kept its newer state. Nothing here can settle it — there is no order to confirm, refund or
   * hold — so it is raised for a person: an error line naming the intent, the order, the amount
   * and what happened (no customer details), `payments_orphaned_total{event}`, and the event's
   * outcome `orphan` in webhook_events. Raised by the run that marks the event processed (a
   * rerun of its job raises nothing again), once that mark commits or may have (its COMMIT's
   * answer lost and the database not asked in time: raised, not lost). The webhook was answered
   * 200 when the event was recorded: the provider does not send it again.
   */
  private async recordOrphan(
    eventId: string,
    type: string,
    intent: GatewayIntent,
    news: OrphanNews,
    dispute?: GatewayDispute | null,
  ): Promise<EventOutcome> {
    const outcome = {
      kind: 'orphan',
      eventId,
      intentId: intent.id,
      orderId: intent.orderId,
    } as const;
    let what: string;
    if (news === 'dispute') {
      const d = dispute ?? readDispute(await this.events.objectOf(eventId));
      what = d
        ? `disputed: dispute ${d.id} (${d.status}, ${d.amount} ${d.currency}) — answer it at the payment provider by ${d.evidenceDueBy?.toISOString() ?? 'its deadline'}`
        : 'disputed — answer the dispute at the payment provider';
    } else if (news === 'refund') {
      what = 'refunded at the payment provider: no order here records it';
    } else {
      what =
        'the money was taken for no order here — find the order, or refund it at the payment provider';
    }
    const status = intent.capturable ? 'requires_capture' : intent.status;
    // (in a transaction of its own: a lost answer to the mark is then asked about, not read as
    // "marked by another run" — and raised when the mark commits, or may have)
    await this.tx.run(async () => {
      if (!(await this.events.markProcessed(eventId, this.clock.now(), 'orphan'))) return;
      this.tx.afterCommitOrUnknown(() => {
        this.orphaned.inc({ event: news });
        orphanLines.write(
          `${news}:${intent.id}`,
          `intent ${intent.id} (${status}, ${intent.amount} ${intent.currency}) names order ${intent.orderId}, which this ` +
            `database does not have (restored from an older backup?): event ${eventId} (${type}) recorded as orphan — ` +
            `${what}; npm run payments:orphans -- --since <the backup's time> lists every such intent`,
          (line) => this.logger.error(line),
        );
      });
    });
    return outcome;
  }

  /**
   * A `charge.dispute.*` event: the customer's bank disputes the payment (an inquiry, or a
   * chargeback that takes the money back at once). The dispute as the provider holds it now
   * (disputeOfEvent) is recorded on the payment of the intent it disputes (DisputeRepository: a
   * final status is never undone), and while one is open or lost
   * the order is not fulfilled (OrderRepository#transition) — the goods would leave with the money
   * gone. Raised for a person: the first report (`payments_disputed_total`, an error log: the
   * dispute must be answered with evidence by its deadline, at the provider) and a loss.
   */
  private async recordDispute(
    payment: Payment,
    eventId: string,
    dispute: ReadDispute | null,
  ): Promise<EventOutcome> {
    if (!dispute) {
      this.logger.warn(`event ${eventId}: its object is not a dispute of ${payment.intentId}`);
      await this.events.markProcessed(eventId, this.clock.now(), 'dispute');
      return { kind: 'dispute', orderId: payment.orderId, status: null, changed: false };
    }
    const recorded = await this.noteDispute(payment, dispute, eventId);
    return {
      kind: 'dispute',
      orderId: payment.orderId,
      status: recorded?.status ?? dispute.status,
      changed: recorded !== null,
    };
  }

  /**
   * Records the dispute as the provider reports it (with the event that reported it marked
   * processed in the same transaction, if one did), and raises what changed for a person.
   */
  private async noteDispute(
    payment: Pick<Payment, 'id' | 'intentId' | 'orderId'>,
    dispute: GatewayDispute & { readAt: Date },
    eventId?: string,
  ): Promise<RecordedDispute | null> {
    const at = this.clock.now();
    return this.tx.run(async () => {
      const done = await this.disputes.record({ ...dispute, paymentId: payment.id }, at);
      if (eventId) await this.events.markProcessed(eventId, at, 'dispute');
      if (done) this.tx.afterCommitOrUnknown(() => this.raiseDispute(payment, dispute, done));
      return done;
    });
  }

  /** What a dispute recorded changed, said to a person (noteDispute: once it commits, or may have). */
  private raiseDispute(
    payment: Pick<Payment, 'id' | 'intentId' | 'orderId'>,
    dispute: GatewayDispute,
    recorded: RecordedDispute,
  ): void {
    const what = `payment ${payment.intentId} of order ${payment.orderId}: dispute ${dispute.id} (${dispute.reason ?? 'no reason given'}, ${dispute.amount} ${dispute.currency})`;
    // (first heard of in its final status — its earlier events lost or late — it is raised as
    // what it is: a loss, or news of no consequence; only a dispute still to answer is "opened")
    if (recorded.status === 'lost') {
      if (recorded.first) this.disputed.inc();
      this.logger.error(`${what} lost: the customer's bank keeps the money`);
    } else if (DISPUTE_RELEASED.includes(recorded.status)) {
      this.logger.warn(
        `${what} ${recorded.first ? 'first heard of as' : 'is now'} ${recorded.status}: it no longer holds the order`,
      );
    } else if (recorded.first) {
      this.disputed.inc();
      this.logger.error(
        `${what} opened, ${recorded.status}: the order is not fulfilled while it is open — answer it at the payment provider by ${dispute.evidenceDueBy?.toISOString() ?? 'its deadline'}`,
      );
    } else {
      this.logger.warn(`${what} is now ${recorded.status}`);
    }
    logOrder({
      orderId: payment.orderId,
      action: 'payment.disputed',
      disputeId: dispute.id,
      status: recorded.status,
      actor: ACTOR,
    });
  }

  /**
   * The net under the dispute events (any event can be lost): a dispute not final whose provider
   * was last heard from DISPUTE_RECHECK_MS ago is read from it again — a lost
   * `charge.dispute.closed` would hold its order's fulfilment for ever, a lost loss leave it
   * unraised. DISPUTE_RECHECK_BATCH a run, least recently heard from first. Returns how many
   * changed.
   */
  private async recheckOpenDisputes(now: Date): Promise<number> {
    let changed = 0;
    const due = await this.disputes.findToRecheck(
      new Date(now.getTime() - DISPUTE_RECHECK_MS),
      DISPUTE_RECHECK_BATCH,
    );
    for (const open of due) {
      try {
        const readAt = await this.payments.databaseNow();
        const remote = await this.gateway.retrieveDispute(open.id);
        const payment = { id: open.paymentId, intentId: open.intentId, orderId: open.orderId };
        if (await this.noteDispute(payment, { ...remote, id: open.id, readAt })) changed++;
      } catch (err) {
        this.logger.warn(`dispute ${open.id} not rechecked: ${(err as Error).message}`);
        // the provider down: the rest would only wait for the same timeout each (next run)
        if (isGatewayUnavailable(err)) break;
        // to the back of the line, so one that keeps failing does not hold the batch for ever
        await this.disputes.noteChecked(open.id, this.clock.now()).catch(() => undefined);
      }
    }
    return changed;
  }

  /**
   * A dispute still waiting for our answer (evidence, or a reply to an inquiry) when its deadline
   * is DISPUTE_REMIND_BEFORE_MS away, or past, is raised for a person once more (an error log,
   * `payments_dispute_deadlines_near_total`): unanswered, it is lost by default. Once per deadline
   * (a new deadline is reminded of again), claimed in the database so two runs never both raise it.
   */
  private async remindDisputeDeadlines(now: Date): Promise<void> {
    // (a transaction of its own: a claim whose answer is lost is then asked about — committed, it
    // is raised; before, the next run found it claimed and nobody was reminded)
    await this.tx.run(async () => {
      const near = await this.disputes.claimDeadlinesNear(
        new Date(now.getTime() + DISPUTE_REMIND_BEFORE_MS),
        now,
        DISPUTE_RECHECK_BATCH,
      );
      this.tx.afterCommitOrUnknown(() => {
        for (const d of near) {
          this.deadlinesNear.inc();
          const hours = Math.round((d.evidenceDueBy.getTime() - now.getTime()) / 3_600_000);
          this.logger.error(
            `payment ${d.intentId} of order ${d.orderId}: dispute ${d.id} is still ${d.status}, its evidence ${hours >= 0 ? `due in ${hours} h` : `was due ${-hours} h ago`} (${d.evidenceDueBy.toISOString()}) — answer it at the payment provider, or it is lost`,
          );
        }
      });
    });
  }

  /**
   * The safety net for webhooks that never arrive: payments whose order has been
   * PAYMENT_PENDING without news for `staleMs` are settled from the gateway's current state,
   * accepted events whose job gave up are processed, the intents of cancelled orders still open
   * are cancelled, refunds whose provider call never got an answer are sent again, and the
   * refunds of payments refunded lately are read from the provider again (RefundsService.recheckWatched).
   */
  async reconcile(staleMs = RECONCILE_AFTER_MS): Promise<number> {
    const now = this.clock.now().getTime();
    const stale = await this.payments.findStalePending(new Date(now - staleMs));
    let settled = 0;
    for (const payment of stale) {
      try {
        if ((await this.converge(payment)).kind !== 'pending') settled++;
      } catch (err) {
        if (await this.setAside(payment, 'stale payment', err)) break;
      }
    }
    settled += await this.sweepUnprocessedEvents(new Date(now - UNPROCESSED_EVENT_AFTER_MS));
    settled += await this.sweepOpenIntentsOfCancelled(new Date(now - staleMs));
    settled += await this.refunds.retryStale(RETRY_REFUND_AFTER_MS);
    settled += await this.recheckOpenDisputes(this.clock.now());
    await this.remindDisputeDeadlines(this.clock.now());
    return settled + (await this.refunds.recheckWatched());
  }

  /**
   * Cancelled orders whose intent is still open at the gateway: their intent-cancel job gave up
   * (the gateway down longer than its retries) or was lost with Redis. Cancelled now, so the
   * intent can no longer be paid (a payment that got in first is converged: refunded). One that
   * stays open (in flight) is looked at again after another `staleMs`.
   */
  private async sweepOpenIntentsOfCancelled(before: Date): Promise<number> {
    let done = 0;
    for (const payment of await this.payments.findOpenOfCancelled(before)) {
      try {
        const outcome = await this.cancelIntentOf(payment.orderId);
        if (outcome.kind !== 'intent-open') done++;
      } catch (err) {
        if (await this.setAside(payment, 'open intent of a cancelled order', err)) break;
      }
    }
    return done;
  }

  /**
   * A sweep's item that failed: logged, and moved to the back of the line (its last-seen status
   * recorded again, which touches it) so it does not hold the others' turn. True when the gateway
   * itself is unavailable: the pass stops there rather than wait for the same timeout per item.
   */
  private async setAside(payment: Payment, what: string, err: unknown): Promise<boolean> {
    this.logger.warn(`${what} ${payment.intentId} not settled yet: ${(err as Error).message}`);
    await this.tx
      .run(() => this.payments.setStatus(payment.id, payment.status, this.clock.now()))
      .catch(() => undefined);
    return isGatewayUnavailable(err);
  }

  /**
   * Events we answered 200 for (so the provider never sends them again) whose job gave up: a
   * success on a cancelled order (to refund), a refund made in the dashboard (to record) would
   * otherwise be lost for good. Each is processed again — processEvent re-reads the gateway and
   * is idempotent, so a job still retrying it at the same time changes nothing — and one that
   * fails again goes to the back of the line for the next run (a provider outage also ends the
   * run: one timeout per pass, not one per event).
   */
  private async sweepUnprocessedEvents(before: Date): Promise<number> {
    let done = 0;
    for (const eventId of await this.events.findUnprocessed(before, SWEEP_BATCH)) {
      try {
        await this.processEvent(eventId);
        done++;
      } catch (err) {
        if (isUnknownIntent(err) && (await this.unknownForLong(eventId))) continue;
        await this.reportUnprocessed(eventId, err);
        // to the back of the line: events that keep failing must not hold the batch for ever —
        // also one the gateway answered unavailable for, as setAside does: a call about that
        // object alone that always runs out of time stopped every pass at it, first in line, and
        // no other lost event was processed again
        await this.events.noteSweepFailed(eventId, this.clock.now()).catch(() => undefined);
        if (isGatewayUnavailable(err)) break;
      }
    }
    return done;
  }

  /**
   * A failed retry of an unprocessed event: a warning, and an error once the event has gone
   * unprocessed for a day (STUCK_EVENT_MS) — a failure that is not the provider's own (a refund
   * that cannot be recorded, a bug) was retried every 5 minutes for good at warning level, where
   * nobody is paged, while the money it is about waited.
   */
  private async reportUnprocessed(eventId: string, err: unknown): Promise<void> {
    const line = `webhook event ${eventId} still not processed: ${(err as Error).message}`;
    const event = await this.events.find(eventId).catch(() => null);
    const age = event ? this.clock.now().getTime() - event.receivedAt.getTime() : 0;
    if (!event || age < STUCK_EVENT_MS) return this.logger.warn(line);
    this.logger.error(
      `${line} — ${event.type}, unprocessed for ${Math.floor(age / 3_600_000)} h and tried again ` +
        'every 5 minutes: look at it',
    );
  }

  /**
   * An event about one of our payments whose intent (a dispute's event: the dispute it names) the
   * provider has not known for a day since the event came (a key changed to another account:
   * unknownLongEnough's case). It was asked of
   * the provider again every 5 minutes for good, and, never processed, never purged: its payload
   * (the customer's name, email, card brand and last four) kept for ever. Now it is asked every
   * UNKNOWN_EVENT_RETRY_MS, and given up — marked processed, raised as an error naming the intent
   * to look for in the account it was made in — UNKNOWN_EVENT_GIVE_UP_MS after it came. Not
   * sooner: it may be the success of a payment made in time, which the order's expiry meanwhile
   * took for cancelled (a day past the deadline: always later than a day past the event); once the
   * key is mended this event is what converges that payment — succeeded, refunded in full. True
   * when it was dealt with so.
   */
  private async unknownForLong(eventId: string): Promise<boolean> {
    const event = await this.events.find(eventId);
    const now = this.clock.now();
    const age = event ? now.getTime() - event.receivedAt.getTime() : 0;
    if (!event || age < UNKNOWN_INTENT_GRACE_MS) return false;
    if (age < UNKNOWN_EVENT_GIVE_UP_MS) {
      await this.events
        .noteSweepFailed(eventId, new Date(now.getTime() + UNKNOWN_EVENT_RETRY_MS))
        .catch(() => undefined);
      return true;
    }
    const unknown = `${isDisputeEvent(event.type) ? 'dispute of intent' : 'intent'} ${event.intentId}`;
    // said by the pass that marks it (two at once: one), once the mark commits or may have — said
    // after a commit seen, a mark whose answer was lost was never said (the next pass no longer
    // finds the event)
    await this.tx.run(async () => {
      if (!(await this.events.markProcessed(eventId, now, 'unknown-intent'))) return;
      this.tx.afterCommitOrUnknown(() =>
        this.logger.error(
          `webhook event ${eventId} (${event.type}) given up: its ${unknown} has been unknown to the ` +
            'payment provider (resource_missing) for 30 days — if the provider key was changed, look for it in the ' +
            'account the intent was made in',
        ),
      );
    });
    return true;
  }

  /**
   * The order was cancelled (by the customer, expiry or a failed payment): its intent is
   * cancelled at the gateway so it can no longer be paid. If the customer paid just before,
   * the gateway says succeeded and the payment is converged — refunded automatically.
   *
   * A payment already recorded as succeeded is converged too (an order is cancelled only before
   * PAID, so its money must go back): a rerun of this job after the refund's own step failed —
   * the success was committed, the refund was not — still refunds, once (the automatic refund
   * is found under the payment's lock).
   */
  async cancelIntentOf(orderId: string): Promise<CancelIntentOutcome> {
    const payment = await this.payments.findByOrder(orderId);
    if (!payment || payment.status === 'canceled') return { kind: 'nothing-to-cancel', orderId };
    if (payment.status === 'succeeded') return this.converge(payment);
    const intent = await this.gateway.cancelIntent(payment.intentId).catch(async (err: unknown) => {
      if (!isUnknownIntent(err) || !(await this.unknownLongEnough(orderId))) throw err;
      this.logger.error(
        `intent ${payment.intentId} of order ${orderId} is unknown to the payment provider (resource_missing): ` +
          'recorded as canceled — nothing can be charged under it through this account; if the provider key was ' +
          'changed, look for a charge in the account the intent was made in',
      );
      return { status: 'canceled' as const };
    });
    const intentStatus = intent.status;
    if (intentStatus === 'succeeded') return this.converge(payment);
    await this.payments.setStatus(payment.id, intentStatus, this.clock.now());
    return intentStatus === 'canceled'
      ? { kind: 'intent-cancelled', orderId }
      : { kind: 'intent-open', orderId, intentStatus };
  }

  /**
   * Whether an intent the provider does not know may be taken as cancelled: only a day past its
   * order's reservation deadline (UNKNOWN_INTENT_GRACE_MS). A wrong provider key deployed for a
   * while (another account's, test for live) makes every intent unknown: an order paid in time
   * in the right account must not expire meanwhile (its payment recorded cancelled, its real
   * intent never cancelled after), but wait, as for a provider that does not answer.
   */
  private async unknownLongEnough(orderId: string): Promise<boolean> {
    const deadline = (await this.orders.findById(orderId))?.reservationExpiresAt;
    return !deadline || this.clock.now().getTime() - deadline.getTime() >= UNKNOWN_INTENT_GRACE_MS;
  }

  /**
   * The order's reservation deadline has passed while its payment was open: asked of the gateway
   * (OverdueOrders). A debit in flight (processing) is left alone — Stripe can cancel one "in rare
   * cases", and it was submitted in time; its event or the stale-payment pass settles it. Anything
   * else is cancelled there, as for a cancelled order, and a success that got in first converges.
   */
  async settleOverdue(orderId: string): Promise<CancelIntentOutcome> {
    const payment = await this.payments.findByOrder(orderId);
    if (payment && payment.status !== 'succeeded' && payment.status !== 'canceled') {
      // (an intent the provider does not know is left to cancelIntentOf: taken as cancelled a day
      // past the order's deadline, unknownLongEnough)
      const intent = await this.gateway.retrieveIntent(payment.intentId).catch((err: unknown) => {
        if (isUnknownIntent(err)) return null;
        throw err;
      });
      if (intent?.status === 'processing') {
        if (payment.status !== 'processing')
          await this.tx.run(() =>
            this.payments.setStatus(payment.id, 'processing', this.clock.now()),
          );
        return { kind: 'intent-open', orderId, intentStatus: 'processing' };
      }
    }
    return this.cancelIntentOf(orderId);
  }

  /**
   * Whether the event is about an intent whose own metadata (in the event's payload) names no
   * order as this service writes order ids, or names another shop: every intent of ours carries
   * an order id, so such an intent is another integration's on the same account (a till, the
   * dashboard) or another deployment's — settled as not ours with no call to the provider. Each
   * had cost a read of the intent and a slot of the payments queue: twenty of a busy till's events
   * held one of our confirmations 31 s behind a slow Stripe (stripe review). Only for an intent's
   * own events (`payment_intent.*`): a charge's payload carries the charge's metadata, not the
   * intent's.
   */
  private async namesNoOrderOfOurs(eventId: string, type: string): Promise<boolean> {
    if (!type.startsWith('payment_intent.')) return false;
    const object = (await this.events.objectOf(eventId)) as {
      object?: unknown;
      metadata?: { orderId?: unknown; shop?: unknown } | null;
    } | null;
    if (object?.object !== 'payment_intent') return false;
    const { orderId, shop } = object.metadata ?? {};
    if (!isCanonicalUuid(orderId)) return true;
    // another shop's: not ours unless the order is here (its id a random uuid of this database's:
    // restored from a backup older than shop_identity, the database has another id now)
    return (
      typeof shop === 'string' &&
      shop !== '' &&
      shop !== (await this.shop.id()) &&
      !(await this.orders.findById(orderId))
    );
  }

  /**
   * An event for an intent we have not recorded yet: the webhook overtook the payment call's
   * own commit (or that call died after creating the intent). The intent's metadata names the
   * order, so the payment is recorded from the gateway's truth (unique per order: the payment
   * call, when it commits, finds this one).
   *
   * Only an intent this service could have made: its order id as we write them, and the order's
   * own total and currency. An intent made elsewhere on the same account (the dashboard,
   * another integration) that names an order — 1 paisa, another currency, `ORD-123` — is not
   * that order's payment: the event is settled as "no payment of ours", and the order stays
   * payable the normal way.
   *
   * The shop it names (`metadata.shop`, ShopIdentity) decides only when the order is not here:
   * an intent of ours — naming this shop — whose order the database does not have is returned as
   * an `orphan`: the database was restored from a backup older than the order (orders are never
   * deleted), and what the provider holds of it is raised, not dropped (recordOrphan). One that
   * names another shop (another deployment on the account: a second shop, a staging sharing a
   * test account, whose events Stripe sends here too) or none (made before intents carried it) is
   * not ours to raise: another shop's every success, refund and dispute was an error line and an
   * alert here, and `payments:orphans` told the operator to refund them (shop review). An order
   * that is here is adopted whatever shop its intent names (its id is a random uuid of this
   * database's): a restore from a backup older than shop_identity gives the database a new id,
   * and its own payments since then had been dropped as another shop's (diff review 3).
   */
  private async adopt(intentId: string): Promise<Payment | { orphan: GatewayIntent } | null> {
    let intent: GatewayIntent;
    try {
      intent = await this.gateway.retrieveIntent(intentId);
    } catch (err) {
      if (err instanceof GatewayError && err.kind === 'rejected') return null; // not ours / unknown
      throw err;
    }
    if (!isCanonicalUuid(intent.orderId)) return null;
    const order = await this.orders.findById(intent.orderId);
    if (!order) {
      if (intent.shop === (await this.shop.id())) return { orphan: intent };
      this.logger.debug(
        `intent ${intent.id} names order ${intent.orderId}, which this database does not have, and ${intent.shop === undefined ? 'no shop (made before intents carried one)' : `another shop (${intent.shop})`}: not taken for ours`,
      );
      return null;
    }
    if (order.totalAmount !== intent.amount || order.currency !== intent.currency) {
      this.logger.warn(
        `intent ${intent.id} names order ${order.id} but is for ${intent.amount} ${intent.currency}, ` +
          `not its ${order.totalAmount} ${order.currency}: not adopted`,
      );
      return null;
    }
    const standing = await this.payments.recordIntent(
      this.ids.uuid(),
      this.gateway.provider,
      intent,
      this.clock.now(),
    );
    if (standing.intentId !== intent.id) {
      // the order is paid through another intent (ours): this one, made elsewhere with the order's
      // own id and total, is not its payment — converging ours on its event would record nothing
      // of it. Money it took is the business of whoever made it, so it is raised, not guessed at.
      const log = intent.status === 'succeeded' ? 'error' : 'warn';
      this.logger[log](
        `intent ${intent.id} (${intent.status}) names order ${order.id}, whose payment is intent ` +
          `${standing.intentId}: not adopted${intent.status === 'succeeded' ? ' — it took money; refund it at the provider' : ''}`,
      );
      return null;
    }
    return standing;
  }

  /** Re-reads the intent (outside any transaction) and moves the order to match. */
  private async converge(payment: Payment, eventId?: string): Promise<ConvergeOutcome> {
    let intent = await this.gateway.retrieveIntent(payment.intentId);
    const declined = intent.status === 'requires_payment_method' && !!intent.lastError;
    if (declined) {
      // A declined attempt cancels the order (API.md), so the intent is cancelled first: a
      // payment racing this cancel wins at the gateway, and the answer says succeeded.
      intent = await this.gateway.cancelIntent(intent.id);
    }
    const status = intent.status;
    const { orderId } = payment;
    // paid after cancel: the refund is reserved in the transaction, its provider call follows it
    type Settled =
      Exclude<ConvergeOutcome, { kind: 'refunded-after-cancel' }> | { kind: 'paid-after-cancel' };
    // the provider took another amount or currency than the order's (the intent was changed at
    // the provider after it was made): not this order's payment — the order is cancelled as a
    // failed payment and what was taken refunded in full, never confirmed for what it was not paid
    // (what it took: a succeeded intent captured in part took less than it asks for)
    const taken = intent.received ?? intent.amount;
    const mismatch =
      status === 'succeeded' && (taken !== payment.amount || intent.currency !== payment.currency);
    const paid = mismatch
      ? { ...payment, status, amount: taken, currency: intent.currency }
      : { ...payment, status };
    const outcome = await this.tx.run(async (): Promise<Settled> => {
      await this.payments.setStatus(payment.id, status, this.clock.now());
      let result: Settled;
      if (mismatch) {
        await this.transitions.cancel(orderId, 'PAYMENT_FAILED', ACTOR);
        const order = await this.orders.findById(orderId);
        if (order?.status === 'CANCELLED') {
          // what was taken, refunded in full (refunds are sized and capped from it)
          await this.payments.setCaptured(payment.id, taken, intent.currency, this.clock.now());
          await this.refunds.reservePaidAfterCancel(paid);
          result = { kind: 'paid-after-cancel' };
        } else {
          // settled before (paid, perhaps refunded in part): its record stays as it is — raised
          result = { kind: 'confirmed', orderId };
        }
        // (after a commit seen only: raised by every convergence of such a success, not by the
        // change of a state — a retry after an unknown outcome raises it again)
        this.tx.afterCommit(() => {
          this.amountMismatches.inc();
          this.logger.error(
            `intent ${intent.id} of order ${orderId} succeeded for ${taken} ${intent.currency}, not the ` +
              `${payment.amount} ${payment.currency} it was made for (changed at the provider): ` +
              (order?.status === 'CANCELLED'
                ? 'order cancelled, refunded in full'
                : `order left ${order?.status}`),
          );
        });
      } else if (status === 'succeeded') {
        await this.transitions.markPaid(orderId, ACTOR);
        const order = await this.orders.findById(orderId);
        if (order?.status === 'PAID') await this.transitions.confirm(orderId, ACTOR);
        if (order?.status === 'CANCELLED') {
          // recorded with the success, in this transaction: were the refund left to a step after
          // the commit, a job that gave up in between would keep the money (the event would
          // count as processed, and no sweep looks at a CANCELLED order's payment)
          await this.refunds.reservePaidAfterCancel({ ...payment, status });
          result = { kind: 'paid-after-cancel' };
        } else {
          result = { kind: 'confirmed', orderId };
        }
      } else if (status === 'canceled') {
        // not declined (no payment error) and past the deadline: cancelled by the expiry, whose
        // own order step has not run yet (it died in between) — the order expired, it was not a
        // failed payment
        const expired =
          !declined &&
          !intent.lastError &&
          (
            await this.transitions.cancel(orderId, 'RESERVATION_EXPIRED', 'system:expiry', {
              onlyIfReservationDue: true,
            })
          ).changed;
        if (!expired) await this.transitions.cancel(orderId, 'PAYMENT_FAILED', ACTOR);
        result = { kind: 'cancelled', orderId };
      } else {
        result = { kind: 'pending', orderId, intentStatus: status };
      }
      if (eventId)
        await this.events.markProcessed(
          eventId,
          this.clock.now(),
          result.kind === 'paid-after-cancel' ? 'refunded-after-cancel' : result.kind,
        );
      return result;
    });
    logOrder({
      orderId,
      action: 'payment.converged',
      paymentStatus: status,
      outcome: outcome.kind,
      intentId: payment.intentId,
      eventId,
    });
    if (outcome.kind === 'paid-after-cancel') {
      const refund = await this.refunds.refundPaidAfterCancel(paid);
      return { kind: 'refunded-after-cancel', orderId, refundId: refund?.id ?? null };
    }
    return outcome;
  }

  /**
   * The order has not been moved past its payment yet (a success recorded, its order step not;
   * or an intent adopted as succeeded from a refund event while its order still waits).
   */
  private async awaitsSettlement(orderId: string): Promise<boolean> {
    const status = (await this.orders.findById(orderId))?.status;
    return status !== undefined && !SETTLED_ORDER_STATUSES.has(status);
  }

  // The jobs this service runs (JobHandlers finds them at worker boot).

  @OnJob(JobName.ProcessPaymentEvent)
  handleProcessEvent({ eventId }: JobPayloads[JobName.ProcessPaymentEvent]) {
    return this.processEvent(eventId);
  }

  @OnJob(JobName.CancelPaymentIntent)
  handleCancelIntent({ orderId }: JobPayloads[JobName.CancelPaymentIntent]) {
    return this.cancelIntentOf(orderId);
  }

  @OnJob(JobName.ReconcilePayments)
  handleReconcile() {
    return this.reconcile();
  }
}
