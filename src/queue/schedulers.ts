import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
} from '@nestjs/common';
import type { JobSchedulerJson, Queue } from 'bullmq';
import { APP_CONFIG, AppConfig } from '../config/config';
import { KeyPrefixClaim } from '../redis/key-prefix-claim';
import { JobQueues } from './job-queues';
import { JOB_QUEUE, JobName, JobPayloads, QUEUES } from './queues';

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

/**
 * Repeatable jobs and how often they run — the payment orphan sweep at
 * PAYMENT_ORPHAN_SWEEP_INTERVAL_MS, this its default (schedulesOf).
 */
export const SCHEDULES: readonly JobSchedule[] = [
  every(60_000, JobName.SweepExpiredReservations, {}),
  every(60_000, JobName.ReconcilePayments, {}),
  every(900_000, JobName.SweepPaymentOrphans, {}),
  every(300_000, JobName.ReconcileEmails, {}),
  every(300_000, JobName.ReconcileImages, {}),
  every(600_000, JobName.RecomputeRecommendations, {}),
  every(3_600_000, JobName.PurgeIdempotencyKeys, {}),
  every(3_600_000, JobName.PurgeOutbox, {}),
  every(3_600_000, JobName.PurgeWebhookEvents, {}),
  every(3_600_000, JobName.PurgeRefreshTokens, {}),
];

/**
 * The revision of SCHEDULES: raise it with every change to them (schedulers.spec.ts holds the
 * digest of this revision's list and fails until it is raised). During a rolling deploy two builds
 * run side by side; only a build whose revision is not below the one Redis records
 * (`<queue>:schedules-revision`) adds, changes or removes schedulers — an older one only repairs
 * those it holds that stopped making jobs — so the two do not undo each other every minute (each
 * upsert of a new interval, or of a pass dropped, runs the pass at once). The recorded revision
 * lives REVISION_TTL_MS past the last check of a build that has it: after a rollback the older
 * build takes over.
 */
export const SCHEDULES_REVISION = 2;

/**
 * The schedules a configuration runs: SCHEDULES, the payment orphan sweep every
 * PAYMENT_ORPHAN_SWEEP_INTERVAL_MS — none at 0 (a scheduler held for it is removed). Give every
 * worker the same value: two of one build with different ones would each put theirs back every
 * minute.
 */
export function schedulesOf(
  config: Pick<AppConfig, 'paymentOrphanSweepIntervalMs'>,
): readonly JobSchedule[] {
  return SCHEDULES.flatMap((s) => {
    if (s.job !== JobName.SweepPaymentOrphans) return [s];
    const everyMs = config.paymentOrphanSweepIntervalMs;
    return everyMs > 0 ? [{ ...s, everyMs }] : [];
  });
}

/** How often every worker checks that each schedule is still in Redis (once it is known complete). */
const SCHEDULES_CHECK_MS = 60_000;
/**
 * How long a recorded revision outlives the last check of a build that has it: every such check
 * renews it. Once no build of a newer revision runs (a rollback), it expires and the older build
 * takes over — adds the passes the newer one dropped, puts its intervals back — instead of
 * leaving them unscheduled for ever.
 */
const REVISION_TTL_MS = 5 * SCHEDULES_CHECK_MS;
/**
 * Records ARGV[1] with a TTL of ARGV[2] ms unless a higher revision is recorded (1 if it did).
 * A revision is 1 to 9 digits, as registerMissing reads it: anything else is none (Lua's tonumber
 * took `1e3` for 1000, refusing this build's record while it acted as the current one).
 */
const RECORD_REVISION = `local recorded = redis.call('GET', KEYS[1])
local held = 0
if recorded and #recorded <= 9 and string.match(recorded, '^%d+$') then held = tonumber(recorded) end
if held > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;
/** How far past two periods a scheduler's next run may be before lostItsNextJob looks for its job. */
const LOST_NEXT_MARGIN_MS = 60_000;
/** The states of an overdue next job that make no more jobs (see lostItsNextJob). */
const LOST_STATES: ReadonlySet<string> = new Set(['failed', 'completed', 'unknown']);
/** After a failed check: again in 1 s, 2 s, 4 s … at most this long. */
const RETRY_MAX_MS = 30_000;

/**
 * Registers the repeatable jobs that Redis does not hold as SCHEDULES says, and removes those no
 * longer scheduled (idempotent: every worker may do it; see registerMissing) —
 * at boot, whenever a queue's Redis connection comes back, and every SCHEDULES_CHECK_MS besides.
 * A Redis that restarted without its data (no persistence, a failover to an empty replica) has
 * lost them, and the sweepers and reconciliation must not wait for a worker restart to run
 * again; nor for another reconnect when the one after the loss found Redis refusing writes
 * (OOM under `noeviction`, MISCONF, READONLY, NOREPLICAS): a failed registration is tried again,
 * 1 s doubling to 30 s, each schedule on its own (one refused does not skip the others).
 */
@Injectable()
export class Schedulers implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(Schedulers.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private failures = 0;
  private stopped = false;
  private again = false;

  private readonly schedules: readonly JobSchedule[];

  constructor(
    private readonly jobs: JobQueues,
    private readonly claim: KeyPrefixClaim,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.schedules = schedulesOf(config);
  }

  /**
   * In the background, not awaited: with Redis unreachable at boot the checks wait for it, and
   * the worker must still finish booting (its logs out, its signals handled).
   */
  onApplicationBootstrap(): void {
    // into this database's queues only: once the process holds REDIS_KEY_PREFIX for it
    void this.claim.held().then(() => {
      for (const name of new Set(this.schedules.map((s) => JOB_QUEUE[s.job]))) {
        void this.jobs.queue(name).client.then(
          (client) => client.on('ready', () => this.checkIn(0)),
          () => undefined, // closed before it connected: shutting down
        );
      }
      this.checkIn(0);
    });
  }

  /**
   * No new check starts; one running is not waited for: its upserts are idempotent, and with
   * Redis unreachable it would wait for Redis (the queue connection retries for ever), holding
   * the worker's shutdown past its deadline.
   */
  beforeApplicationShutdown(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Runs the check `delayMs` from now (sooner replaces later; never two at once). */
  private checkIn(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.running) {
        this.again = true; // asked while one runs (a reconnect): another right after it
        return;
      }
      this.again = false;
      this.running = this.check().finally(() => (this.running = undefined));
    }, delayMs);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    try {
      const added = await this.registerMissing();
      if (added > 0) this.logger.log(`${added} job schedule(s) registered, updated or removed`);
      this.failures = 0;
      this.checkIn(this.again ? 0 : SCHEDULES_CHECK_MS);
    } catch (err) {
      this.failures++;
      const retryMs = Math.min(1_000 * 2 ** (this.failures - 1), RETRY_MAX_MS);
      this.logger.warn(`job schedules not all registered (again in ${retryMs} ms): ${String(err)}`);
      this.checkIn(retryMs);
    }
  }

  /**
   * Upserts each schedule its queue does not hold as SCHEDULES says (missing, or another interval
   * or data: a build that changed one — Redis keeps its schedulers across deploys, and a held key
   * used to be enough, so a new interval never took effect), and removes the schedulers of jobs no
   * longer scheduled (their jobs kept coming, each failed for good as unknown after an hour of
   * retries) — the last two only while no newer build has recorded its SCHEDULES_REVISION; how
   * many changed. Throws the first refusal, after trying them all.
   */
  /**
   * A scheduler that is held but makes no more jobs: its next run is well past (two periods and a
   * minute) and that run's job is gone or failed for good. BullMQ schedules the next job when one
   * starts; when that write is refused (Redis at `maxmemory` under `noeviction`) the started job
   * is left to stall (BullMQ puts a scheduler's job back however often it stalls, and retries the
   * next-run write each time; failed, or gone, it would leave no job after it), while the scheduler
   * still matches SCHEDULES: its pass never ran again. Upserted, it makes jobs again. The same
   * for a next job done without a successor, or in none of the queue's lists (LOST_STATES).
   */
  private async lostItsNextJob(
    queue: Queue,
    found: JobSchedulerJson,
    everyMs: number,
  ): Promise<boolean> {
    if (
      typeof found.next !== 'number' ||
      found.next > Date.now() - 2 * everyMs - LOST_NEXT_MARGIN_MS
    )
      return false;
    const next = await queue.getJob(`repeat:${found.key}:${found.next}`);
    // still to come (waiting, delayed, prioritized) or under way (active, a stalled pass put back)
    // is a job; failed for good, done (its successor never added), or in none of the queue's lists
    // (its record kept, its place lost: a Redis that evicted keys, an operator's DEL) is none
    return !next || LOST_STATES.has(await next.getState());
  }

  private async registerMissing(): Promise<number> {
    let changed = 0;
    let refused: Error | undefined;
    const attempt = async (work: () => Promise<unknown>) => {
      try {
        await work();
        changed++;
      } catch (err) {
        refused ??= err instanceof Error ? err : new Error(String(err));
      }
    };
    for (const name of QUEUES) {
      const queue = this.jobs.queue(name);
      const client = await queue.client;
      const revisionKey = `${queue.qualifiedName}:schedules-revision`;
      // (anything but a revision — written by hand, torn — is none: read as NaN, this build took
      // itself for an older one, and neither re-added a pass Redis lost nor recorded its own)
      const revision = (await client.get(revisionKey)) ?? '';
      const recorded = /^\d{1,9}$/.test(revision) ? Number(revision) : 0;
      const current = recorded <= SCHEDULES_REVISION;
      // (a scheduler removed by another worker between the list and its read comes back undefined)
      const held = new Map((await queue.getJobSchedulers()).filter(Boolean).map((j) => [j.key, j]));
      const wanted = this.schedules.filter((s) => JOB_QUEUE[s.job] === name);
      for (const { job, everyMs, data } of wanted) {
        const found = held.get(job);
        // an older build (a newer revision recorded) adds nothing: a pass Redis does not hold was
        // dropped by the newer build (a Redis that lost its schedulers lost the revision with
        // them, and every build counts as current again) — re-added, it ran at once and was
        // removed within the minute, over and over for the whole rollout
        if (!current && !found) continue;
        if (
          found &&
          (!current ||
            (found.every === everyMs &&
              JSON.stringify(found.template?.data ?? {}) === JSON.stringify(data))) &&
          !(await this.lostItsNextJob(queue, found, everyMs))
        )
          continue;
        // (an older build re-registers a stuck one as held, not as it would have it: a newer
        // build's interval and data stand)
        await attempt(() =>
          !current && found
            ? this.jobs.schedule(
                job,
                found.every ?? everyMs,
                (found.template?.data ?? data) as typeof data,
              )
            : this.jobs.schedule(job, everyMs, data),
        );
      }
      if (!current) continue;
      for (const key of held.keys()) {
        if (!wanted.some((s) => String(s.job) === key))
          await attempt(() => queue.removeJobScheduler(key));
      }
      await client.runCommand('eval', [
        RECORD_REVISION,
        1,
        revisionKey,
        String(SCHEDULES_REVISION),
        String(REVISION_TTL_MS),
      ]);
    }
    if (refused !== undefined) throw refused;
    return changed;
  }
}
