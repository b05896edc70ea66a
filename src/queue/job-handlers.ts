import { BullRegistrar } from '@nestjs/bullmq';
import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, ModuleRef, Reflector } from '@nestjs/core';
import type { Job } from 'bullmq';
import { ON_JOB } from './on-job.decorator';
import { JOB_NAMES, JobName, isJobName } from './queues';
import { ScheduledPassLocks } from './scheduled-pass-locks';
import { SCHEDULES } from './schedulers';
import { WORKER_OPTIONS } from './worker-options';
import { withJobLogContext } from '../common/logging/job-log-context';

/** The jobs that are passes over the whole shop, run by schedule (a job of theirs added by hand too). */
const SCHEDULED_JOBS: ReadonlySet<string> = new Set(SCHEDULES.map((s) => s.job));

/** What a scheduled job answers when it did not run: a pass of it was running already, or it stalled too often. */
interface SkippedPass {
  skipped: 'pass-running' | 'stalled-too-often';
}

/**
 * Stalls after which a scheduled pass's job is ended without running: BullMQ never fails a job of
 * a job scheduler for its stalls (moveStalledJobsToWait: `not isRepeatableJob`), so a pass that
 * takes its worker down (out of memory, an abort) went from worker to worker about every 15 s,
 * cutting every other job in flight at each death. The next period's job is another one: the
 * schedule goes on.
 */
export const MAX_PASS_STALLS = WORKER_OPTIONS.maxStalledCount ?? 1;

/** A method marked `@OnJob(job)`, bound to its instance. */
export interface FoundHandler {
  job: string;
  /** `Class.method`, for messages. */
  label: string;
  run: (data: unknown, job: Job, token?: string) => Promise<unknown>;
}

/**
 * One handler per registry job, or an error naming every problem at once: a handler of a job
 * the registry does not know, a job with two handlers, a job with none.
 */
export function indexJobHandlers(
  found: readonly FoundHandler[],
): ReadonlyMap<JobName, FoundHandler> {
  const problems: string[] = [];
  const byJob = new Map<JobName, FoundHandler>();
  for (const handler of found) {
    if (!isJobName(handler.job)) {
      problems.push(
        `${handler.label} handles "${handler.job}", which is not a job in the registry (src/queue/queues.ts)`,
      );
      continue;
    }
    const first = byJob.get(handler.job);
    if (first)
      problems.push(`${handler.job} has two handlers: ${first.label} and ${handler.label}`);
    else byJob.set(handler.job, handler);
  }
  for (const name of JOB_NAMES) {
    if (!byJob.has(name))
      problems.push(`${name} has no handler (mark the service method that runs it with @OnJob)`);
  }
  if (problems.length > 0)
    throw new Error(`Job handlers do not match the registry: ${problems.join('; ')}`);
  return byJob;
}

/**
 * The worker's job handlers: at boot, every provider method marked `@OnJob` is found
 * (DiscoveryService + MetadataScanner) and checked against the registry — the boot fails on a
 * job without a handler, with two, or on a handler of an unknown job. Only then are the queues'
 * BullMQ workers started (QueueModule registers them manually), so no job runs before its
 * handler is known. The per-queue processors (queue-processors.ts) hand each job to `process`.
 */
@Injectable()
export class JobHandlers implements OnModuleInit {
  private readonly logger = new Logger(JobHandlers.name);
  private handlers: ReadonlyMap<JobName, FoundHandler> = new Map();
  /** Scheduled passes running in this process. */
  private readonly runningPasses = new Set<string>();

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly moduleRef: ModuleRef,
    private readonly passLocks: ScheduledPassLocks,
  ) {}

  onModuleInit(): void {
    this.handlers = indexJobHandlers(this.discover());
    this.logger.log(`${this.handlers.size} job handlers found; starting the queue workers`);
    this.moduleRef.get(BullRegistrar, { strict: false }).register();
  }

  /**
   * Runs the job's handler with the job's data (and the job and its token). A scheduled pass runs
   * only while no other pass of it runs — in this process (always), and in any other worker while
   * the lock session reaches the database (ScheduledPassLocks): one that finds its pass running
   * ends at once, `{ skipped: 'pass-running' }` — the running pass does its work.
   */
  async process(job: Job, token?: string): Promise<unknown> {
    const handler = isJobName(job.name) ? this.handlers.get(job.name) : undefined;
    if (!handler) throw new Error(`no handler for job ${job.name}`);
    const run = () => withJobLogContext(job, () => handler.run(job.data, job, token));
    if (!SCHEDULED_JOBS.has(job.name)) return run();
    if ((job.stalledCounter ?? 0) > MAX_PASS_STALLS) {
      this.logger.error(
        `${job.name}: job ${job.id} stalled ${job.stalledCounter} times (its worker died under it each time): ended without running; the next period's pass runs as scheduled`,
      );
      return { skipped: 'stalled-too-often' } satisfies SkippedPass;
    }
    return this.singlePass(job.name, run);
  }

  private async singlePass(name: string, run: () => Promise<unknown>): Promise<unknown> {
    // in this process first, without the database: a pass here is never doubled, even while the
    // lock session cannot reach it
    if (this.runningPasses.has(name)) return this.skip(name);
    this.runningPasses.add(name);
    try {
      let hold;
      try {
        hold = await this.passLocks.tryHold(name);
      } catch (err) {
        // the lock session cannot reach the database: the pass runs as it would without the lock
        // (its steps are guarded and idempotent; the lock only spares doubled work across
        // workers), and meets the same database on its own
        this.logger.warn(
          `${name}: pass lock not taken (${(err as Error).message}); running without it`,
        );
        return await run();
      }
      if (!hold) return this.skip(name);
      try {
        return await run();
      } finally {
        await hold.release();
      }
    } finally {
      this.runningPasses.delete(name);
    }
  }

  private skip(name: string): SkippedPass {
    this.logger.warn(
      `${name}: the previous pass is still running (outlasted its period); this one is skipped`,
    );
    return { skipped: 'pass-running' };
  }

  private discover(): FoundHandler[] {
    const found: FoundHandler[] = [];
    for (const wrapper of this.discovery.getProviders()) {
      const instance: unknown = wrapper.instance;
      if (!wrapper.isDependencyTreeStatic() || !instance || typeof instance !== 'object') continue;
      const prototype = Object.getPrototypeOf(instance) as object | null;
      for (const key of this.scanner.getAllMethodNames(prototype)) {
        const method = (instance as Record<string, unknown>)[key] as (
          ...args: unknown[]
        ) => Promise<unknown>;
        const job = this.reflector.get<string | undefined>(ON_JOB, method);
        if (job === undefined) continue;
        found.push({
          job,
          label: `${instance.constructor.name}.${key}`,
          run: (data, j, token) => method.call(instance, data, j, token),
        });
      }
    }
    return found;
  }
}
