/**
 * Domain events written to the outbox in the same transaction as the change they announce,
 * and what each becomes once relayed: zero or more BullMQ jobs with deterministic ids.
 */
export interface OutboxEvents {
  'order.created': { orderId: string; reservationExpiresAt: string };
  'order.cancelled': { orderId: string; reason: string };
  'order.paid': { orderId: string };
  'order.confirmed': { orderId: string };
  'order.fulfilled': { orderId: string };
  'order.refunded': { orderId: string; refundId: string };
  /**
   * The provider reversed a refund it had reported as succeeded (the customer's bank returned
   * it): the customer, told "refunded" by email, is told it did not reach them.
   */
  'order.refund-reversed': { orderId: string; refundId: string };
  /** A refund was recorded as pending: the worker makes sure it settles (payments.settle-refund). */
  'refund.requested': { orderId: string; refundId: string };
  /** A verified provider event waits in the webhook inbox for processing. */
  'payment.event': { eventId: string };
  /**
   * A product was taken off sale (a recall, a price mistake): the unpaid orders holding its units
   * that no payment has begun for are cancelled (orders.release-withdrawn).
   */
  'product.withdrawn': { productId: string };
}

export type OutboxTopic = keyof OutboxEvents;

/** Every topic this build knows (the record makes the compiler hold it to OutboxEvents). */
const KNOWN: Record<OutboxTopic, true> = {
  'order.created': true,
  'order.cancelled': true,
  'order.paid': true,
  'order.confirmed': true,
  'order.fulfilled': true,
  'order.refunded': true,
  'order.refund-reversed': true,
  'refund.requested': true,
  'payment.event': true,
  'product.withdrawn': true,
};
export const OUTBOX_TOPICS = Object.keys(KNOWN) as OutboxTopic[];

export interface OutboxRow {
  id: string;
  topic: OutboxTopic;
  aggregateId: string | null;
  payload: Record<string, unknown>;
  attempts: number;
  /** How long ago the row was written, on the database's clock (as claimed). */
  ageMs: number;
}
