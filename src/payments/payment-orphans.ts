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
  PAYMENT_GATEWAY,
  PaymentGateway,
} from './payment-gateway';
import { PaymentRepository } from './payment.repository';
import { RefundRepository } from './refund.repository';
import { ShopIdentity } from './shop-identity';

/** Something the provider holds of ours that the database does not account for. */
export interface Orphan {
  kind: 'intent' | 'refund' | 'dispute';
  /** The provider's id. */
  id: string;
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

const at = (date: Date | null) => date?.toISOString() ?? 'at an unknown time';

/** Whose an intent is (PaymentOrphans#ownerOf): ours, no telling, or another's (null). */
type Owner = 'ours' | 'unsure' | null;

/**
 * After PostgreSQL was restored from a backup while the payment provider kept its newer state
 * (`npm run payments:orphans`): the webhook events of the time between are gone with the
 * database, and the provider never sends again an event it was answered 200 for. So the provider's
 * own lists are read — the intents, refunds and disputes it made since a time — and each of ours
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
 * by the reconciliation's stale-payment pass (PaymentFinalizer#reconcile).
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
    const intents = await this.gateway.listIntentsSince(since, max);
    const refunds = await this.gateway.listRefundsSince(since, max);
    const disputes = await this.gateway.listDisputesSince(since, max);
    const listed = new Map<string, GatewayIntent>(intents.items.map((i) => [i.id, i]));
    const orphans: Orphan[] = [];
    let unsure = 0;
    const note = (orphan: Orphan | 'unsure' | null) => {
      if (orphan === 'unsure') unsure++;
      else if (orphan) orphans.push(orphan);
    };
    for (const intent of intents.items) note(await this.ofIntent(intent));
    for (const refund of refunds.items) note(await this.ofRefund(refund, listed));
    for (const dispute of disputes.items) note(await this.ofDispute(dispute, listed));
    return {
      orphans,
      unsure,
      listed: {
        intents: intents.items.length,
        refunds: refunds.items.length,
        disputes: disputes.items.length,
      },
      complete: intents.complete && refunds.complete && disputes.complete,
    };
  }

  private async ofIntent(intent: ListedIntent): Promise<Orphan | 'unsure' | null> {
    if (intent.status === 'canceled') return null;
    const owner = await this.ownerOf(intent);
    if (owner !== 'ours') return owner;
    const paid = intent.status === 'succeeded' || intent.capturable === true;
    const what =
      `intent ${intent.id} (${intent.providerStatus}, ${intent.amount} ${intent.currency}, made ` +
      `${at(intent.createdAt)}) of order ${intent.orderId}`;
    const orphan = (line: string): Orphan => ({ kind: 'intent', id: intent.id, line });
    const order = await this.orders.statusOf(intent.orderId);
    if (!order) {
      return orphan(
        paid
          ? `${what}: no such order here — the money was taken for it: restore the order, or refund it at the payment provider`
          : `${what}: no such order here — not paid, but payable still: cancel it at the payment provider`,
      );
    }
    if (!paid) return null;
    const payment = await this.payments.findByIntent(intent.id);
    if (!payment) {
      return orphan(
        `${what}: the order is ${order}, but no payment here is this intent — the money was taken: record the payment, or refund it at the payment provider`,
      );
    }
    if (payment.status !== 'succeeded') {
      return orphan(
        `${what}: ${intent.providerStatus} at the payment provider, but its payment is ${payment.status} here and the order ${order}`,
      );
    }
    return null;
  }

  private async ofRefund(
    refund: ListedRefund,
    listed: Map<string, GatewayIntent>,
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
    const orphan = (line: string): Orphan => ({ kind: 'refund', id: refund.id, line });
    const payment = await this.payments.findByIntent(refund.intentId);
    if (payment) {
      return orphan(
        `${what}, the payment of order ${payment.orderId}: not recorded here — the order does not count it as refunded`,
      );
    }
    const intent = await this.intentOf(refund.intentId, listed);
    if (!intent) return null;
    const owner = await this.ownerOf(intent);
    if (owner !== 'ours') return owner; // another's, or no telling
    return orphan(
      `${what} of order ${intent.orderId}: neither the payment nor the refund is recorded here`,
    );
  }

  private async ofDispute(
    dispute: ListedDispute,
    listed: Map<string, GatewayIntent>,
  ): Promise<Orphan | 'unsure' | null> {
    if (!dispute.intentId || (await this.disputes.exists(dispute.id))) return null;
    const what =
      `dispute ${dispute.id} (${dispute.status}, ${dispute.amount} ${dispute.currency}, opened ` +
      `${at(dispute.createdAt)}, evidence due by ${dispute.evidenceDueBy?.toISOString() ?? 'no deadline given'}) ` +
      `of intent ${dispute.intentId}`;
    const orphan = (line: string): Orphan => ({ kind: 'dispute', id: dispute.id, line });
    const payment = await this.payments.findByIntent(dispute.intentId);
    if (payment) {
      return orphan(
        `${what}, the payment of order ${payment.orderId}: not recorded here, so the order is not held from fulfilment — answer it at the payment provider`,
      );
    }
    const intent = await this.intentOf(dispute.intentId, listed);
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
   * The intent (from the list read, else asked of the provider); null for one the provider does
   * not know.
   */
  private async intentOf(
    intentId: string,
    listed: Map<string, GatewayIntent>,
  ): Promise<GatewayIntent | null> {
    let intent = listed.get(intentId);
    if (!intent) {
      try {
        intent = await this.gateway.retrieveIntent(intentId);
      } catch (err) {
        if (err instanceof GatewayError && err.kind === 'rejected') return null;
        throw err;
      }
      listed.set(intentId, intent);
    }
    return intent;
  }
}
