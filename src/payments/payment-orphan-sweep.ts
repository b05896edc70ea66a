import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Counter, Gauge } from 'prom-client';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { TransactionHost } from '../database/transaction-host';
import { MetricsService } from '../metrics/metrics.service';
import { OnJob } from '../queue/on-job.decorator';
import { JobName } from '../queue/queues';
import { GatewayError, MadeBetween, isGatewayUnavailable } from './payment-gateway';
import { RECONCILE_AFTER_MS } from './payment-finalizer.service';
import {
  CheckedPage,
  ORPHAN_KINDS,
  Orphan,
  OrphanCheck,
  OrphanKind,
  PaymentOrphans,
} from './payment-orphans';
import {
  OrphanFinding,
  PaymentOrphanSweepRepository,
  SweepPass,
  SweepState,
} from './payment-orphan-sweep.repository';

/**
 * How long after the provider made something (or took an intent's money) the sweep first looks at
 * it: the webhook telling of it has had the time to arrive and be processed — Stripe sends within
 * seconds, the outbox relay and the payments queue take seconds more. Each pass ends this long
 * before its run began (`pass_before`).
 */
export const SETTLE_MS = 5 * 60_000;
/**
 * How far before the watermark each pass begins: what the provider made just before it is listed
 * again (its lists are by whole seconds; a clock a little off) — looked at twice, reported once.
 */
const OVERLAP_MS = 5 * 60_000;
/**
 * How long past its order's reservation an intent of ours can still be paid: the expiry, which
 * cancels it at the provider, runs within a minute of the deadline — later when the worker was
 * down, which held the watermark back too — and an intent is made after its order, so it succeeds
 * within RESERVATION_TTL_SECONDS and this of its making.
 */
const INTENT_LIFETIME_MARGIN_MS = 60 * 60_000;
/**
 * How long after an intent's payment whose payment here is still pending the sweep first judges it:
 * the reconciliation (every minute) settles a payment pending RECONCILE_AFTER_MS from the provider —
 * a webhook accepted but not yet processed, or lost, mends itself within this.
 */
export const RECONCILING_MS = RECONCILE_AFTER_MS + 5 * 60_000;
/** How long, past the last window that can reach it, a report is remembered (then forgotten). */
const REPORT_KEPT_MS = 24 * 60 * 60_000;
/** Pages of the provider's lists a run reads at most (the next run goes on from there), and their size. */
const PAGES_PER_RUN = 20;
const PAGE_SIZE = 100;

/** What a run of the sweep did (the job's result). */
export type SweepOutcome =
  /** Less than SETTLE_MS since the watermark: nothing new to look at yet. */
  | { kind: 'up-to-date'; checkedBefore: Date }
  /** A pass ended: the watermark moved to its end. */
  | { kind: 'checked'; checkedBefore: Date; found: number; unsure: number }
  /** The pages a run reads were read: the pass goes on at the next run. */
  | { kind: 'more'; found: number; unsure: number }
  /** The provider did not answer (down, a timeout, a rate limit): the next run goes on from the page that failed. */
  | { kind: 'provider-unavailable'; found: number; unsure: number }
  /** Another run changed the state meanwhile (it is ahead): this one stopped. */
  | { kind: 'raced'; found: number; unsure: number };

/** The next list of a pass after `list`, or null after the last. */
const nextList = (list: SweepPass['list']) => ORPHAN_KINDS[ORPHAN_KINDS.indexOf(list) + 1] ?? null;

/**
 * A webhook that never arrives — the endpoint misconfigured, Stripe giving up after three days of
 * retries, events dropped in an outage — leaves money at the provider that nothing here accounts
 * for, and no one told: the reconciliation reads only what the database already has. Every
 * PAYMENT_ORPHAN_SWEEP_INTERVAL_MS the worker reads the provider's own lists and raises what is
 * ours and missing here — the same check as `npm run payments:orphans` (PaymentOrphans#checkPage)
 * — once per orphan: an error line and `payment_orphans_found_total{kind}`.
 *
 * What is read: a pass checks the refunds and disputes made from the watermark (`checked_before`,
 * less OVERLAP_MS) up to its end (SETTLE_MS before it began), and the intents made from the
 * watermark less an intent's lifetime too. The provider lists by creation time, and an intent made
 * before the watermark can succeed after it: a refund or a dispute is made when it happens, but an
 * intent is made at the payment start and paid up to its order's reservation later
 * (RESERVATION_TTL_SECONDS, plus INTENT_LIFETIME_MARGIN_MS for a late expiry) — every pass reads
 * that far back, so a success after the watermark is looked at by the first pass that ends after
 * it. An intent paid later still (a bank debit in flight at the deadline is kept until it settles)
 * has its order and payment here, pending: the reconciliation settles it from the provider
 * (PaymentFinalizer#reconcile). An intent paid after a pass's end whose order is here is left to the
 * next pass (OrphanCheck#settlingSince: its webhook may be on its way), which reaches it: it was
 * made within a lifetime of that payment.
 *
 * Bounded: a run reads PAGES_PER_RUN pages at most; the pass goes on at the next run from the
 * cursor saved after each page checked, and the watermark moves to the pass's end only once every
 * list was read to its end. A provider that fails, times out or limits the rate stops the run: the
 * page it failed on is read again by the next one, nothing past it counted as checked. Two runs at
 * once (ScheduledPassLocks keeps them apart while its session reaches the database) each write
 * over the state they read or not at all (a guarded UPDATE on `version`), and an orphan is
 * reported by the run whose insert of its report row won — never twice.
 */
@Injectable()
export class PaymentOrphanSweep {
  private readonly logger = new Logger(PaymentOrphanSweep.name);
  private readonly found: Counter<'kind'>;
  private readonly lag: Gauge;
  /** An intent's lifetime at the provider (see INTENT_LIFETIME_MARGIN_MS). */
  private readonly intentLifetimeMs: number;

  constructor(
    private readonly orphans: PaymentOrphans,
    private readonly sweeps: PaymentOrphanSweepRepository,
    private readonly tx: TransactionHost,
    private readonly clock: Clock,
    metrics: MetricsService,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.found = metrics.counter(
      'payment_orphans_found_total',
      'Intents, refunds and disputes of ours at the payment provider that the database does not account for, found by the orphan sweep (kind: intent, refund, dispute; each raised once): each needs a person',
      ['kind'],
    );
    for (const kind of ORPHAN_KINDS) this.found.inc({ kind }, 0);
    this.lag = metrics.gauge(
      'payment_orphan_sweep_lag_seconds',
      'How far behind the orphan sweep is, as its last run left it: seconds from its watermark (what it has checked) to that run. Past a few intervals it is not keeping up (a provider failing, more made than 2,000 a run) or not running',
      [],
    );
    this.intentLifetimeMs = config.reservationTtlSeconds * 1000 + INTENT_LIFETIME_MARGIN_MS;
  }

  @OnJob(JobName.SweepPaymentOrphans)
  handleSweep(): Promise<SweepOutcome> {
    return this.sweep();
  }

  /**
   * One run: a pass begun or continued, at most `limits.pages` pages of `limits.pageSize`; then
   * `payment_orphan_sweep_lag_seconds` from the watermark it left (diff review: a sweep that
   * fell behind, weeks in a model of a busy account on a daily interval, said so nowhere).
   */
  async sweep(limits = { pages: PAGES_PER_RUN, pageSize: PAGE_SIZE }): Promise<SweepOutcome> {
    try {
      return await this.run(limits);
    } finally {
      // (a database that does not answer leaves the gauge as it was: the run's own error stands)
      const state = await this.sweeps.read().catch(() => null);
      if (state) {
        const behind = this.clock.now().getTime() - state.checkedBefore.getTime();
        this.lag.set(Math.max(0, behind / 1000));
      }
    }
  }

  private async run(limits: { pages: number; pageSize: number }): Promise<SweepOutcome> {
    let state: SweepState | null = await this.sweeps.read();
    let found = 0;
    let unsure = 0;
    const stopped = (kind: 'provider-unavailable' | 'raced' | 'more'): SweepOutcome => ({
      kind,
      found,
      unsure,
    });
    const checkedBefore = state.checkedBefore;
    let pass = state.pass;
    if (!pass) {
      const before = new Date(this.clock.now().getTime() - SETTLE_MS);
      if (before <= checkedBefore) return { kind: 'up-to-date', checkedBefore };
      pass = { before, list: ORPHAN_KINDS[0], after: null };
      state = await this.write(state, { checkedBefore, pass });
      if (!state) return stopped('raced');
    }
    const check = new OrphanCheck(
      pass.before,
      new Date(pass.before.getTime() + SETTLE_MS - RECONCILING_MS),
    );
    for (let pages = 0; pages < limits.pages; pages++) {
      let page: CheckedPage;
      try {
        page = await this.orphans.checkPage(
          pass.list,
          this.windowOf(pass, checkedBefore),
          { after: pass.after ?? undefined, limit: limits.pageSize },
          check,
        );
      } catch (err) {
        if (isGatewayUnavailable(err)) {
          this.logger.warn(
            `the payment provider did not answer (${(err as Error).message}): the sweep for orphans stopped at its ${pass.list}s made before ${pass.before.toISOString()}; the next run goes on from there`,
          );
          return stopped('provider-unavailable');
        }
        if (!(err instanceof GatewayError && err.kind === 'rejected' && pass.after !== null))
          throw err;
        // the provider no longer knows the cursor (another account's key; simulated intents gone
        // with their database): that list again from its start — looked at twice, reported once
        this.logger.warn(
          `the payment provider refused the cursor ${pass.after} of its ${pass.list}s (${err.message}): read again from the start`,
        );
        pass = { ...pass, after: null };
        state = await this.write(state, { checkedBefore, pass });
        if (!state) return stopped('raced');
        continue;
      }
      for (const orphan of page.orphans) if (await this.report(orphan)) found++;
      unsure += page.unsure;
      const list: OrphanKind | null = page.next === null ? nextList(pass.list) : pass.list;
      if (list === null) {
        // every list read to its end: what was made before the pass's end has been checked
        if (!(await this.write(state, { checkedBefore: pass.before, pass: null })))
          return stopped('raced');
        await this.sweeps.forgetMadeBefore(
          new Date(pass.before.getTime() - this.intentLifetimeMs - OVERLAP_MS - REPORT_KEPT_MS),
        );
        return { kind: 'checked', checkedBefore: pass.before, found, unsure };
      }
      pass = { before: pass.before, list, after: page.next };
      state = await this.write(state, { checkedBefore, pass });
      if (!state) return stopped('raced');
    }
    return stopped('more');
  }

  /**
   * The state after writing `next` over `state`, or null when another run changed it since (the
   * write guarded on the version read): that run is ahead, or on the same pages.
   */
  private async write(
    state: SweepState,
    next: { checkedBefore: Date; pass: SweepPass | null },
  ): Promise<SweepState | null> {
    return (await this.sweeps.write(state.version, next))
      ? { ...next, version: state.version + 1 }
      : null;
  }

  /** The creation times a list of the pass reads: see the class. */
  private windowOf(pass: SweepPass, checkedBefore: Date): MadeBetween {
    const back = OVERLAP_MS + (pass.list === 'intent' ? this.intentLifetimeMs : 0);
    return { from: new Date(checkedBefore.getTime() - back), before: pass.before };
  }

  /**
   * Raises the orphan — an error line and the counter — unless it was raised before (by a run
   * before this one, or one beside it): true when it was raised now. Raised once its record
   * commits, or may have (tx.afterCommitOrUnknown): raised after an answer seen, a record whose
   * answer was lost was never raised — the next run found it recorded.
   */
  private report(orphan: Orphan): Promise<boolean> {
    const at = this.clock.now();
    const finding: OrphanFinding =
      orphan.kind !== 'intent' ? orphan.kind : orphan.payable ? 'payable-intent' : 'paid-intent';
    return this.tx.run(async () => {
      const first = await this.sweeps.noteReported({
        providerId: orphan.id,
        finding,
        madeAt: orphan.madeAt ?? at,
        at,
      });
      if (first)
        this.tx.afterCommitOrUnknown(() => {
          this.found.inc({ kind: orphan.kind });
          this.logger.error(
            `payment orphan at the payment provider, found by the sweep (no webhook event settled it here): ${orphan.line}`,
          );
        });
      return first;
    });
  }
}
