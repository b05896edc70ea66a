/** The payment provider, behind a port: Stripe in production, a simulated one in development. */
export const PAYMENT_GATEWAY = Symbol('PAYMENT_GATEWAY');

export type IntentStatus = 'requires_payment_method' | 'processing' | 'succeeded' | 'canceled';

export interface GatewayIntent {
  id: string;
  clientSecret: string;
  status: IntentStatus;
  amount: number;
  currency: string;
  orderId: string;
  /** Set when the last attempt to pay failed (the intent can still be paid again). */
  lastError?: string;
}

export interface PaymentGateway {
  readonly provider: 'stripe' | 'simulated';
  /** Creates the intent, or returns the one already made under `idempotencyKey`. */
  createIntent(input: {
    orderId: string;
    amount: number;
    currency: string;
    idempotencyKey: string;
  }): Promise<GatewayIntent>;
  retrieveIntent(id: string): Promise<GatewayIntent>;
}
