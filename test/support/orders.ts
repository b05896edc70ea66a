import { registerCustomer } from './auth';
import type { HttpClient, HttpResponse } from './http';
import { newKey } from './fixtures';

export interface Buyer {
  userId: string;
  token: string;
}

/** Registers `n` customers over HTTP, a few at a time (password hashing is CPU-bound). */
export async function buyers(http: HttpClient, n: number, parallel = 8): Promise<Buyer[]> {
  const out: Buyer[] = [];
  for (let i = 0; i < n; i += parallel) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(parallel, n - i) }, () => registerCustomer(http)),
    );
    out.push(...batch.map((b) => ({ userId: b.user.id, token: b.accessToken })));
  }
  return out;
}

export function placeOrder(
  http: HttpClient,
  buyer: Buyer,
  items: { productId: string; quantity: number }[] | undefined,
  key: string = newKey(),
): Promise<HttpResponse> {
  return http.post('/v1/orders', items ? { items } : {}, {
    token: buyer.token,
    idempotencyKey: key,
  });
}

/**
 * Starts the order's payment and confirms it with the development gateway (the customer's
 * payment app), as the buyer; asserts both answers.
 */
export async function payOrder(
  http: HttpClient,
  buyer: Buyer,
  orderId: string,
  outcome: 'succeeded' | 'failed' = 'succeeded',
): Promise<void> {
  const intent = await http.post(
    `/v1/orders/${orderId}/payment`,
    {},
    { token: buyer.token, idempotencyKey: newKey() },
  );
  if (intent.status !== 201)
    throw new Error(`payment of ${orderId}: ${intent.status} ${JSON.stringify(intent.body)}`);
  const confirm = await http.post(
    `/v1/dev/payment-intents/${intent.body.paymentIntentId}/confirm`,
    { outcome },
    { token: buyer.token },
  );
  if (confirm.status !== 200)
    throw new Error(`confirming ${orderId}: ${confirm.status} ${JSON.stringify(confirm.body)}`);
}
