import { randomUUID } from 'node:crypto';

/** Checkout load for bench:flash-sale, bench:checkout-cpu and the drills' scale bench. */

/** Registers `n` customers through the API, 16 at a time; their access tokens. */
export async function registerBuyers(api: string, n: number): Promise<string[]> {
  const tokens: string[] = [];
  for (let i = 0; i < n; i += 16) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(16, n - i) }, async () => {
        const res = await fetch(`${api}/v1/auth/register`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            email: `buyer-${randomUUID()}@bench.local`,
            password: 'bench-password-1',
            name: 'Bench buyer',
          }),
        });
        if (res.status !== 201)
          throw new Error(`register failed: ${res.status} ${await res.text()}`);
        return ((await res.json()) as { accessToken: string }).accessToken;
      }),
    );
    tokens.push(...batch);
  }
  return tokens;
}

/**
 * autocannon's request list for checkouts: `POST path` (default /v1/orders) of one unit of
 * `pickProduct()`, as a random buyer of `tokens`, with a fresh Idempotency-Key each time.
 */
export function checkoutRequests(
  tokens: string[],
  pickProduct: () => string,
  path = '/v1/orders',
): Record<string, unknown>[] {
  return [
    {
      method: 'POST',
      path,
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

/**
 * One of `items` at random, anew at each call: the SKU of each checkout in the 64-SKU runs — the
 * API's, and the Node-driven baseline's transactions alike (pgbench's scripts are picked at
 * random too). The baseline once gave each of its workers a SKU of its own, which the API's
 * random buyers never had: no two transactions ever waited on one row lock.
 */
export function pickAtRandom<T>(items: readonly T[], random = Math.random): () => T {
  return () => items[Math.floor(random() * items.length)];
}
