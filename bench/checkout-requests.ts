import { randomUUID } from 'node:crypto';

/**
 * autocannon's request list for checkouts: `POST /v1/orders` of one unit of `pickProduct()`, as a
 * random buyer of `tokens`, with a fresh Idempotency-Key each time (bench:flash-sale,
 * bench:checkout-cpu, the drills' scale bench).
 */
export function checkoutRequests(
  tokens: string[],
  pickProduct: () => string,
): Record<string, unknown>[] {
  return [
    {
      method: 'POST',
      path: '/v1/orders',
      setupRequest: (req: Record<string, unknown>) => ({
        ...req,
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${tokens[Math.floor(Math.random() * tokens.length)]}`,
          'idempotency-key': randomUUID(),
        },
        body: JSON.stringify({ items: [{ productId: pickProduct(), quantity: 1 }] }),
      }),
    },
  ];
}
