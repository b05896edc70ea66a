import { Injectable, Logger } from '@nestjs/common';
import { OrderRepository } from '../orders/order.repository';
import { ReservationExpiryService } from '../orders/reservation-expiry.service';
import { delayJob } from '../queue/delay-job';
import { OnJob } from '../queue/on-job.decorator';
import { JobName, JobOf, JobPayloads } from '../queue/queues';
import { isGatewayUnavailable } from './payment-gateway';
import { PaymentFinalizer } from './payment-finalizer.service';
import { PaymentRepository } from './payment.repository';

/** How long after a deadline the expiry job looks, so the guarded transition sees it as due. */
const EXPIRY_GRACE_MS = 250;
/** Overdue orders the sweeper looks at per query. */
const SWEEP_BATCH = 200;
/** How long a gateway that did not answer is not asked again by the expiry (the sweeper runs every minute). */
const GATEWAY_DOWN_MEMO_MS = 30_000;
/**
 * Questions to the gateway about overdue orders one process asks at once. The orders queue runs
 * a few jobs at once (worker.module.ts): a slow gateway (seconds per answer, under its timeout)
 * may hold at most this many of them, so the expiry of unpaid orders always finds a free one.
 */
const GATEWAY_ASKERS = 2;
/** When a per-order expiry found every asker busy: it looks again this much later (to twice it). */
const ASKERS_BUSY_RETRY_MS = 10_000;

/** Every asker of this process is waiting on the gateway: the order is asked about later. */
class AskersBusy extends Error {
  constructor() {
    super('every gateway asker is busy');
  }
}

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
  /**
   * Until then this process does not ask the gateway about overdue orders (it just failed to
   * answer): each per-order job would otherwise wait out its timeouts (~25 s) in turn, holding the
   * orders queue — and the expiry of every order without a payment — behind them.
   */
  private gatewayDownUntil = 0;
  /** Gateway questions this process is waiting on now (at most GATEWAY_ASKERS). */
  private asking = 0;
  /**
   * The orders the gateway was found unavailable for in this process's last gateway pass: the
   * next one starts behind them (they wait a run). First in line (the oldest deadlines), an order
   * whose own call always times out ended every pass at itself, and no paying order behind it
   * was ever asked about by the sweep.
   */
  private trippedLastPass: string[] = [];

  constructor(
    private readonly orders: OrderRepository,
    private readonly payments: PaymentRepository,
    private readonly finalizer: PaymentFinalizer,
    private readonly expiry: ReservationExpiryService,
  ) {}

  /**
   * Settles one order if its deadline has passed; true when it expired now. `askGateway: false`
   * (the gateway is down for this run) leaves an order whose payment is open for a later run —
   * an order without one still expires on time, whatever the gateway is doing.
   */
  async settle(orderId: string, opts: { askGateway?: boolean } = {}): Promise<boolean> {
    const dueIn = await this.orders.reservationDueIn(orderId);
    if (dueIn === null || dueIn > 0) return false; // not holding, or not due yet (PostgreSQL's clock)
    const payment = await this.payments.findByOrder(orderId);
    if (payment && payment.status !== 'canceled') {
      // a debit in flight was submitted in time: its event (or the stale-payment pass) settles it
      if (payment.status === 'processing' || opts.askGateway === false) return false;
      if (this.asking >= GATEWAY_ASKERS) throw new AskersBusy();
      this.asking++;
      try {
        // outside any transaction: gateway calls
        const outcome = await this.finalizer.settleOverdue(orderId);
        if (outcome.kind === 'intent-open') return false;
      } finally {
        this.asking--;
      }
    }
    // guarded: a no-op for an order the answer made PAID, and for one whose payment was started
    // after the read above (its intent must be asked first, on the next run)
    return this.expiry.expire(orderId, { unlessPaymentOpen: true });
  }

  /**
   * The per-order expiry job: settles the order if it is due. If it still holds its reservation
   * but the deadline has not come yet (the job ran early: the clocks of the worker that scheduled it,
   * of the one that promoted it and of PostgreSQL, which judges the deadline, disagree),
   * the same job looks again just after the deadline, not at the next sweep.
   */
  @OnJob(JobName.ExpireReservation)
  async expireReservation(
    { orderId }: JobPayloads[JobName.ExpireReservation],
    job: JobOf<JobName.ExpireReservation>,
    token?: string,
  ): Promise<boolean> {
    try {
      if (await this.settle(orderId, { askGateway: !this.gatewayDown() })) return true;
    } catch (err) {
      // the gateway is slow and this process already waits on it enough: not another slot held
      // (spread over a second interval: a sale's orders fell due together, and would otherwise
      // come back together, the askers busy for the first few and idle for the rest)
      if (err instanceof AskersBusy && token) {
        return delayJob(job, token, Date.now() + ASKERS_BUSY_RETRY_MS * (1 + Math.random()));
      }
      // the gateway is down: the sweeper asks again every minute; retrying here would hold the
      // orders queue (and the expiry of orders without a payment) on the gateway's timeouts
      if (!isGatewayUnavailable(err)) throw err;
      this.noteGatewayDown();
      this.logger.warn(
        `order ${orderId}: its payment could not be asked of the gateway; left to the sweeper`,
      );
      return false;
    }
    const dueIn = await this.orders.reservationDueIn(orderId);
    if (dueIn === null || dueIn === 0 || !token) return false;
    // BullMQ promotes a delayed job on the clock of the worker that fetches it: relative to ours
    return delayJob(job, token, Date.now() + dueIn + EXPIRY_GRACE_MS);
  }

  /**
   * The safety net: settles every overdue order, in batches (one that fails waits for the next
   * run). Two passes: first every order without an open payment (the database alone decides,
   * milliseconds each), then those whose payment the gateway must be asked about — so a slow
   * gateway (seconds per answer, under its timeout) never holds the release of unpaid stock
   * behind the paying orders whose deadlines came first.
   */
  @OnJob(JobName.SweepExpiredReservations)
  async sweep(): Promise<number> {
    const unpaid = await this.sweepPass(false);
    return unpaid + (this.gatewayDown() ? 0 : await this.sweepPass(true));
  }

  private async sweepPass(askGateway: boolean): Promise<number> {
    let expired = 0;
    let gatewayDown = !askGateway;
    // left as they are this pass (not expired): excluded from the next batches. Expired ones leave
    // the query by themselves, so the list stays as short as what is left, however long the run.
    // (the gateway's pass starts behind the orders its last run was stopped by)
    const seen: string[] = askGateway ? this.trippedLastPass : [];
    const tripped: string[] = [];
    if (askGateway) this.trippedLastPass = tripped;
    const asked = new Set<string>();
    /** Settles one order; 'busy' (nothing noted) when every asker of this process is taken. */
    const settleOne = async (id: string): Promise<'done' | 'busy'> => {
      if (asked.has(id)) {
        seen.push(id); // reported expired, yet still due: never asked twice in one pass
        return 'done';
      }
      asked.add(id);
      try {
        if (await this.settle(id, { askGateway: !gatewayDown })) expired++;
        else seen.push(id); // left as it is (a payment open, a debit in flight): not asked again this pass
      } catch (err) {
        if (err instanceof AskersBusy) {
          asked.delete(id);
          return 'busy';
        }
        seen.push(id);
        this.logger.warn(`overdue order ${id} not settled yet: ${(err as Error).message}`);
        // one timeout per run, not one per order with a payment: the pass ends (its lanes stop)
        if (isGatewayUnavailable(err)) {
          if (askGateway) tripped.push(id);
          gatewayDown = true;
          this.noteGatewayDown();
        }
      }
      return 'done';
    };
    // The gateway's pass asks as many at once as this process may (GATEWAY_ASKERS): one at a
    // time, a sale's abandoned payments drained at half the rate the askers allow. A lane that
    // finds every asker taken (per-order jobs are asking) hands its order back and stops: the
    // other lanes go on with the askers they hold; when none is left, the rest waits for the next
    // run. The database's pass goes one by one (milliseconds each).
    const lanes = askGateway ? GATEWAY_ASKERS : 1;
    for (;;) {
      // (each pass reads only the orders it can settle: every paying order read and left by the
      // database's pass each minute, and every debit in flight by the gateway's, each one more to
      // exclude, made a gateway outage's backlog or a week of bank debits a quadratic pass)
      const due = await this.orders.findOverdueReservations(SWEEP_BATCH, seen, {
        payment: askGateway ? 'to-ask' : 'none-open',
      });
      const queue = [...due];
      await Promise.all(
        Array.from({ length: lanes }, async () => {
          for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
            // the gateway's pass ends once the gateway is down: the rest could only be read and
            // left (the database's pass settled what it can)
            if ((askGateway && gatewayDown) || (await settleOne(id)) === 'busy') {
              queue.unshift(id);
              return;
            }
          }
        }),
      );
      if (queue.length > 0) {
        // every asker taken by the per-order jobs, or the gateway down: the next run
        seen.push(...queue);
        break;
      }
      if (due.length < SWEEP_BATCH) break;
    }
    if (expired > 0) this.logger.log(`expired ${expired} overdue reservations`);
    return expired;
  }

  private gatewayDown(): boolean {
    return performance.now() < this.gatewayDownUntil;
  }

  private noteGatewayDown(): void {
    this.gatewayDownUntil = performance.now() + GATEWAY_DOWN_MEMO_MS;
  }
}
