import type { JobsOptions, Queue } from 'bullmq';
import { JOB_QUEUE, JobName, JobOf, JobPayloads, QueueName } from './queues';

/**
 * Adding jobs, the only way src/ does it: the job's name picks its queue (JOB_QUEUE) and the
 * data must be that job's payload (JobPayloads) — a wrong payload is a compile error. Provided
 * by QueueModule over its BullMQ queues.
 */
export class JobQueues {
  private readonly byName: ReadonlyMap<string, Queue>;

  constructor(queues: readonly Queue[]) {
    this.byName = new Map(queues.map((queue) => [queue.name, queue]));
  }

  async add<N extends JobName>(
    name: N,
    data: JobPayloads[N],
    opts?: JobsOptions,
  ): Promise<JobOf<N>> {
    return (await this.queueOf(name).add(name, data, opts)) as JobOf<N>;
  }

  /** The job `name` with id `jobId`, in whatever state the queue keeps it; undefined when it has none. */
  async find<N extends JobName>(name: N, jobId: string): Promise<JobOf<N> | undefined> {
    return ((await this.queueOf(name).getJob(jobId)) ?? undefined) as JobOf<N> | undefined;
  }

  /**
   * Creates or updates the repeatable job `name` (an idempotent upsert keyed by the job's name:
   * every worker may call it).
   */
  async schedule<N extends JobName>(name: N, everyMs: number, data: JobPayloads[N]): Promise<void> {
    await this.queueOf(name).upsertJobScheduler(name, { every: everyMs }, { name, data });
  }

  /** The BullMQ queue itself: for reading (tests, schedulers' connection events). */
  queue(name: QueueName): Queue {
    const queue = this.byName.get(name);
    if (!queue) throw new Error(`queue ${name} is not registered`);
    return queue;
  }

  private queueOf(job: JobName): Queue {
    return this.queue(JOB_QUEUE[job]);
  }

  /**
   * Whether every queue's Redis connection is up right now. Answered from the connections'
   * state, never by waiting on Redis (a queue's commands would sit in its offline queue).
   */
  async connected(timeoutMs = 200): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const clients = Promise.all([...this.byName.values()].map((q) => q.client));
    const late = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), timeoutMs);
    });
    try {
      const ready = await Promise.race([clients, late]);
      return ready !== null && ready.every((c) => c.status === 'ready');
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }
}
