import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import { AdvisoryLockSession, SessionLockHold } from '../database/advisory-lock-session';
import { lockUrlVariable } from '../database/connection-refusal';

/** How long a pass-lock session may go without a statement (a heartbeat every third of it) before the server ends it. */
const PASS_LOCK_IDLE_SESSION_MS = 30_000;

/** The advisory lock class of scheduled passes (two-int form: 'SP', hashtext(job name)). */
export const PASS_LOCK_CLASS = 0x5350;

/**
 * "A pass of scheduled job <name> is running": a session-level advisory lock on the job's name,
 * held on the worker's pass-lock session (`application_name = shop-orders-pass-locks/<8 hex>`)
 * while the pass runs. BullMQ's job scheduler adds a period's job when the previous one starts,
 * not when it ends, so a pass that outlasts its period (a slow payment provider, a big purge)
 * would otherwise run beside the next ones — on every worker and several per worker — each
 * asking the same provider about the same payments. The lock dies with the worker (PostgreSQL
 * ends a killed process's session at once, a frozen one's after 30 s without its heartbeat), so
 * the next period's pass is never held back by a pass that is no longer running.
 */
@Injectable()
export class ScheduledPassLocks implements OnApplicationShutdown {
  private readonly session: AdvisoryLockSession;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.session = new AdvisoryLockSession(config.database.lockUrl, {
      urlVariable: lockUrlVariable(config.database),
      applicationName: 'shop-orders-pass-locks',
      // a pass keeps its lock across a cut of the session's connection (taken again at once), so
      // another worker does not start the same pass beside it
      retakeLostHolds: true,
      // a worker frozen mid-pass (SIGSTOP, a paused container) keeps its session — its host's
      // kernel still answers keepalives — and every worker skipped the pass for as long as it
      // stayed frozen: the sweeps behind "nothing lost" with it. Ended after this idle time.
      idleSessionTimeoutMs: PASS_LOCK_IDLE_SESSION_MS,
      // an endpoint of its own (DATABASE_LOCK_URL) that does not answer: every pass would wait out
      // its connect timeout first; one shared with the pools has the circuit breaker for that
      failFastMs:
        config.database.lockUrl !== config.database.url
          ? config.database.breaker.halfOpenAfterMs
          : 0,
    });
  }

  /** The pass's lock without waiting, or null while a pass of the same job runs (here or in another worker). */
  tryHold(job: string): Promise<SessionLockHold | null> {
    return this.session.tryHold(job, `${PASS_LOCK_CLASS}, hashtext($1::text)`, [job]);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.session.close();
  }
}
