/**
 * The order lifecycle as a declarative table. Pure: no I/O. The repository persists a
 * transition with `UPDATE … WHERE status = ANY(:from)`, so two racers can never both win.
 */
export const ORDER_STATUSES = [
  'CREATED',
  'INVENTORY_RESERVED',
  'PAYMENT_PENDING',
  'PAID',
  'CONFIRMED',
  'FULFILLED',
  'CANCELLED',
  'REFUNDED',
  'PARTIALLY_REFUNDED',
] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export const CANCELLATION_REASONS = [
  'CUSTOMER_REQUESTED',
  'PAYMENT_FAILED',
  'RESERVATION_EXPIRED',
] as const;
export type CancellationReason = (typeof CANCELLATION_REASONS)[number];

/**
 * Who cancelled an order (its history's actor) when a product of it was taken off sale before its
 * payment began (PaymentsService#start): the reason is PAYMENT_FAILED — the contract's reasons are
 * three — and this actor tells the cancellation email and the purchase caps it was the shop's doing.
 */
export const PRODUCT_WITHDRAWN_ACTOR = 'system:product-withdrawn';

/**
 * Who cancelled an order whose total the payment provider refused to charge as such (below its
 * smallest charge, above its largest: PaymentsService#start) — never payable, cancelled at its
 * first payment start. The reason is PAYMENT_FAILED; the order is marked as a payment start that
 * failed on the shop's side, so the purchase caps never count it abandoned.
 */
export const UNCHARGEABLE_TOTAL_ACTOR = 'system:unchargeable-total';

/** Every allowed move. Nothing else exists. */
export const ORDER_TRANSITIONS: Readonly<Record<OrderStatus, readonly OrderStatus[]>> = {
  CREATED: ['INVENTORY_RESERVED', 'CANCELLED'],
  INVENTORY_RESERVED: ['PAYMENT_PENDING', 'CANCELLED'],
  PAYMENT_PENDING: ['PAID', 'CANCELLED'],
  PAID: ['CONFIRMED', 'REFUNDED', 'PARTIALLY_REFUNDED'],
  CONFIRMED: ['FULFILLED', 'REFUNDED', 'PARTIALLY_REFUNDED'],
  FULFILLED: ['REFUNDED', 'PARTIALLY_REFUNDED'],
  PARTIALLY_REFUNDED: ['PARTIALLY_REFUNDED', 'REFUNDED'],
  CANCELLED: [],
  REFUNDED: [],
};

/** States that still hold reserved stock (released on cancel, committed on payment). */
export const HOLDS_RESERVATION: readonly OrderStatus[] = ['INVENTORY_RESERVED', 'PAYMENT_PENDING'];

/** Statuses a customer or the system may cancel from (before PAID). */
export const CANCELLABLE: readonly OrderStatus[] = [
  'CREATED',
  'INVENTORY_RESERVED',
  'PAYMENT_PENDING',
];

/** Statuses that count as paid (for reviews, popularity, recommendations). */
export const PAID_STATUSES: readonly OrderStatus[] = [
  'PAID',
  'CONFIRMED',
  'FULFILLED',
  'PARTIALLY_REFUNDED',
];

export function canTransition(from: OrderStatus, to: OrderStatus): boolean {
  return ORDER_TRANSITIONS[from].includes(to);
}

export function isTerminal(status: OrderStatus): boolean {
  return ORDER_TRANSITIONS[status].length === 0;
}

/** The statuses from which `to` can be reached in one step: the guard of the UPDATE. */
export function sourcesOf(to: OrderStatus): OrderStatus[] {
  return ORDER_STATUSES.filter((from) => canTransition(from, to));
}

/** Whether a cancellation reason is required for the target state (only for CANCELLED). */
export function requiresReason(to: OrderStatus): boolean {
  return to === 'CANCELLED';
}
