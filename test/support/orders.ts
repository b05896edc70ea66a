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
  return http.post('/v1/orders', items ? { items } : {}, { token: buyer.token, idempotencyKey: key });
}
