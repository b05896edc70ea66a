import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnApplicationShutdown,
} from '@nestjs/common';
import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig } from '../config/config';
import { REDIS } from './redis.module';

/**
 * REDIS_KEY_PREFIX belongs to one database. Everything this service keeps in Redis lives under
 * the prefix: the queues, the catalog cache, the sold-out marks, revocations and rate limits. Two
 * deployments on one Redis with the same prefix (staging and production on one managed Redis,
 * both left on the default `shop`) would share all of it: a staging worker would take
 * production's payment jobs and run them against the staging database, a sold-out mark from one
 * would refuse buyers of the other.
 *
 * So every process claims the prefix for its database, in `<prefix>:owner` (the database's
 * identity: a hash of PostgreSQL's system identifier, the database's oid and name, with the name
 * in clear), kept alive by a heartbeat (every CLAIM_HEARTBEAT_MS, for CLAIM_TTL_MS). The processes
 * of one deployment share one claim. A process that finds the prefix held for another database:
 *  - at boot, waits for that claim to lapse (a deployment just stopped, a development database
 *    dropped and created again: at most CLAIM_TTL_MS) and refuses to boot if it was renewed
 *    meanwhile (the other deployment runs) or has no TTL (set by hand);
 *  - later (Redis lost its keys and the other deployment claimed first), stops, exit code 1.
 * Redis unreachable at boot is no refusal (the API serves without it): the claim is made when it
 * answers. The worker's queues take no job before it is held (`held()`, WorkerStart).
 *
 * A database that moves under a running process (a restore into a new cluster behind the same
 * URL) changes its identity: the process carries its claim over (it may replace its own previous
 * identity), so the processes started after the move are not refused.
 */
@Injectable()
export class KeyPrefixClaim implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(KeyPrefixClaim.name);
  private readonly key: string;
  private identity?: string;
  private previous?: string;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private holding = false;
  private markHeld!: () => void;
  private readonly heldOnce = new Promise<void>((resolve) => (this.markHeld = resolve));
  private readonly onReady = () => void this.renew();

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.key = `${config.redis.keyPrefix}:owner`;
  }

  /** Resolves once this process has held the claim (never, if it is refused). */
  held(): Promise<void> {
    return this.heldOnce;
  }

  async onApplicationBootstrap(): Promise<void> {
    let outcome = await this.attempt();
    // held for another database: kept alive (renewed while we waited for it to lapse, or set by
    // hand without a TTL) is a refusal; one that lapsed was a deployment that has stopped
    if (outcome.kind === 'foreign' && outcome.ttlMs > 0) {
      this.logger.warn(
        `${this.key} is held for another database (${describe(outcome.holder)}); waiting ${Math.ceil(outcome.ttlMs / 1000)} s to see whether it lapses`,
      );
      await sleep(Math.min(outcome.ttlMs, CLAIM_TTL_MS) + 50);
      outcome = await this.attempt();
    }
    if (outcome.kind === 'foreign') throw new PrefixInUse(this.key, outcome.holder);
    this.redis.on('ready', this.onReady);
    this.timer = setInterval(() => void this.renew(), CLAIM_HEARTBEAT_MS);
    this.timer.unref();
    // (Redis unanswered a moment ago, but connected by now: the queues need not wait a heartbeat)
    if (outcome.kind === 'unanswered' && this.redis.status === 'ready') void this.renew();
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.redis.off('ready', this.onReady);
  }

  /** A heartbeat (or Redis back): the claim renewed, or this process stopped if it was taken. */
  private async renew(): Promise<void> {
    if (this.stopped) return;
    const outcome = await this.attempt();
    if (outcome.kind !== 'foreign' || this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    this.lost(new PrefixInUse(this.key, outcome.holder));
  }

  /** The claim taken by another database while this process ran: stop it (exit code 1). */
  protected lost(err: PrefixInUse): void {
    this.logger.error(`${err.message}; stopping`);
    process.exitCode = 1;
    process.kill(process.pid, 'SIGTERM');
  }

  private async attempt(): Promise<Attempt> {
    if (!this.identity) {
      try {
        await this.readIdentity();
      } catch (err) {
        return this.unanswered('PostgreSQL', err);
      }
    } else {
      // read again for the next heartbeat, not waited for: a stalled database or a sale's full
      // pool must not hold the renewal past the claim's TTL (a failed read keeps the identity)
      this.readIdentity().catch(() => undefined);
    }
    const identity = this.identity as string;
    const previous = this.previous;
    let reply: [number, string | null, number];
    try {
      reply = (await this.redis.eval(
        CLAIM_SCRIPT,
        1,
        this.key,
        identity,
        previous ?? '',
        CLAIM_TTL_MS,
      )) as [number, string | null, number];
    } catch (err) {
      return this.unanswered('Redis', err);
    }
    const [claimed, holder, ttlMs] = reply;
    if (claimed !== 1) return { kind: 'foreign', holder: holder ?? '', ttlMs };
    // (carried over; unless a read that finished meanwhile found another move, kept for the next)
    if (this.previous === previous) this.previous = undefined;
    if (!this.holding) {
      this.holding = true;
      this.markHeld();
    }
    return { kind: 'held' };
  }

  private unanswered(what: string, err: unknown): Attempt {
    if (!this.holding) {
      this.logger.warn(
        `${this.key}: not claimed yet (${what}: ${err instanceof Error ? err.message : String(err)}); trying again when it answers`,
      );
    }
    return { kind: 'unanswered' };
  }

  /** This database's identity, read again at every heartbeat (a database moved under us). */
  private async readIdentity(): Promise<void> {
    const identity = await databaseIdentity(this.dataSource);
    if (this.identity && identity !== this.identity) this.previous = this.identity;
    this.identity = identity;
  }
}

type Attempt =
  { kind: 'held' } | { kind: 'unanswered' } | { kind: 'foreign'; holder: string; ttlMs: number };

export class PrefixInUse extends Error {
  constructor(key: string, holder: string) {
    super(
      `REDIS_KEY_PREFIX is in use by another deployment: ${key} is held for another database (${describe(holder)}). ` +
        'Give each deployment sharing a Redis its own REDIS_KEY_PREFIX (a database of its own keeps its prefix for good), ' +
        `or stop the other one: its claim lapses ${CLAIM_TTL_MS / 1000} s after its last process stopped`,
    );
  }
}

/** How long a claim outlives its last heartbeat; a heartbeat every CLAIM_HEARTBEAT_MS. */
const CLAIM_TTL_MS = 30_000;
const CLAIM_HEARTBEAT_MS = 10_000;

/**
 * KEYS[1] the claim; ARGV: this database's identity, the identity this process had before ('' if
 * none), the TTL. Held when free, ours, or our previous identity's; else the holder and its TTL.
 */
const CLAIM_SCRIPT = `
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] or (ARGV[2] ~= '' and holder == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return {1, ARGV[1], tonumber(ARGV[3])}
end
return {0, holder, redis.call('PTTL', KEYS[1])}
`;

/**
 * `<hash> <database name>`: the hash of the cluster's system identifier (shared by its physical
 * replicas, so a failover keeps it; new for every initdb), the database's oid (new when it is
 * dropped and created again) and its name. Where pg_control_system() is not granted (some
 * managed services), without the system identifier.
 */
export async function databaseIdentity(dataSource: DataSource): Promise<string> {
  let row: { system: string | null; oid: string; name: string };
  try {
    [row] = await dataSource.query<(typeof row)[]>(
      `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS system,
              d.oid::text AS oid, d.datname AS name
         FROM pg_database d WHERE d.datname = current_database()`,
    );
  } catch (err) {
    if (!/permission denied/i.test(err instanceof Error ? err.message : '')) throw err;
    [row] = await dataSource.query<(typeof row)[]>(
      `SELECT NULL AS system, d.oid::text AS oid, d.datname AS name
         FROM pg_database d WHERE d.datname = current_database()`,
    );
  }
  const hash = createHash('sha256')
    .update(`${row.system ?? ''}/${row.oid}/${row.name}`)
    .digest('hex')
    .slice(0, 16);
  return `${hash} ${row.name}`;
}

/** `database <name>, <hash>` of a claim's value, for messages. */
function describe(holder: string): string {
  const space = holder.indexOf(' ');
  return space < 0 ? holder : `database ${holder.slice(space + 1)}, ${holder.slice(0, space)}`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(ms, 0)));
