import { Processor, WorkerHost } from '@nestjs/bullmq';
import { Inject, Type } from '@nestjs/common';
import type { Job } from 'bullmq';
import { JobHandlers } from './job-handlers';
import { JOB_QUEUE, QUEUES, QueueName, isJobName } from './queues';
import { WORKER_OPTIONS, type QueueWorkerOptions } from './worker-options';

/**
 * The BullMQ processor of one queue: it hands every job to the job's `@OnJob` handler. One
 * such class per queue (BullMQ's Nest integration binds a processor class to one queue); they
 * are alike except for the queue and its worker options.
 */
export abstract class QueueProcessor extends WorkerHost {
  abstract readonly queue: QueueName;

  constructor(@Inject(JobHandlers) private readonly handlers: JobHandlers) {
    super();
  }

  async process(job: Job, token?: string): Promise<unknown> {
    if (!isJobName(job.name) || JOB_QUEUE[job.name] !== this.queue) {
      throw new Error(`the ${this.queue} queue has no job ${job.name}`);
    }
    return this.handlers.process(job, token);
  }
}

function queueProcessor(queue: QueueName, options: QueueWorkerOptions): Type<QueueProcessor> {
  @Processor(queue, { ...WORKER_OPTIONS, ...options })
  class OneQueueProcessor extends QueueProcessor {
    readonly queue = queue;
  }
  const name = `${queue[0].toUpperCase()}${queue.slice(1)}QueueProcessor`;
  Object.defineProperty(OneQueueProcessor, 'name', { value: name });
  return OneQueueProcessor;
}

/**
 * One processor per queue in the registry, each with WORKER_OPTIONS plus the queue's own
 * (e.g. the payments queue's custom backoff), for the worker module's providers.
 */
export function queueProcessors(
  options: Partial<Record<QueueName, QueueWorkerOptions>> = {},
): Type<QueueProcessor>[] {
  return QUEUES.map((queue) => queueProcessor(queue, options[queue] ?? {}));
}
