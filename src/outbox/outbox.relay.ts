import {
  BeforeApplicationShutdown,
  Injectable,
  Logger,
  OnApplicationBootstrap,
} from '@nestjs/common';
import { TimeoutError, withTimeout } from '../common/with-timeout';
import { RateLimitedLog } from '../common/logging/rate-limited-log';
import { KeyPrefixClaim } from '../redis/key-prefix-claim';
import { OutboxRepository } from './outbox.repository';
import { OutboxPublisher, UnknownTopicError } from './outbox.publisher';
import { REDIS_OUTAGE_REPLY } from '../redis/outage-reply';
import { OUTBOX_TOPICS } from './outbox-events';
import { RECONCILE_WINDOW_MS } from '../notifications/email-reconciler';

export const OUTBOX_MAX_ATTEMPTS = 10;
const LEASE_MS = 30_000;
const PUBLISH_TIMEOUT_MS = 5_000;
const IDLE_POLL_MS = 250;
/** How soon a row of a topic this worker does not know is offered again (to any worker). */
const UNKNOWN_TOPIC_RETRY_MS = 60_000;
/** How old a row of an unknown topic may be and still be waited for (a rolling deploy, generously). */
const UNKNOWN_TOPIC_PATIENCE_MS = 60 * 60_000;
/** A row's failed publishes are logged at its first failure and every FAILURE_WARN_EVERY-th after. */
const FAILURE_WARN_EVERY = 3;
/** While the queues are unreachable: probe again after 0.5 s, 1 s, 2 s … at most every 5 s. */
const UNAVAILABLE_POLL_MAX_MS = 5_000;

/**
 * A publish that failed because of the queue, not the event: Redis refused the write for its own
 * state (OOM under `noeviction`, READONLY after a failover, LOADING …) or did not answer in time.
 * Like a lost connection, that is an outage: the rows wait, uncounted, and none is parked as dead.
 * Any other error (a script's refusal, WRONGTYPE) is the event's: counted, and parked in the end.
 */
function queueFault(err: unknown): boolean {
  if (err instanceof TimeoutError) return true;
  return err instanceof Error && err.name === 'ReplyError' && REDIS_OUTAGE_REPLY.test(err.message);
}

/** 1 s, 2 s, 4 s … capped at 5 min. */
export function outboxBackoffMs(attempts: number): number {
  return Math.min(1000 * 2 ** Math.max(0, attempts - 1), 300_000);
}

/**
 * Moves committed outbox rows to BullMQ (worker role). Rows are leased with
 * FOR UPDATE SKIP LOCKED, so any number of relays can run; a failed publish is retried with
 * exponential backoff and parked as 'dead' after OUTBOX_MAX_ATTEMPTS.
 *
 * Redis being down is not the event's fault: while the queues' connection is not up, no rows
 * are leased at all, and a batch whose publish fails because the connection dropped — or because
 * Redis refused the write or did not answer (queueFault) — stops at once and gives its untried
 * rows back without counting the attempt. So an outage of any length parks nothing as dead and
 * never holds the relay (or shutdown) on one publish timeout per row; the events wait in the
 * table and go out as soon as Redis is back.
 */
/** The relay's failure warnings: one line per topic and message every 10 s, the rest counted. */
const failureLines = new RateLimitedLog(10_000);

@Injectable()
export class OutboxRelay implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(OutboxRelay.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;
  private stopped = false;
  private unavailableStreak = 0;

  constructor(
    private readonly outbox: OutboxRepository,
    private readonly publisher: OutboxPublisher,
    private readonly claim: KeyPrefixClaim,
  ) {}

  /**
   * Starts relaying — after giving the dead rows of every topic this build knows another round
   * of attempts: parked by a worker of an older build that did not know their topic (a rolling
   * deploy), or by a failure a new build mends. Only rows written within the email reconciler's
   * window (6 days): an older one's email is past sending (the reconciler has given it up) and
   * the database's sweeps have done the rest of its work — every boot relayed dead rows of any
   * age, a cancellation mailed two months late. Best effort: a database that cannot answer now
   * leaves them for the next boot.
   */
  async onApplicationBootstrap(): Promise<void> {
    try {
      const n = await this.outbox.redriveDead(OUTBOX_TOPICS, RECONCILE_WINDOW_MS);
      if (n > 0) this.logger.warn(`${n} dead outbox row(s) of known topics relayed again`);
    } catch (err) {
      this.logger.warn(`dead outbox rows not relayed again: ${String(err)}`);
    }
    // into queues of this database's prefix only: not before the process holds it (Redis down at
    // boot: held once it answers — a staging worker on production's prefix would otherwise
    // publish its events into production's queues before it learns so and stops)
    void this.claim.held().then(() => this.schedule(0));
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /**
   * One batch: returns how many rows were published and how many failed; `unavailable` when
   * the queues could not be reached (nothing leased, or the untried rows given back).
   */
  async relayOnce(limit = 100): Promise<{ published: number; failed: number; unavailable?: true }> {
    if (!(await this.publisher.connected())) return { published: 0, failed: 0, unavailable: true };
    const rows = await this.outbox.claimDue(limit, LEASE_MS);
    const published: string[] = [];
    let failed = 0;
    let unavailable = false;
    let next = 0; // the first row neither published nor given its outcome yet
    try {
      for (const [i, row] of rows.entries()) {
        next = i;
        try {
          await withTimeout(
            this.publisher.publish(row),
            PUBLISH_TIMEOUT_MS,
            'publish not acknowledged',
          );
          published.push(row.id);
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          if (queueFault(err) || !(await this.publisher.connected())) {
            // Redis refused or dropped it: give this row and the untried rest back, uncounted
            unavailable = true;
            await this.outbox.release(rows.slice(i).map((r) => r.id));
            this.logger.warn(`outbox relay paused, queues unreachable: ${message}`);
            break;
          }
          if (err instanceof UnknownTopicError && row.ageMs < UNKNOWN_TOPIC_PATIENCE_MS) {
            // an older worker than the API that wrote it (a rolling deploy): not the event's
            // fault, so never parked as dead by this worker — back, uncounted, for one that knows it;
            // past UNKNOWN_TOPIC_PATIENCE_MS it is no deploy any more (a rollback, a renamed topic):
            // counted as any failure, then parked dead (a build that knows it relays it at its boot)
            await this.outbox.deferUncounted(row.id, message, UNKNOWN_TOPIC_RETRY_MS);
            this.logger.warn(`${message}: left for a worker that knows it`);
            continue;
          }
          failed++;
          const dead = row.attempts >= OUTBOX_MAX_ATTEMPTS;
          const retryMs = outboxBackoffMs(row.attempts);
          await this.outbox.markFailed(row.id, message, retryMs, dead);
          if (dead)
            this.logger.error(`outbox row ${row.id} (${row.topic}) parked as dead: ${message}`);
          else if ((row.attempts - 1) % FAILURE_WARN_EVERY === 0)
            // the first failure and every third after it: an event failing for good was silent
            // (outbox.last_error only) for the ~9 minutes until it was parked
            // (one line per topic and message a window: every row failing alike — a script
            // error after an upgrade — is a flood of one line per row otherwise)
            failureLines.write(
              `${row.topic} ${message.replace(/\d+/g, '#')}`,
              `outbox row ${row.id} (${row.topic}) not published, attempt ${row.attempts} of ${OUTBOX_MAX_ATTEMPTS}, retried in ${retryMs / 1000} s: ${message}`,
              (line) => this.logger.warn(line),
            );
        }
      }
      next = rows.length;
    } catch (err) {
      // the database failed a row's bookkeeping (a blink): the rows published so far are still
      // marked, and the untried ones given back uncounted, so a blink neither publishes them
      // again after the lease nor brings them closer to being parked as dead (best effort: a
      // database still down leaves both to the lease)
      await this.outbox.release(rows.slice(next + 1).map((r) => r.id)).catch(() => undefined);
      await this.outbox.markPublished(published).catch(() => undefined);
      throw err;
    }
    await this.outbox.markPublished(published);
    return unavailable
      ? { published: published.length, failed, unavailable }
      : { published: published.length, failed };
  }

  private schedule(delayMs: number): void {
    // (a claim lost since: the process is stopping; nothing more goes out meanwhile)
    if (this.stopped || !this.claim.holds()) return;
    this.timer = setTimeout(() => {
      const run = this.relayOnce()
        .then((r) => {
          this.unavailableStreak = r.unavailable ? this.unavailableStreak + 1 : 0;
          if (r.unavailable)
            return Math.min(250 * 2 ** this.unavailableStreak, UNAVAILABLE_POLL_MAX_MS);
          return r.published > 0 ? 0 : IDLE_POLL_MS;
        })
        .catch((err: unknown) => {
          this.logger.warn(`outbox relay batch failed: ${String(err)}`);
          return 2000;
        });
      this.running = run;
      void run.then((next) => this.schedule(next));
    }, delayMs);
  }
}
