import { Injectable, Logger } from '@nestjs/common';
import { Clock } from '../common/time/clock';
import { OrderRepository } from '../orders/order.repository';
import { ReservationExpiryService } from '../orders/reservation-expiry.service';
import { delayJob } from '../queue/delay-job';
import { OnJob } from '../queue/on-job.decorator';
import { JobName, JobOf, JobPayloads } from '../queue/queues';
import { PaymentFinalizer } from './payment-finalizer.service';
import { PaymentRepository } from './payment.repository';

/** How long after a deadline the expiry job looks, so the guarded transition sees it as due. */
const EXPIRY_GRACE_MS = 250;
/** Overdue orders the sweeper looks at per query. */
const SWEEP_BATCH = 200;

/**
 * Orders past their reservation deadline (API.md: a reservation not paid for within the window
 * is released, CANCELLED with RESERVATION_EXPIRED). Driven by a delayed job per order and a
 * periodic sweeper, which may run at once (the guarded transition lets one win).
 *
 * An order whose payment has started is asked of the gateway first, as only the gateway knows
 * whether it was paid in time — its success may still be on its way through the webhook, the
 * outbox and the queue. Its intent is cancelled there (so it can no longer be paid), and the
 * answer decides: cancelled → the order expires; succeeded (paid before the cancel) → the order
 * is paid, as the customer paid within the window; processing (a bank debit submitted in time) →
 * the order waits for the debit's outcome, which its event (or the reconciliation) applies.
 */
@Injectable()
export class OverdueOrders {
  private readonly logger = new Logger(OverdueOrders.name);

  constructor(
    private readonly orders: OrderRepository,
    private readonly payments: PaymentRepository,
    private readonly finalizer: PaymentFinalizer,
    private readonly expiry: ReservationExpiryService,
    private readonly clock: Clock,
  ) {}

  /** Settles one order if its deadline has passed; true when it expired now. */
  async settle(orderId: string): Promise<boolean> {
    const deadline = await this.orders.findReservationDeadline(orderId);
    if (!deadline || deadline > this.clock.now()) return false; // not holding, or not due yet
    const payment = await this.payments.findByOrder(orderId);
    if (payment && payment.status !== 'canceled') {
      // outside any transaction: a gateway call
      const outcome = await this.finalizer.cancelIntentOf(orderId);
      if (outcome.kind === 'intent-open') return false;
    }
    return this.expiry.expire(orderId); // guarded: a no-op for an order the answer made PAID
  }

  /**
   * The per-order expiry job: settles the order if it is due. If it still holds its reservation
   * but the deadline has not come yet (the job ran early: a clock between Redis and PostgreSQL),
   * the same job looks again just after the deadline, not at the next sweep.
   */
  @OnJob(JobName.ExpireReservation)
  async expireReservation(
    { orderId }: JobPayloads[JobName.ExpireReservation],
    job: JobOf<JobName.ExpireReservation>,
    token?: string,
  ): Promise<boolean> {
    if (await this.settle(orderId)) return true;
    const deadline = await this.orders.findReservationDeadline(orderId);
    if (!deadline || deadline <= this.clock.now() || !token) return false;
    return delayJob(job, token, deadline.getTime() + EXPIRY_GRACE_MS);
  }

  /** The safety net: settles every overdue order, in batches (one that fails waits for the next run). */
  @OnJob(JobName.SweepExpiredReservations)
  async sweep(): Promise<number> {
    let expired = 0;
    const seen: string[] = [];
    for (;;) {
      const due = await this.orders.findOverdueReservations(this.clock.now(), SWEEP_BATCH, seen);
      for (const id of due) {
        seen.push(id);
        try {
          if (await this.settle(id)) expired++;
        } catch (err) {
          this.logger.warn(`overdue order ${id} not settled yet: ${(err as Error).message}`);
        }
      }
      if (due.length < SWEEP_BATCH) break;
    }
    if (expired > 0) this.logger.log(`expired ${expired} overdue reservations`);
    return expired;
  }
}
