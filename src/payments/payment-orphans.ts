import { Inject, Injectable } from '@nestjs/common';
import { isCanonicalUuid } from '../common/ids';
import { OrderRepository } from '../orders/order.repository';
import { DisputeRepository } from './dispute.repository';
import {
  GatewayError,
  GatewayIntent,
  ListedDispute,
  ListedIntent,
  ListedRefund,
  MadeBetween,
  PAYMENT_GATEWAY,
  Page,
  PageRequest,
  PaymentGateway,
} from './payment-gateway';
import { PaymentRepository } from './payment.repository';
import { RefundRepository } from './refund.repository';
import { ShopIdentity } from './shop-identity';

/** What the provider lists that PaymentOrphans checks, a list of each. */
export type OrphanKind = 'intent' | 'refund' | 'dispute';
/** The order the lists are checked in: intents first (a refund's or dispute's is looked up among them). */
export const ORPHAN_KINDS: readonly OrphanKind[] = ['intent', 'refund', 'dispute'];

/** Something the provider holds of ours that the database does not account for. */
export interface Orphan {
  kind: OrphanKind;
  /** The provider's id. */
  id: string;
  /** When the provider made it (null: it did not say). */
  madeAt: Date | null;
  /** An intent whose order is not here that took no money yet: payable still. */
  payable?: true;
  /** One line for a person: what it is, what the database lacks, what to do. */
  line: string;
}

export interface OrphanReport {
  orphans: Orphan[];
  /**
   * How many more would be orphans, but of intents that name no shop (made before intents carried
   * this shop's id) and an order this database does not have: ours the restore lost, or another
   * deployment's on the account — no telling, so not listed; a person looks at them.
   */
  unsure: number;
  /** How many the provider listed since the time (ours or not). */
  listed: { intents: number; refunds: number; disputes: number };
  /** False when a list went past the bound: its oldest items were not looked at. */
  complete: boolean;
}

/** One page of a list, checked (PaymentOrphans#checkPage). */
export interface CheckedPage {
  orphans: Orphan[];
  /** How many of the page were not told ours or another's (OrphanReport's `unsure`). */
  unsure: number;
  /** How many the page listed (ours or not). */
  listed: number;
  /** The cursor of the list's next page; null: this was its last. */
  next: string | null;
}

/**
 * One check over pages of the lists: the intents listed or asked for so far (a refund's or a
 * dispute's intent is looked up among them before the provider is asked), and `settlingSince`:
 * an intent paid at or after it whose order is here is not judged — the webhook telling of its
 * payment may still be on its way (PaymentOrphanSweep; the command, run with every process
 * stopped, judges all) — and `reconcilingSince`: one paid at or after it whose payment here is still
 * pending is not judged either — the reconciliation settles such a payment from the provider once
 * it has waited RECONCILE_AFTER_MS (a webhook accepted but not processed, Stripe answering slowly):
 * raised before that, it was a false alarm that mended itself (diff review).
 */
export class OrphanCheck {
  readonly intents = new Map<string, GatewayIntent>();

  constructor(
    readonly settlingSince?: Date,
    readonly reconcilingSince?: Date,
  ) {}
}

/** Items a page of a list holds at most (Stripe's largest page). */
const PAGE_LIMIT = 100;

const at = (date: Date | null) => date?.toISOString() ?? 'at an unknown time';

/** Whose an intent is (PaymentOrphans#ownerOf): ours, no telling, or another's (null). */
type Owner = 'ours' | 'unsure' | null;

/**
 * After PostgreSQL was restored from a backup while the payment provider kept its newer state
 * (`npm run payments:orphans`), or when a webhook never came (PaymentOrphanSweep): the provider's
 * own lists are read — the intents, refunds and disputes it made within a time — and each of ours
 * (an intent whose metadata names an order as we write them and this shop, ShopIdentity; a refund
 * or dispute of such an intent) the database does not account for is reported:
 *
 * - an intent whose order is not here (paid: money taken for no order; unpaid: still payable);
 * - an intent that took money whose payment here is missing, or not `succeeded`;
 * - a refund (not failed) not recorded here, a dispute not recorded here.
 *
 * Another integration's objects on the same account are left alone, and so are another
 * deployment's of this app (another shop's id in the metadata): the operator is told to refund
 * or cancel what is listed — so an intent whose order is not here is listed only when it names
 * this shop; one naming no shop or another shop's is counted apart (`unsure`), not listed. Read-only: it writes
 * nothing, here or at the provider. The provider lists by creation time only: an intent made
 * before `since` and paid after it is not listed — its order's payment, pending here, is settled
 * by the reconciliation's stale-payment pass (PaymentFinalizer#reconcile). One piece of code for
 * the command and the sweep: the command reads whole lists (`find`), the sweep a few pages a run
 * (`checkPage`).
 */
@Injectable()
export class PaymentOrphans {
  constructor(
    private readonly payments: PaymentRepository,
    private readonly refunds: RefundRepository,
    private readonly disputes: DisputeRepository,
    private readonly orders: OrderRepository,
    @Inject(PAYMENT_GATEWAY) private readonly gateway: PaymentGateway,
    private readonly shop: ShopIdentity,
  ) {}

  /** What the provider made since `since` (at most `max` of each kind) that we lack. */
  async find(since: Date, max: number): Promise<OrphanReport> {
    const check = new OrphanCheck();
    const report: OrphanReport = {
      orphans: [],
      unsure: 0,
      listed: { intents: 0, refunds: 0, disputes: 0 },
      complete: true,
    };
    const counts = { intent: 'intents', refund: 'refunds', dispute: 'disputes' } as const;
    for (const kind of ORPHAN_KINDS) {
      let listed = 0;
      let after: string | undefined;
      for (;;) {
        const limit = Math.min(PAGE_LIMIT, max - listed);
        const page = await this.checkPage(kind, { from: since }, { after, limit }, check);
        listed += page.listed;
        report.orphans.push(...page.orphans);
        report.unsure += page.unsure;
        if (page.next === null) break;
        if (listed >= max) {
          report.complete = false; // more were left past the bound
          break;
        }
        after = page.next;
      }
      report.listed[counts[kind]] = listed;
    }
    return report;
  }

  /**
   * One page of the provider's list of `kind` made within `made`, each item checked: the orphans
   * among them (in the list's order, newest first), how many were not told ours, and the cursor of
   * the next page. Whatever fails — the provider, the database — is thrown: the page is not checked.
   */
  async checkPage(
    kind: OrphanKind,
    made: MadeBetween,
    page: PageRequest,
    check: OrphanCheck,
  ): Promise<CheckedPage> {
    switch (kind) {
      case 'intent':
        return this.checked(await this.gateway.listIntentsMade(made, page), (intent) => {
          check.intents.set(intent.id, intent);
          return this.ofIntent(intent, check);
        });
      case 'refund':
        return this.checked(await this.gateway.listRefundsMade(made, page), (refund) =>
          this.ofRefund(refund, check),
        );
      case 'dispute':
        return this.checked(await this.gateway.listDisputesMade(made, page), (dispute) =>
          this.ofDispute(dispute, check),
        );
    }
  }

  private async checked<T>(
    page: Page<T>,
    judge: (item: T) => Promise<Orphan | 'unsure' | null>,
  ): Promise<CheckedPage> {
    const checked: CheckedPage = {
      orphans: [],
      unsure: 0,
      listed: page.items.length,
      next: page.next,
    };
    for (const item of page.items) {
      const found = await judge(item);
      if (found === 'unsure') checked.unsure++;
      else if (found) checked.orphans.push(found);
    }
    return checked;
  }

  private async ofIntent(
    intent: ListedIntent,
    check: OrphanCheck,
  ): Promise<Orphan | 'unsure' | null> {
    if (intent.status === 'canceled') return null;
    const owner = await this.ownerOf(intent);
    if (owner !== 'ours') return owner;
    const paid = intent.status === 'succeeded' || intent.capturable === true;
    const what =
      `intent ${intent.id} (${intent.providerStatus}, ${intent.amount} ${intent.currency}, made ` +
      `${at(intent.createdAt)}) of order ${intent.orderId}`;
    const orphan = (line: string): Orphan => ({
      kind: 'intent',
      id: intent.id,
      madeAt: intent.createdAt,
      line,
    });
    const order = await this.orders.statusOf(intent.orderId);
    if (!order) {
      return paid
        ? orphan(
            `${what}: no such order here — the money was taken for it: restore the order, or refund it at the payment provider`,
          )
        : {
            ...orphan(
              `${what}: no such order here — not paid, but payable still: cancel it at the payment provider`,
            ),
            payable: true,
          };
    }
    if (!paid) return null;
    // paid lately: the webhook telling of it, and the payment it records, may be on their way
    if (check.settlingSince && intent.paidAt && intent.paidAt >= check.settlingSince) return null;
    const payment = await this.payments.findByIntent(intent.id);
    if (!payment) {
      return orphan(
        `${what}: the order is ${order}, but no payment here is this intent — the money was taken: record the payment, or refund it at the payment provider`,
      );
    }
    if (payment.status !== 'succeeded') {
      if (check.reconcilingSince && intent.paidAt && intent.paidAt >= check.reconcilingSince)
        return null;
      return orphan(
        `${what}: ${intent.providerStatus} at the payment provider, but its payment is ${payment.status} here and the order ${order}`,
      );
    }
    return null;
  }

  private async ofRefund(
    refund: ListedRefund,
    check: OrphanCheck,
  ): Promise<Orphan | 'unsure' | null> {
    if (refund.status === 'failed') return null; // no money moved
    // of a charge made without an intent (the Charges API): not ours, who make intents — and an
    // intent asked for by no id is Stripe's list of them
    if (!refund.intentId) return null;
    if (await this.refunds.findByProviderId(refund.id)) return null;
    // ours, its provider id not attached yet (the answer to its call was lost)
    if (isCanonicalUuid(refund.refundId) && (await this.refunds.findById(refund.refundId)))
      return null;
    const what =
      `refund ${refund.id} (${refund.status}, ${refund.amount}${refund.currency ? ` ${refund.currency}` : ''}, ` +
      `made ${at(refund.createdAt)}) of intent ${refund.intentId}`;
    const orphan = (line: string): Orphan => ({
      kind: 'refund',
      id: refund.id,
      madeAt: refund.createdAt,
      line,
    });
    const payment = await this.payments.findByIntent(refund.intentId);
    if (payment) {
      return orphan(
        `${what}, the payment of order ${payment.orderId}: not recorded here — the order does not count it as refunded`,
      );
    }
    const intent = await this.intentOf(refund.intentId, check);
    if (!intent) return null;
    const owner = await this.ownerOf(intent);
    if (owner !== 'ours') return owner; // another's, or no telling
    return orphan(
      `${what} of order ${intent.orderId}: neither the payment nor the refund is recorded here`,
    );
  }

  private async ofDispute(
    dispute: ListedDispute,
    check: OrphanCheck,
  ): Promise<Orphan | 'unsure' | null> {
    if (!dispute.intentId || (await this.disputes.exists(dispute.id))) return null;
    const what =
      `dispute ${dispute.id} (${dispute.status}, ${dispute.amount} ${dispute.currency}, opened ` +
      `${at(dispute.createdAt)}, evidence due by ${dispute.evidenceDueBy?.toISOString() ?? 'no deadline given'}) ` +
      `of intent ${dispute.intentId}`;
    const orphan = (line: string): Orphan => ({
      kind: 'dispute',
      id: dispute.id,
      madeAt: dispute.createdAt,
      line,
    });
    const payment = await this.payments.findByIntent(dispute.intentId);
    if (payment) {
      return orphan(
        `${what}, the payment of order ${payment.orderId}: not recorded here, so the order is not held from fulfilment — answer it at the payment provider`,
      );
    }
    const intent = await this.intentOf(dispute.intentId, check);
    if (!intent) return null;
    const owner = await this.ownerOf(intent);
    if (owner !== 'ours') return owner; // another's, or no telling
    return orphan(
      `${what} of order ${intent.orderId}: neither the payment nor the dispute is recorded here — answer it at the payment provider`,
    );
  }

  /**
   * Whose the intent is. Ours: it names an order as we write them that this database has (a random
   * uuid: ours, whatever shop it names — a database restored from before intents named the shop
   * has another id now, unless this database is a copy of another's), or one it does not have and
   * this shop. `unsure`: an order this database does not have and no shop or another's — ours the
   * restore lost (made before intents carried the shop, or before a restore from a backup older
   * than shop_identity gave the database a new id), or another deployment's (a second shop, a
   * staging sharing the account), no telling. Null: another integration's (no such order id).
   */
  private async ownerOf(intent: GatewayIntent): Promise<Owner> {
    if (!isCanonicalUuid(intent.orderId)) return null;
    if (await this.orders.statusOf(intent.orderId)) return 'ours';
    return intent.shop === (await this.shop.id()) ? 'ours' : 'unsure';
  }

  /**
   * The intent (from the lists read, else asked of the provider); null for one the provider does
   * not know.
   */
  private async intentOf(intentId: string, check: OrphanCheck): Promise<GatewayIntent | null> {
    let intent = check.intents.get(intentId);
    if (!intent) {
      try {
        intent = await this.gateway.retrieveIntent(intentId);
      } catch (err) {
        if (err instanceof GatewayError && err.kind === 'rejected') return null;
        throw err;
      }
      check.intents.set(intentId, intent);
    }
    return intent;
  }
}
