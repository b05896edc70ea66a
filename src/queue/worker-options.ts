import type { WorkerOptions } from 'bullmq';

/**
 * Options every processor runs with. Our jobs are short (milliseconds to a few seconds), so a
 * job lock of 10 s (renewed every 5 s) and a stalled check every 5 s mean that a job whose
 * worker was killed is run again within about 15 s, instead of BullMQ's default minute.
 * A job that stalls twice is failed (visible in the failed set) rather than looping.
 */
export const WORKER_OPTIONS: Partial<Omit<WorkerOptions, 'connection'>> = {
  lockDuration: 10_000,
  stalledInterval: 5_000,
  maxStalledCount: 2,
};
