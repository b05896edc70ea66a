import { DelayedError, type Job } from 'bullmq';

/**
 * Puts the running job back in the queue until `at` (epoch ms) without spending an attempt: for
 * a handler that finds its work not due yet. Throws BullMQ's DelayedError, which tells the worker
 * the job was moved; the handler must let it propagate.
 */
export async function delayJob(job: Job, token: string, at: number): Promise<never> {
  await job.moveToDelayed(at, token);
  throw new DelayedError();
}
