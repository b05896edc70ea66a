import { OnWorkerEvent, Processor, WorkerHost } from '@nestjs/bullmq';
import { Inject, Logger, Type } from '@nestjs/common';
import { UnrecoverableError, type Job } from 'bullmq';
import { delayJob } from './delay-job';
import { JobHandlers } from './job-handlers';
import { jobPayloadProblem } from './job-payload-check';
import { logQueueError } from './queue-errors';
import { JOB_QUEUE, QUEUES, QueueName, isJobName } from './queues';
import { WORKER_OPTIONS, type QueueWorkerOptions } from './worker-options';

/**
 * The BullMQ processor of one queue: it hands every job to the job's `@OnJob` handler. One
 * such class per queue (BullMQ's Nest integration binds a processor class to one queue); they
 * are alike except for the queue and its worker options.
 */
export abstract class QueueProcessor extends WorkerHost {
  abstract readonly queue: QueueName;
  private readonly logger = new Logger(QueueProcessor.name);

  constructor(@Inject(JobHandlers) private readonly handlers: JobHandlers) {
    super();
  }

  /**
   * The worker's own errors (a Redis reply refusing its wait for jobs: a failover's UNBLOCKED or
   * READONLY, OOM): one line in the log, the same one at most once per 10 s (logQueueError: the
   * fetch loop retries a refused command at once, thousands of times a second). Without a
   * listener BullMQ writes each, stack and all, to stderr, outside the structured log.
   */
  @OnWorkerEvent('error')
  onWorkerError(err: Error): void {
    logQueueError(this.logger, this.queue, 'worker', err);
  }

  /**
   * A job name this build does not know comes from a newer one (a rolling deploy: its API or
   * worker added the job while this worker still runs): put back for a minute without spending an
   * attempt, for a worker that knows it — as the outbox relay does with a topic it does not know —
   * rather than failed after its attempts while such a worker sits idle. Past an hour it is no
   * deploy any more: refused as any other (BullMQ's attempts, then the failed set).
   */
  async process(job: Job, token?: string): Promise<unknown> {
    if (!isJobName(job.name) && token && Date.now() - job.timestamp < UNKNOWN_JOB_PATIENCE_MS) {
      return delayJob(job, token, Date.now() + UNKNOWN_JOB_RETRY_MS);
    }
    if (!isJobName(job.name) || JOB_QUEUE[job.name] !== this.queue) {
      throw new Error(`the ${this.queue} queue has no job ${job.name}`);
    }
    const problem = jobPayloadProblem(job.name, job.data);
    if (problem) throw new UnrecoverableError(`malformed data: ${problem}`);
    return this.handlers.process(job, token);
  }

  /**
   * Every failed attempt, one line naming the job and why: a warning while it will be retried, an
   * error once it is in the failed set for good (its attempts spent, or refused as unrecoverable).
   * Without it a job failing for good was seen only in the queue board and a per-queue counter.
   * The job's id, queue and name are fields of their own (as on the lines logged while it runs:
   * `jobId`, `job`), and the error is `err` — its stack too, through the loggers' serializer; the
   * line had neither, so a failure could be found by its message only, and not told where it
   * came from.
   */
  @OnWorkerEvent('failed')
  onJobFailed(job: Job | undefined, err: Error): void {
    if (!job) return;
    // BullMQ stores a job added without `attempts` as `attempts: 0`, and runs it once ("attempt 1
    // of 0" said so)
    const attempts = Math.max(1, job.opts.attempts ?? 1);
    const final = err instanceof UnrecoverableError || job.attemptsMade >= attempts;
    const fields = { jobId: job.id, queue: this.queue, job: job.name, err };
    const line = `${this.queue} job ${job.name} ${job.id ?? ''} failed (attempt ${job.attemptsMade} of ${attempts}): ${err.message}`;
    if (final) this.logger.error(fields, `${line}; in the failed set, not retried`);
    else this.logger.warn(fields, `${line}; retried`);
  }
}

/** How long a job of a name this build does not know waits for a worker that knows it. */
const UNKNOWN_JOB_RETRY_MS = 60_000;
/** How old such a job may be and still be waited for (a rolling deploy's length, generously). */
const UNKNOWN_JOB_PATIENCE_MS = 60 * 60_000;

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
