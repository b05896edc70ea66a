import { inspect } from 'node:util';

export interface WaitForOptions<T> {
  /** When the value is good enough; by default, when it is neither undefined, null nor false. */
  until?: (value: T) => boolean;
  /** Give up after this long (default 15 s). */
  timeoutMs?: number;
  /** Time between probes (default 100 ms). */
  intervalMs?: number;
  /**
   * A probe that throws is normally a bug in the test and fails at once; with `retryErrors`
   * an error counts as "not yet" (e.g. a database that is coming back), and the last one is
   * named in the failure.
   */
  retryErrors?: boolean;
  /** More to say when it times out (e.g. the tail of a child process's output). */
  context?: () => string;
}

const settled = (v: unknown): boolean => v !== undefined && v !== null && v !== false;

/**
 * The one way tests wait for something that happens on its own (a job, a webhook, a process):
 * polls `probe` until `until(value)` holds and returns that value. On timeout it throws an
 * error naming `what`, how long it waited, the last value seen and the last error, so a failure
 * says what never happened instead of a bare assertion on a stale value.
 *
 * Not for proving that something did NOT happen: drain the outbox and the queues first
 * (test/support/drain.ts), then assert.
 */
export function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  options: WaitForOptions<T> & { until: (value: T) => boolean },
): Promise<T>;
export function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  options?: Omit<WaitForOptions<T>, 'until'>,
): Promise<Exclude<T, undefined | null | false>>;
export async function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  options: WaitForOptions<T> = {},
): Promise<T> {
  const { until = settled, timeoutMs = 15_000, intervalMs = 100, retryErrors = false } = options;
  const started = Date.now();
  let probes = 0;
  let last: { value: T } | undefined;
  let lastError: unknown;
  for (;;) {
    probes++;
    try {
      const value = await probe();
      last = { value };
      if (until(value)) return value;
    } catch (err) {
      if (!retryErrors) throw err;
      lastError = err;
    }
    if (Date.now() - started >= timeoutMs) break;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  const lines = [
    `waitFor: timed out after ${Date.now() - started} ms (${probes} probes) waiting for ${what}`,
  ];
  if (last)
    lines.push(
      `last value: ${inspect(last.value, { depth: 4, breakLength: 120 }).slice(0, 2_000)}`,
    );
  if (lastError !== undefined)
    lines.push(
      `last error: ${lastError instanceof Error ? lastError.message : inspect(lastError)}`,
    );
  const more = options.context?.();
  if (more) lines.push(more);
  throw new Error(lines.join('\n'));
}
