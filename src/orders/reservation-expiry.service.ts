import { Injectable, Logger } from '@nestjs/common';
import { Clock } from '../common/time/clock';
import { delayJob } from '../queue/delay-job';
import { OnJob } from '../queue/on-job.decorator';
import { JobName, JobOf, JobPayloads } from '../queue/queues';
import { OrderRepository } from './order.repository';
import { OrderTransitionsService } from './order-transitions.service';

/** How long after a deadline the expiry job looks, so the guarded transition sees it as due. */
const EXPIRY_GRACE_MS = 250;
/** Overdue orders the sweeper expires per query. */
const SWEEP_BATCH = 200;

/**
 * Cancels unpaid orders whose reservation window has passed (RESERVATION_EXPIRED), releasing
 * their stock exactly once. Driven by a delayed job per order and a periodic sweeper; both may
 * run at once — the guarded transition lets only one of them win.
 */
@Injectable()
export class ReservationExpiryService {
  private readonly logger = new Logger(ReservationExpiryService.name);

  constructor(
    private readonly orders: OrderRepository,
    private readonly transitions: OrderTransitionsService,
    private readonly clock: Clock,
  ) {}

  /** Expires one order if (and only if) it is still unpaid and past its deadline. */
  async expire(orderId: string): Promise<boolean> {
    const result = await this.transitions.cancel(orderId, 'RESERVATION_EXPIRED', 'system:expiry', {
      onlyIfReservationDue: true,
    });
    return result.changed;
  }

  /**
   * The per-order expiry job: expires the order if it is due. If it still holds its reservation
   * but the deadline has not come yet (the job ran early: a clock between Redis and PostgreSQL,
   * a deadline set after the job was made), the same job looks again just after the deadline, so
   * the order expires at its real deadline rather than at the next sweep.
   */
  @OnJob(JobName.ExpireReservation)
  async expireReservation(
    { orderId }: JobPayloads[JobName.ExpireReservation],
    job: JobOf<JobName.ExpireReservation>,
    token?: string,
  ): Promise<boolean> {
    if (await this.expire(orderId)) return true;
    const deadline = await this.orders.findReservationDeadline(orderId);
    if (!deadline || deadline <= this.clock.now() || !token) return false;
    return delayJob(job, token, deadline.getTime() + EXPIRY_GRACE_MS);
  }

  /** The safety net: expires every overdue order, in batches. */
  @OnJob(JobName.SweepExpiredReservations)
  async sweep(): Promise<number> {
    let expired = 0;
    for (;;) {
      const due = await this.orders.findOverdueReservations(this.clock.now(), SWEEP_BATCH);
      let changed = 0;
      for (const id of due) if (await this.expire(id)) changed++;
      expired += changed;
      if (due.length < SWEEP_BATCH || changed === 0) break;
    }
    if (expired > 0) this.logger.log(`expired ${expired} overdue reservations`);
    return expired;
  }
}
