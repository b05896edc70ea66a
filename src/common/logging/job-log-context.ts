import type { Job } from 'bullmq';
import { Store, storage } from 'nestjs-pino/storage';
import type { Logger as PinoBaseLogger } from 'pino';

let base: (() => PinoBaseLogger) | undefined;

/**
 * The logger jobs are bound from: the process's out-of-request logger, read per job. Set by
 * LoggingModule when the process (API or worker) builds its logger.
 */
export function setJobLogBase(logger: () => PinoBaseLogger): void {
  base = logger;
}

/**
 * Runs a BullMQ job's work with a logger bound to its `jobId` (and `job` name), the way every
 * request runs with one bound to its `requestId`: lines logged while it runs — an order's
 * transitions in the worker — say which job did it. Called by JobHandlers for every job.
 */
export function withJobLogContext<T>(job: Job, work: () => Promise<T>): Promise<T> {
  if (!base) return work();
  return storage.run(new Store(base().child({ jobId: job.id, job: job.name })), work);
}
