import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import type Redis from 'ioredis';
import { ReplyError } from 'ioredis';
import { EXIT_CONFIG } from '../config/exit-codes';
import { BOOT_CONNECT_WAIT_MS, answerWithin } from './boot-wait';
import { whenConnected } from './when-connected';
import { REDIS } from './redis.module';

/** A REDIS_URL whose database this Redis cannot select, refused at boot (exit code EXIT_CONFIG). */
export class RedisDatabaseUnavailable extends Error {
  readonly exitCode = EXIT_CONFIG;

  constructor(db: number, reply: string) {
    super(
      `REDIS_URL: database ${db} cannot be selected on this Redis (it answered "${reply}"): ` +
        'its clients would go on in database 0, sharing it with whatever lives there. ' +
        (/^NOPERM/.test(reply)
          ? "Allow SELECT to this deployment's Redis user (its ACL), or name database 0"
          : 'Name a database the server has (0 to its `databases` setting minus one, 16 by default) or raise that setting'),
    );
  }
}

/**
 * The database REDIS_URL names (its path, `redis://host:6379/2`) must be the one every client is
 * on. ioredis selects it on each connection and, when the server refuses (`/16` on a default
 * server, which has databases 0 to 15: `ERR DB index is out of range`; an ACL without SELECT),
 * only emits an error and goes on in database 0 — BullMQ's connections and the catalog store
 * alike (the same URL). A deployment given its own database beside another's then shared database
 * 0 with it, and said nothing (operator-mistakes review).
 *
 * So at boot the shared client selects that database once more and a refusal stops the process
 * (API, worker, and the commands that load the application), naming REDIS_URL, in development
 * too: there is no reason to run on a database other than the one asked for. It runs at module
 * init, before any bootstrap hook — the prefix claim's write, the workers — can touch database 0.
 * Database 0 needs no check (every server has it; a client starts there). A Redis that does not
 * answer at boot is no refusal (the API serves without it, as in eviction-policy.ts): logged at warn.
 */
@Injectable()
export class RedisDatabaseCheck implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(RedisDatabaseCheck.name);
  private readonly db: number;
  /**
   * Each time the shared client is ready again (a Redis down at boot, restarted, failed over):
   * ioredis selects the database on each new connection and, refused, goes on in database 0 —
   * a process that booted while Redis was away was never checked (diff review 2). Refused then,
   * the process stops (exit code EXIT_CONFIG), as it would have at boot.
   */
  private readonly onReady = () => void this.recheck();
  private stopped = false;

  constructor(@Inject(REDIS) private readonly redis: Redis) {
    this.db = this.redis.options.db ?? 0;
  }

  async onModuleInit(): Promise<void> {
    if (this.db === 0) return;
    await whenConnected(this.redis, BOOT_CONNECT_WAIT_MS);
    this.redis.on('ready', this.onReady);
    const refused = await this.refusal();
    if (refused) {
      this.redis.off('ready', this.onReady);
      throw refused;
    }
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    this.redis.off('ready', this.onReady);
  }

  private async recheck(): Promise<void> {
    const refused = await this.refusal();
    if (!refused || this.stopped) return;
    this.stopped = true;
    this.logger.error(`${refused.message}; stopping`);
    process.exitCode = refused.exitCode;
    process.kill(process.pid, 'SIGTERM');
  }

  /** The refusal of SELECT <db>, if Redis refuses it; a Redis that does not answer: none (warned). */
  private async refusal(): Promise<RedisDatabaseUnavailable | undefined> {
    try {
      await answerWithin(this.redis.select(this.db), SELECT_TIMEOUT_MS);
      return undefined;
    } catch (err) {
      if (err instanceof ReplyError)
        return new RedisDatabaseUnavailable(this.db, (err as Error).message);
      this.logger.warn(
        `could not check that Redis database ${this.db} can be selected: ${String(err)}`,
      );
      return undefined;
    }
  }
}

/** How long the SELECT may take. */
const SELECT_TIMEOUT_MS = 2_000;
