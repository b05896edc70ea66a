import { Injectable } from '@nestjs/common';
import { ProductRepository } from '../catalog/product.repository';
import { OnJob } from '../queue/on-job.decorator';
import { JobName, JobPayloads } from '../queue/queues';
import { PRODUCT_WITHDRAWN_ACTOR } from './order-state-machine';
import { OrderRepository } from './order.repository';
import { OrderTransitionsService } from './order-transitions.service';

/** Orders read per batch by releaseWithdrawn. */
const WITHDRAWN_BATCH = 100;

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
   * allowance of abandoned orders, and its email said the reservation ran out. Only one no payment
   * of which began (INVENTORY_RESERVED): one whose payment began before the withdrawal was let go
   * on, and left unpaid it expires as the customer's.
   */
  async expire(orderId: string, opts: { unlessPaymentOpen?: boolean } = {}): Promise<boolean> {
    const withdrawn = await this.products.reservedOrderWithdrawn(orderId);
    const result = await this.transitions.cancel(
      orderId,
      withdrawn ? 'PAYMENT_FAILED' : 'RESERVATION_EXPIRED',
      withdrawn ? PRODUCT_WITHDRAWN_ACTOR : 'system:expiry',
      { onlyIfReservationDue: true, onlyIfNoOpenPayment: opts.unlessPaymentOpen },
    );
    return result.changed;
  }

  /**
   * A product was taken off sale: the unpaid orders holding its units that no payment has begun
   * for could not be paid any more (PaymentsService refuses), and held those units — the
   * product mended and back on sale looked sold out — until their windows ran out, each counted
   * against its customer's open orders meanwhile. Cancelled now, the shop's doing, a batch at a
   * time; each one only if a product of it is still off sale since it was placed (not an order
   * placed after a return to sale) and no payment of it is open (a start racing this goes on).
   * Run again (a retry, a relay's second publish), it finds what is left. Returns how many.
   */
  @OnJob(JobName.ReleaseWithdrawnReservations)
  async releaseWithdrawn({
    productId,
  }: JobPayloads[JobName.ReleaseWithdrawnReservations]): Promise<number> {
    let released = 0;
    let after: string | null = null;
    for (;;) {
      const batch = await this.orders.reservedWithProduct(productId, after, WITHDRAWN_BATCH);
      for (const orderId of batch) {
        if (!(await this.products.reservedOrderWithdrawn(orderId))) continue;
        const { changed } = await this.transitions.cancel(
          orderId,
          'PAYMENT_FAILED',
          PRODUCT_WITHDRAWN_ACTOR,
          { onlyIfNoOpenPayment: true },
        );
        if (changed) released++;
      }
      if (batch.length < WITHDRAWN_BATCH) return released;
      after = batch[batch.length - 1];
    }
  }
}
