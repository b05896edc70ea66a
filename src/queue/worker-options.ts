import type { WorkerOptions } from 'bullmq';

/** What a queue's worker may be given beyond WORKER_OPTIONS (the connection is QueueModule's). */
export type QueueWorkerOptions = Partial<Omit<WorkerOptions, 'connection'>>;

/**
 * Options every queue's worker runs with. Our jobs are short (milliseconds to a few seconds), so a
 * job lock of 10 s (renewed every 5 s) and a stalled check every 5 s mean that a job whose
 * worker was killed is run again within about 15 s, instead of BullMQ's default minute.
 * A job that stalls a third time (its stall count exceeds maxStalledCount) is failed (visible in
 * the failed set) rather than looping — but BullMQ never fails a job scheduler's job for its
 * stalls: a scheduled pass ends itself instead (JobHandlers, MAX_PASS_STALLS). Created without running: WorkerStart runs them once this
 * process holds REDIS_KEY_PREFIX for its database.
 */
export const WORKER_OPTIONS: QueueWorkerOptions = {
  autorun: false,
  lockDuration: 10_000,
  stalledInterval: 5_000,
  maxStalledCount: 2,
};
