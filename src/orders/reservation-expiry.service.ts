import { Injectable, Logger } from '@nestjs/common';
import { Clock } from '../common/time/clock';
import { OrderRepository } from './order.repository';
import { OrderTransitionsService } from './order-transitions.service';

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
   * The per-order expiry job: expires the order if it is due; if it still holds its reservation
   * but the deadline moved (a payment in flight extends it), answers when to look again, so the
   * order expires at its real deadline rather than at the next sweep.
   */
  async expireOrReschedule(orderId: string): Promise<{ expired: boolean; retryAt: Date | null }> {
    if (await this.expire(orderId)) return { expired: true, retryAt: null };
    const deadline = await this.orders.findReservationDeadline(orderId);
    return { expired: false, retryAt: deadline && deadline > this.clock.now() ? deadline : null };
  }

  /** The safety net: expires every overdue order, in batches. */
  async sweep(batch = 200): Promise<number> {
    let expired = 0;
    for (;;) {
      const due = await this.orders.findOverdueReservations(this.clock.now(), batch);
      let changed = 0;
      for (const id of due) if (await this.expire(id)) changed++;
      expired += changed;
      if (due.length < batch || changed === 0) break;
    }
    if (expired > 0) this.logger.log(`expired ${expired} overdue reservations`);
    return expired;
  }
}
