import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { Clock } from '../common/time/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { MetricsService } from '../metrics/metrics.service';
import { EmailDeliveryRepository } from './email-delivery.repository';

/**
 * Cancellation emails one address gets per 24 h; more are recorded 'suppressed', never sent.
 * Registration needs no proof of the address, and cancelling (or leaving to expire) an unpaid
 * order is free: without a bound a script could mail someone's inbox thousands of times a day in
 * the shop's name. Receipts, confirmations and refunds — money moved — are never held back by
 * it (a confirmation whose order was refunded before it went out is not sent: no longer true).
 */
export const CANCELLATION_EMAILS_PER_DAY = 10;

/** The budget's warning is said at most this often per process (with the count held back since). */
export const UNPROVEN_BUDGET_WARN_EVERY_MS = 10 * 60_000;

const DAY_MS = 86_400_000;

type SuppressionReason = 'inbox_allowance' | 'unproven_budget';

/**
 * Whether a claimed cancellation email is to be held back — recorded 'suppressed': final, never
 * sent nor owed again. Two bounds, in this order:
 *
 * - the inbox's daily allowance (CANCELLATION_EMAILS_PER_DAY, its owner's apart from the others':
 *   EmailDeliveryRepository#suppressOverAllowance), which keeps one inbox from being flooded;
 * - the shop's daily budget of cancellation emails to inboxes nobody has proven
 *   (CANCELLATION_EMAILS_UNPROVEN_PER_DAY: #suppressOverUnprovenBudget), which keeps strangers
 *   from mailing thousands of other inboxes through the shop. Registration proves no address, and
 *   a /48 registers some 10,000 accounts a day: ten cancellations each, to addresses that do not
 *   exist or are spam traps, were ~100,000 emails a day, whose bounces and complaints count
 *   against the shop's sending account — paused, it sends no receipt either. An inbox a receipt
 *   was sent to is proven (it cost a purchase) and not counted.
 *
 * Each held back is counted in `cancellation_emails_suppressed_total{reason}`.
 */
@Injectable()
export class CancellationLimits {
  private readonly logger = new Logger(CancellationLimits.name);
  private readonly suppressedTotal: Counter<'reason'>;
  private budgetWarnedAt = Number.NEGATIVE_INFINITY;
  private budgetHeldSinceWarned = 0;

  constructor(
    private readonly deliveries: EmailDeliveryRepository,
    private readonly clock: Clock,
    metrics: MetricsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.suppressedTotal = metrics.counter(
      'cancellation_emails_suppressed_total',
      "Cancellation emails recorded suppressed, never sent (reason: inbox_allowance — the inbox's 10 a day; unproven_budget — the shop's daily budget for inboxes nobody has proven, CANCELLATION_EMAILS_UNPROVEN_PER_DAY)",
      ['reason'],
    );
    for (const reason of ['inbox_allowance', 'unproven_budget'] as const)
      this.suppressedTotal.inc({ reason }, 0);
  }

  /** True when the claim (a cancellation email to `recipient`) was recorded suppressed. */
  async suppressed(
    claim: { id: string; attempt: number },
    recipient: string,
    key: string,
  ): Promise<boolean> {
    const now = this.clock.now();
    const since = new Date(now.getTime() - DAY_MS);
    if (
      await this.deliveries.suppressOverAllowance(
        { ...claim, recipient, kind: 'cancellation' },
        CANCELLATION_EMAILS_PER_DAY,
        since,
        'over the daily allowance of cancellation emails',
        now,
      )
    ) {
      this.logger.warn(
        `email ${key} suppressed: over ${CANCELLATION_EMAILS_PER_DAY} cancellation emails to one address in a day`,
      );
      return this.count('inbox_allowance');
    }
    const budget = this.config.mail.cancellationsUnprovenPerDay;
    if (
      await this.deliveries.suppressOverUnprovenBudget(
        { ...claim, recipient },
        budget,
        since,
        "over the shop's daily budget of cancellation emails to unproven inboxes",
        now,
      )
    ) {
      this.budgetHeldSinceWarned++;
      if (now.getTime() - this.budgetWarnedAt >= UNPROVEN_BUDGET_WARN_EVERY_MS) {
        // said once in a while, not per email: a flood of them is what the budget is for
        this.logger.warn(
          `cancellation emails to inboxes nobody has proven (no receipt sent to them) are over the shop's budget of ${budget} a day (CANCELLATION_EMAILS_UNPROVEN_PER_DAY): suppressed, never sent — ${this.budgetHeldSinceWarned} since last said (email ${key} the latest)`,
        );
        this.budgetWarnedAt = now.getTime();
        this.budgetHeldSinceWarned = 0;
      }
      return this.count('unproven_budget');
    }
    return false;
  }

  private count(reason: SuppressionReason): true {
    this.suppressedTotal.inc({ reason });
    return true;
  }
}
