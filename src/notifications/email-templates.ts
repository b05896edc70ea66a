import type { CancellationReason } from '../orders/order-state-machine';
import type { Order } from '../orders/order.model';
import type { EmailKind, RefundEmailKind } from './email-job';
import { oneLine } from '../common/http/single-line';

/**
 * The text and HTML of every email. Pure: no I/O, no clock; everything arrives as arguments.
 * Money is integer minor units plus an ISO 4217 code and is formatted without floats.
 */

export type EmailOrder = Pick<
  Order,
  'id' | 'currency' | 'totalAmount' | 'items' | 'cancellationReason'
> & {
  /** Cancelled because a product of it was taken off sale before its payment began. */
  withdrawnFromSale?: boolean;
  /** Cancelled because the payment provider refused its total as such (too small, too large). */
  unchargeableTotal?: boolean;
};

/**
 * What an email says: the order (its lines are the shop's product names) and, for a refund, its
 * amount — nothing a customer typed. Not the account's name: accounts are opened without proof
 * of the address, so whoever opens one with someone's address and a name such as "your card was
 * declined, pay at https://…" would have the shop mail that text, from its own address, to them.
 */
export type EmailContext =
  | { kind: Exclude<EmailKind, RefundEmailKind>; order: EmailOrder }
  | {
      kind: RefundEmailKind;
      order: EmailOrder;
      refund: { amount: number; currency: string };
    };

export interface EmailContent {
  subject: string;
  text: string;
  html: string;
}

/**
 * ISO 4217 minor-unit exponents other than 2 — the unit amounts are counted in (API.md). Not
 * ICU's display digits, which round some two-decimal currencies to whole units (IDR, PKR, HUF,
 * IQD…) and differ between Node releases: a receipt must say what was charged.
 */
// prettier-ignore
const ISO_4217_EXPONENTS: Readonly<Record<string, number>> = {
  // no minor unit
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0,
  UYI: 0, VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0,
  // thousandths
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
  // ten-thousandths
  CLF: 4, UYW: 4,
};

/** Digits after the decimal point of a currency's minor unit (ISO 4217; 2 for all others). */
function minorDigits(currency: string): number {
  return ISO_4217_EXPONENTS[currency.toUpperCase()] ?? 2;
}

/** 123450, 'INR' → 'INR 1,234.50'; 1500, 'JPY' → 'JPY 1,500'. Exact for any safe integer. */
export function formatMoney(amount: number, currency: string): string {
  if (!Number.isSafeInteger(amount)) throw new Error(`money must be an integer: ${amount}`);
  const digits = minorDigits(currency);
  const abs = BigInt(Math.abs(amount));
  const unit = 10n ** BigInt(digits);
  const whole = (abs / unit).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const fraction = digits > 0 ? `.${(abs % unit).toString().padStart(digits, '0')}` : '';
  return `${currency} ${amount < 0 ? '-' : ''}${whole}${fraction}`;
}

export function escapeHtml(value: string): string {
  return value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** The short order reference customers see (the full id is in the body too). */
function orderReference(orderId: string): string {
  return orderId.slice(0, 8).toUpperCase();
}

/** Why an order was cancelled, in words a customer understands. */
export function cancellationSentence(
  reference: string,
  reason: CancellationReason | null,
  withdrawnFromSale = false,
  unchargeableTotal = false,
): string {
  if (reason === null) return `Your order ${reference} has been cancelled.`;
  if (unchargeableTotal)
    // (its reason is PAYMENT_FAILED, the contract's nearest: the provider refused the amount
    // before any payment was tried, none taken)
    return (
      `Your order ${reference} has been cancelled because its total is an amount our payment ` +
      'provider cannot charge. Nothing has been charged for it.'
    );
  if (withdrawnFromSale)
    // (its reason is PAYMENT_FAILED, the contract's nearest: no payment was tried, none taken)
    return (
      `Your order ${reference} has been cancelled because an item in it was withdrawn from sale ` +
      'before its payment began. Nothing has been charged for it.'
    );
  switch (reason) {
    case 'CUSTOMER_REQUESTED':
      return `Your order ${reference} has been cancelled, as you requested.`;
    case 'PAYMENT_FAILED':
      // (declined — or taken for another amount than the order's, then refunded: "did not go
      // through" told a customer just charged that nothing was taken)
      return (
        `Your order ${reference} has been cancelled because we could not accept its payment. ` +
        'If you were charged, the full amount is refunded to you.'
      );
    case 'RESERVATION_EXPIRED':
      return (
        `Your order ${reference} has been cancelled because the payment was not completed in time, ` +
        'so the items we were holding for you have been released.'
      );
  }
}

function subjectAndIntro(ctx: EmailContext): { subject: string; intro: string } {
  const ref = orderReference(ctx.order.id);
  const total = formatMoney(ctx.order.totalAmount, ctx.order.currency);
  switch (ctx.kind) {
    case 'order_confirmation':
      return {
        subject: `Order ${ref} confirmed`,
        intro: `Your order ${ref} is confirmed and we are getting it ready.`,
      };
    case 'payment_receipt':
      return {
        subject: `Receipt for order ${ref}`,
        intro: `We have received your payment of ${total} for order ${ref}. This email is your receipt.`,
      };
    case 'cancellation':
      return {
        subject: `Order ${ref} cancelled`,
        intro: cancellationSentence(
          ref,
          ctx.order.cancellationReason,
          ctx.order.withdrawnFromSale,
          ctx.order.unchargeableTotal,
        ),
      };
    case 'refund': {
      const amount = formatMoney(ctx.refund.amount, ctx.refund.currency);
      return {
        subject: `Refund of ${amount} for order ${ref}`,
        intro:
          `We have refunded ${amount} for order ${ref}. ` +
          'Depending on your bank, it can take a few days to appear on your statement.',
      };
    }
    case 'refund_reversed': {
      const amount = formatMoney(ctx.refund.amount, ctx.refund.currency);
      return {
        subject: `Refund of ${amount} for order ${ref} did not reach you`,
        intro:
          `The refund of ${amount} for order ${ref} that we told you about could not be ` +
          'completed: the payment provider returned it to us, so it did not reach you. ' +
          'We have been alerted and will refund you again.',
      };
    }
  }
}

/** Subject, plain text and HTML of one email, with the order's lines and total. */
export function renderEmail(ctx: EmailContext): EmailContent {
  const { subject, intro } = subjectAndIntro(ctx);
  const { order } = ctx;
  const money = (amount: number) => formatMoney(amount, order.currency);
  // product names on one line in both parts (ones stored before SingleLine may hold breaks or direction controls)
  const lines = order.items.map((l) => ({
    name: oneLine(l.name),
    quantity: l.quantity,
    unit: money(l.unitPriceAmount),
    total: money(l.lineTotalAmount),
  }));
  const total = money(order.totalAmount);

  const text = [
    'Hello,',
    '',
    intro,
    '',
    `Order ${order.id}`,
    '',
    ...lines.map((l) => `  ${l.quantity} x ${l.name} @ ${l.unit} = ${l.total}`),
    '',
    `Total: ${total}`,
    '',
    'Thank you for shopping with us.',
    '',
  ].join('\n');

  const e = escapeHtml;
  const cell = 'style="padding:4px 8px;text-align:right"';
  const html = [
    '<!doctype html>',
    `<html><head><meta charset="utf-8"><title>${e(subject)}</title></head><body>`,
    '<p>Hello,</p>',
    `<p>${e(intro)}</p>`,
    `<p>Order <code>${e(order.id)}</code></p>`,
    '<table style="border-collapse:collapse">',
    '<thead><tr><th style="padding:4px 8px;text-align:left">Item</th>' +
      `<th ${cell}>Qty</th><th ${cell}>Unit price</th><th ${cell}>Line total</th></tr></thead>`,
    '<tbody>',
    ...lines.map(
      (l) =>
        `<tr><td style="padding:4px 8px">${e(l.name)}</td><td ${cell}>${l.quantity}</td>` +
        `<td ${cell}>${e(l.unit)}</td><td ${cell}>${e(l.total)}</td></tr>`,
    ),
    '</tbody>',
    `<tfoot><tr><th colspan="3" ${cell}>Total</th><th ${cell}>${e(total)}</th></tr></tfoot>`,
    '</table>',
    '<p>Thank you for shopping with us.</p>',
    '</body></html>',
    '',
  ].join('\n');

  return { subject, text, html };
}
