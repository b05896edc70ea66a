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
import { EXIT_CONFIG } from '../config/exit-codes';
import { BOOT_CONNECT_WAIT_MS } from './boot-wait';
import { whenConnected } from './when-connected';
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
 *  - later (Redis lost its keys and the other deployment claimed first), stops, exit code 78
 *    (EXIT_CONFIG: the API's cluster primary stops too, rather than replacing it for ever).
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
  /** Since when a process that never held the prefix has found it held for another database. */
  private foreignSince?: number;
  /** When this deployment first held the prefix (µs, Redis's clock), once this process has. */
  private tenure?: number;
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

  /** Whether this process holds the claim now (held, not lost, not shutting down). */
  holds(): boolean {
    return this.holding && !this.stopped;
  }

  /**
   * `waiting`: not held yet (Redis or PostgreSQL not answering at boot — the worker's queues wait
   * for it); `held`; `stopped`: lost to another database, or shutting down.
   */
  get state(): 'waiting' | 'held' | 'stopped' {
    if (this.stopped) return 'stopped';
    return this.holding ? 'held' : 'waiting';
  }

  async onApplicationBootstrap(): Promise<void> {
    // the shared client queues nothing while it connects (enableOfflineQueue: false): a first
    // attempt sent at once always found it connecting, and the checks above never ran at boot
    await whenConnected(this.redis, BOOT_CONNECT_WAIT_MS);
    let outcome = await this.attempt();
    // held for another database: kept alive (renewed while we waited for it to lapse, or set by
    // hand without a TTL) is a refusal; one that lapsed was a deployment that has stopped
    let waited = 0;
    if (outcome.kind === 'foreign' && outcome.ttlMs > 0) {
      waited = Math.min(outcome.ttlMs, CLAIM_TTL_MS) + 50;
      this.logger.warn(
        `${this.key} is held for another database (${describe(outcome.holder)}); waiting ${Math.ceil(waited / 1000)} s to see whether it lapses`,
      );
      await sleep(waited);
      outcome = await this.attempt();
    }
    if (outcome.kind === 'foreign') throw new PrefixInUse(this.key, outcome.holder, waited);
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
    if (outcome.kind !== 'foreign') this.foreignSince = undefined;
    if (outcome.kind !== 'foreign' || this.stopped) return;
    // a process that never held it (booted while Redis was down) gives the holder the time a boot
    // gives (its deployment's older processes may take it back at their next heartbeat); one
    // that held it was outlasted by an older tenure: it stops at once
    if (!this.holding && outcome.ttlMs > 0) {
      this.foreignSince ??= performance.now();
      if (performance.now() - this.foreignSince < CLAIM_TTL_MS + CLAIM_HEARTBEAT_MS) return;
    }
    this.stopped = true;
    clearInterval(this.timer);
    this.lost(new PrefixInUse(this.key, outcome.holder));
  }

  /** The claim taken by another database while this process ran: stop it (exit code EXIT_CONFIG). */
  protected lost(err: PrefixInUse): void {
    this.logger.error(`${err.message}; stopping`);
    process.exitCode = err.exitCode;
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
        hashOf(identity),
        previous ? hashOf(previous) : '',
        this.tenure === undefined ? '' : String(this.tenure),
        CLAIM_TTL_MS,
        nameOf(identity),
      )) as [number, string | null, number];
    } catch (err) {
      return this.unanswered('Redis', err);
    }
    const [claimed, holder, ttlMs] = reply;
    if (claimed !== 1) return { kind: 'foreign', holder: holder ?? '', ttlMs };
    this.tenure = tenureOf(holder ?? '') ?? this.tenure;
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
  /** A process refused or stopped so exits with it (main.ts, worker.ts; the cluster's primary stops). */
  readonly exitCode = EXIT_CONFIG;

  constructor(key: string, holder: string, waitedMs = 0) {
    super(
      `REDIS_KEY_PREFIX is in use by another deployment: ${key} is held for another database (${describe(holder)})` +
        (waitedMs > 0
          ? `, renewed while this process waited ${Math.ceil(waitedMs / 1000)} s for it to lapse. `
          : '. ') +
        'Give each deployment sharing a Redis its own REDIS_KEY_PREFIX (a database of its own keeps its prefix for good), ' +
        `or stop the other one: its claim lapses ${CLAIM_TTL_MS / 1000} s after its last process stopped`,
    );
  }
}

/** How long a claim outlives its last heartbeat; a heartbeat every CLAIM_HEARTBEAT_MS. */
const CLAIM_TTL_MS = 30_000;
const CLAIM_HEARTBEAT_MS = 10_000;

/**
 * KEYS[1] the claim, `<hash> <tenure> <database name>`; ARGV: this database's hash, the hash this
 * process had before ('' if none), this deployment's tenure as this process knows it ('' if it
 * never held the prefix), the TTL, the database's name. Held when free, ours (our previous
 * identity's), or held by a deployment younger than ours — after Redis lost its keys, or a stall
 * of ours past the TTL, a deployment that booted meanwhile (never holding it; it must not push
 * out the one that ran) may have taken it first: the older one takes it back, and the younger
 * stops at its next heartbeat. Else the holder and its TTL. The tenure kept is the oldest known.
 */
const CLAIM_SCRIPT = `
local holder = redis.call('GET', KEYS[1])
local hash, since
if holder then
  hash = string.match(holder, '^(%S+)')
  since = string.match(holder, '^%S+ (%d+) ')
end
-- ours: our identity (or the one before a move), or our deployment's tenure (a process of it
-- whose read of a moved database's new identity has not come yet)
local ours = holder and (hash == ARGV[1] or (ARGV[2] ~= '' and hash == ARGV[2])
  or (since ~= nil and since == ARGV[3]))
local mine = tonumber(ARGV[3])
if holder and not ours and not (mine and since and mine < tonumber(since)) then
  return {0, holder, redis.call('PTTL', KEYS[1])}
end
local tenure = mine
if ours and since and ((not tenure) or tonumber(since) < tenure) then tenure = tonumber(since) end
if not tenure then
  local t = redis.call('TIME')
  tenure = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local value = ARGV[1] .. ' ' .. string.format('%d', tenure) .. ' ' .. ARGV[5]
redis.call('SET', KEYS[1], value, 'PX', ARGV[4])
return {1, value, tonumber(ARGV[4])}
`;

/**
 * `<hash> <database name>`: the hash of the cluster's system identifier (shared by its physical
 * replicas, so a failover keeps it; new for every initdb), the database's oid (new when it is
 * dropped and created again) and its name. Where pg_control_system() is not granted (some
 * managed services), without the system identifier.
 */
export async function databaseIdentity(dataSource: Pick<DataSource, 'query'>): Promise<string> {
  const row = await databaseIdentityParts(dataSource);
  const hash = createHash('sha256')
    .update(`${row.system ?? ''}/${row.oid}/${row.name}`)
    .digest('hex')
    .slice(0, 16);
  return `${hash} ${row.name}`;
}

/**
 * What databaseIdentity is made of: the cluster's system identifier (null where not granted), the
 * database's oid and its name.
 */
export async function databaseIdentityParts(
  dataSource: Pick<DataSource, 'query'>,
): Promise<{ system: string | null; oid: string; name: string }> {
  let row: { system: string | null; oid: string; name: string };
  try {
    // asked only where the role may run it (has_function_privilege; a CASE around it is no guard:
    // the function's privilege is checked as the statement starts): refused, the statement failed
    // — and was logged — at every heartbeat (10 s); a grant made later is seen at the next one
    const [db] = await dataSource.query<{ allowed: boolean; oid: string; name: string }[]>(
      `SELECT has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') AS allowed,
              d.oid::text AS oid, d.datname AS name
         FROM pg_database d WHERE d.datname = current_database()`,
    );
    const system = db.allowed
      ? (
          await dataSource.query<{ system: string }[]>(
            `SELECT system_identifier::text AS system FROM pg_control_system()`,
          )
        )[0].system
      : null;
    row = { system, oid: db.oid, name: db.name };
  } catch (err) {
    // insufficient_privilege (not granted), undefined_function / feature_not_supported (a
    // PostgreSQL-compatible service without it); any other failure is the database's, not this
    // query's (a fallback then would give this process another identity than its deployment's)
    if (!NO_SYSTEM_IDENTIFIER.has((err as { code?: unknown }).code as string)) throw err;
    [row] = await dataSource.query<(typeof row)[]>(
      `SELECT NULL AS system, d.oid::text AS oid, d.datname AS name
         FROM pg_database d WHERE d.datname = current_database()`,
    );
  }
  return row;
}

const NO_SYSTEM_IDENTIFIER = new Set(['42501', '42883', '0A000']);

const hashOf = (identity: string) => identity.slice(0, identity.indexOf(' '));
const nameOf = (identity: string) => identity.slice(identity.indexOf(' ') + 1);

/** The tenure of a claim's value, `<hash> <tenure> <name>`. */
function tenureOf(value: string): number | undefined {
  const m = /^\S+ (\d+) /.exec(value);
  return m ? Number(m[1]) : undefined;
}

/** `database <name>, <hash>` of a claim's value, for messages. */
function describe(holder: string): string {
  const m = /^(\S+) (?:\d+ )?(.*)$/.exec(holder);
  return m ? `database ${m[2]}, ${m[1]}` : holder;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(ms, 0)));
