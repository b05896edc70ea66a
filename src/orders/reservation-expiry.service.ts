import { Injectable } from '@nestjs/common';
import { ProductRepository } from '../catalog/product.repository';
import { PRODUCT_WITHDRAWN_ACTOR } from './order-state-machine';
import { OrderRepository } from './order.repository';
import { OrderTransitionsService } from './order-transitions.service';

/**
 * Cancels an unpaid order whose reservation window has passed (RESERVATION_EXPIRED), releasing
 * its stock exactly once — the guarded transition lets only one of any concurrent callers win.
 * What decides *whether* an order with a payment in flight is unpaid is the gateway: the
 * expiry job and the sweeper (payments/overdue-orders.service.ts) ask it first.
 */
@Injectable()
export class ReservationExpiryService {
  constructor(
    private readonly transitions: OrderTransitionsService,
    private readonly orders: OrderRepository,
    private readonly products: ProductRepository,
  ) {}

  /**
   * Expires one order if (and only if) it is still unpaid and past its deadline — and, with
   * `unlessPaymentOpen`, only if no payment of it is open at the gateway (one started after the
   * caller looked must be asked of the gateway first).
   *
   * An order a product of which was taken off sale since it was placed (a recall, a price
   * mistake — even one back on sale since) could not be paid from then on (PaymentsService
   * refuses a payment begun after): it ends as a payment start would have ended it, the shop's
   * doing (PAYMENT_FAILED by PRODUCT_WITHDRAWN_ACTOR: the email says a product was withdrawn, the
   * purchase caps never count it). Expired as the customer's, it counted against their day's
   * allowance of abandoned orders, and its email said the reservation ran out.
   */
  async expire(orderId: string, opts: { unlessPaymentOpen?: boolean } = {}): Promise<boolean> {
    const withdrawn = await this.withdrawnSincePlaced(orderId);
    const result = await this.transitions.cancel(
      orderId,
      withdrawn ? 'PAYMENT_FAILED' : 'RESERVATION_EXPIRED',
      withdrawn ? PRODUCT_WITHDRAWN_ACTOR : 'system:expiry',
      { onlyIfReservationDue: true, onlyIfNoOpenPayment: opts.unlessPaymentOpen },
    );
    return result.changed;
  }

  private async withdrawnSincePlaced(orderId: string): Promise<boolean> {
    const order = await this.orders.findById(orderId);
    if (!order) return false;
    const productIds = order.items.map((i) => i.productId);
    return (await this.products.offSaleSince(productIds, order.placedEpoch ?? null)).length > 0;
  }
}
