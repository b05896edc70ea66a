import { Injectable } from '@nestjs/common';
import { OrderTransitionsService } from './order-transitions.service';

/**
 * Cancels an unpaid order whose reservation window has passed (RESERVATION_EXPIRED), releasing
 * its stock exactly once — the guarded transition lets only one of any concurrent callers win.
 * What decides *whether* an order with a payment in flight is unpaid is the gateway: the
 * expiry job and the sweeper (payments/overdue-orders.service.ts) ask it first.
 */
@Injectable()
export class ReservationExpiryService {
  constructor(private readonly transitions: OrderTransitionsService) {}

  /**
   * Expires one order if (and only if) it is still unpaid and past its deadline — and, with
   * `unlessPaymentOpen`, only if no payment of it is open at the gateway (one started after the
   * caller looked must be asked of the gateway first).
   */
  async expire(orderId: string, opts: { unlessPaymentOpen?: boolean } = {}): Promise<boolean> {
    const result = await this.transitions.cancel(orderId, 'RESERVATION_EXPIRED', 'system:expiry', {
      onlyIfReservationDue: true,
      onlyIfNoOpenPayment: opts.unlessPaymentOpen,
    });
    return result.changed;
  }
}
