/** The rejection of withTimeout: `work` did not settle in time (its outcome is unknown). */
export class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

/**
 * `work`, or a rejection (a TimeoutError) when it has not settled within `ms` (`${what} within ${ms} ms`). The
 * timer never keeps the process alive, and is cleared as soon as `work` settles.
 */
export function withTimeout<T>(work: Promise<T>, ms: number, what = 'no answer'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
