/**
 * How long the boot checks (the prefix claim, the eviction policy, the database index) wait for
 * the shared client's connection before they ask (whenConnected: one allowance for all of them —
 * a Redis away at boot delays it once): past it, Redis counts as not answering.
 */
export const BOOT_CONNECT_WAIT_MS = 3_000;

/**
 * `work`, or a rejection when it has not settled within `ms` — common/with-timeout.ts's, which
 * src/redis may not import (the layer rule).
 */
export function answerWithin<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
