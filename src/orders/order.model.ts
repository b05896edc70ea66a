import type { CancellationReason, OrderStatus } from './order-state-machine';

/** An order as the domain sees it (one aggregate: the order, its lines and its history). */
export interface OrderLine {
  productId: string;
  sku: string;
  name: string;
  quantity: number;
  unitPriceAmount: number;
  lineTotalAmount: number;
}

export interface StatusChange {
  from: OrderStatus | null;
  to: OrderStatus;
  reason: string | null;
  actor: string;
  at: Date;
}

export interface Order {
  id: string;
  userId: string;
  status: OrderStatus;
  cancellationReason: CancellationReason | null;
  currency: string;
  totalAmount: number;
  refundedAmount: number;
  reservationExpiresAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
  /**
   * Its draw of the `sale_epochs` sequence as it was inserted (orders placed before there were
   * any: null), read back from the database — not on an order this process has just built.
   */
  placedEpoch?: string | null;
  items: OrderLine[];
}

export interface OrderWithHistory extends Order {
  history: StatusChange[];
}

/** What the order's detail shows of its payment (read from the payments context). */
export interface PaymentSummary {
  provider: string;
  paymentIntentId: string;
  status: string;
  amount: number;
  /** The payment's own (its amounts' and its refunds'): the order's unless the intent was changed at the provider. */
  currency: string;
  refundedAmount: number;
  refunds: { id: string; amount: number; status: string; reason: string; createdAt: Date }[];
}
