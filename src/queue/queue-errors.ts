import type { LoggerService } from '@nestjs/common';
import { RateLimitedLog } from '../common/logging/rate-limited-log';

/** How often one queue's one error message is logged at most (the rest are counted). */
const QUEUE_ERROR_WINDOW_MS = 10_000;

/**
 * One limiter for every error line of the queues and their workers in this process: the same
 * line (queue, worker or queue, message) at most once per QUEUE_ERROR_WINDOW_MS.
 */
const queueErrors = new RateLimitedLog(QUEUE_ERROR_WINDOW_MS);

/**
 * Logs a BullMQ error as one warning line, `<queue> <source>: <message>` — the first at once,
 * then at most one per QUEUE_ERROR_WINDOW_MS saying how many more there were. A worker's fetch
 * loop retries a refused command with no pause (Redis at `maxmemory` under `noeviction`: thousands
 * of lines a second), and a queue's connection fails again at each reconnect.
 */
export function logQueueError(
  logger: Pick<LoggerService, 'warn'>,
  queue: string,
  source: 'worker' | 'queue',
  err: unknown,
): void {
  const line = `${queue} ${source}: ${err instanceof Error ? err.message : String(err)}`;
  // keyed with its numbers taken out: a job's id in a message (`could not renew lock for job
  // 4711`) made each job's line a kind of its own
  queueErrors.write(line.replace(/\d+/g, '#'), line, (l) => {
    logger.warn(l);
  });
}
