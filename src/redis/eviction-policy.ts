import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnApplicationShutdown,
} from '@nestjs/common';
import type Redis from 'ioredis';
import { APP_CONFIG, AppConfig } from '../config/config';
import { EXIT_CONFIG } from '../config/exit-codes';
import { BOOT_CONNECT_WAIT_MS, answerWithin } from './boot-wait';
import { whenConnected } from './when-connected';
import { REDIS } from './redis.module';

/** The one `maxmemory-policy` this service can run on. */
const REQUIRED_POLICY = 'noeviction';
/** How often a running process reads the policy again (a failover, a `CONFIG SET`). */
const RECHECK_MS = 60_000;

/** A Redis that evicts keys, refused at boot outside development (exit code EXIT_CONFIG). */
export class EvictingRedis extends Error {
  readonly exitCode = EXIT_CONFIG;

  constructor(policy: string) {
    super(evictionMessage(policy));
  }
}

function evictionMessage(policy: string): string {
  return (
    `Redis's maxmemory-policy is ${policy}: full, it would evict keys — queued jobs and their ` +
    'records, sign-in lockouts, revocation marks — one at a time and silently. Set ' +
    `maxmemory-policy ${REQUIRED_POLICY} (BullMQ requires it; a full Redis then refuses writes, ` +
    'which every part of this service answers for) and give it the memory it needs'
  );
}

/** `maxmemory_policy` from an `INFO memory` answer; undefined when it names none. */
function policyOf(info: string): string | undefined {
  return /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
}

/**
 * Redis must not evict. Everything this service keeps there — BullMQ's jobs, sorted sets and
 * records, the sign-in lockouts, the revocation marks, the rate limits — is written without a
 * thought for eviction, and under `allkeys-lru` (a managed Redis's default often is `volatile-lru`
 * or `allkeys-lru`) a full Redis dropped some keys and kept others: a locked sign-in was open
 * again to guesses, and delayed jobs lost their records while their ids stayed queued — an email
 * owed was never sent, a scheduled sweep never ran again (redis-loss review). BullMQ only printed
 * a plain-text warning in the worker; the API said nothing and its readiness was 200.
 *
 * So each process reads the policy (`INFO memory`) at boot: another policy refuses to boot
 * outside development (exit code EXIT_CONFIG), and in development is logged as an error. A running
 * process reads it again every RECHECK_MS and whenever its connection is ready again (a failover
 * onto a node configured otherwise): an error line each time it is wrong. Redis unreachable, or
 * refusing INFO (an ACL), is no refusal: logged once at warn, and read again later.
 */
@Injectable()
export class EvictionPolicyCheck implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(EvictionPolicyCheck.name);
  private readonly development: boolean;
  private timer?: NodeJS.Timeout;
  private unreadLogged = false;
  private readonly onReady = () => void this.check();

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.development = config.isDevelopment;
  }

  async onApplicationBootstrap(): Promise<void> {
    await whenConnected(this.redis, BOOT_CONNECT_WAIT_MS);
    const policy = await this.read();
    if (policy !== undefined && policy !== REQUIRED_POLICY && !this.development) {
      throw new EvictingRedis(policy);
    }
    if (policy !== undefined && policy !== REQUIRED_POLICY) this.report(policy);
    this.redis.on('ready', this.onReady);
    this.timer = setInterval(() => void this.check(), RECHECK_MS);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
    this.redis.off('ready', this.onReady);
  }

  /** Reads the policy again; an error line when it is not REQUIRED_POLICY. */
  async check(): Promise<void> {
    const policy = await this.read();
    if (policy !== undefined && policy !== REQUIRED_POLICY) this.report(policy);
  }

  private report(policy: string): void {
    this.logger.error(evictionMessage(policy));
  }

  /** The policy, or undefined when Redis did not say (unreachable, INFO refused). */
  private async read(): Promise<string | undefined> {
    try {
      const policy = policyOf(await answerWithin(this.redis.info('memory'), INFO_TIMEOUT_MS));
      this.unreadLogged = false;
      return policy;
    } catch (err) {
      if (!this.unreadLogged) {
        this.unreadLogged = true;
        this.logger.warn(`could not read Redis's maxmemory-policy: ${String(err)}`);
      }
      return undefined;
    }
  }
}

/** How long one INFO may take. */
const INFO_TIMEOUT_MS = 2_000;
