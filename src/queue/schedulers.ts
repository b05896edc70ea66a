import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { JobQueues } from './job-queues';
import { JOB_QUEUE, JobName, JobPayloads } from './queues';

/** A repeatable job: which, how often, with what data. */
export interface JobSchedule {
  readonly job: JobName;
  readonly everyMs: number;
  readonly data: JobPayloads[JobName];
}

/** A schedule whose data is checked against the job's payload type. */
function every<N extends JobName>(everyMs: number, job: N, data: JobPayloads[N]): JobSchedule {
  return { job, everyMs, data };
}

/** Repeatable jobs and how often they run. */
export const SCHEDULES: readonly JobSchedule[] = [
  every(60_000, JobName.SweepExpiredReservations, {}),
  every(60_000, JobName.ReconcilePayments, {}),
  every(300_000, JobName.ReconcileEmails, {}),
  every(300_000, JobName.ReconcileImages, {}),
  every(600_000, JobName.RecomputeRecommendations, {}),
  every(3_600_000, JobName.PurgeIdempotencyKeys, {}),
  every(3_600_000, JobName.PurgeOutbox, {}),
  every(3_600_000, JobName.PurgeWebhookEvents, {}),
  every(3_600_000, JobName.PurgeRefreshTokens, {}),
];

/**
 * Registers the repeatable jobs (idempotent upserts: every worker may do it) — at boot, and
 * again whenever a queue's Redis connection comes back: a Redis that restarted without its
 * data (no persistence, a failover to an empty replica) has lost them, and the sweepers and
 * reconciliation must not wait for a worker restart to run again.
 */
@Injectable()
export class Schedulers implements OnApplicationBootstrap {
  private readonly logger = new Logger(Schedulers.name);

  constructor(private readonly jobs: JobQueues) {}

  /**
   * In the background, not awaited: with Redis unreachable at boot the upserts wait for it, and
   * the worker must still finish booting (its logs out, its signals handled) — it registers
   * them once Redis answers.
   */
  onApplicationBootstrap(): void {
    this.start().catch((err: unknown) =>
      this.logger.warn(`job schedulers not registered at boot (registered on the next reconnect): ${String(err)}`),
    );
  }

  private async start(): Promise<void> {
    const queues = new Set(SCHEDULES.map((s) => JOB_QUEUE[s.job]));
    for (const name of queues) {
      const client = await this.jobs.queue(name).client;
      client.on('ready', () => {
        this.register().catch((err: unknown) =>
          this.logger.warn(`job schedulers not re-registered after a reconnect: ${String(err)}`),
        );
      });
    }
    await this.register();
  }

  private async register(): Promise<void> {
    for (const { job, everyMs, data } of SCHEDULES) await this.jobs.schedule(job, everyMs, data);
  }
}
