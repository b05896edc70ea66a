import {
  BeforeApplicationShutdown,
  Injectable,
  Logger,
  OnApplicationBootstrap,
} from '@nestjs/common';
import { OutboxRepository } from './outbox.repository';
import { OutboxPublisher } from './outbox.publisher';

export const OUTBOX_MAX_ATTEMPTS = 10;
const LEASE_MS = 30_000;
const PUBLISH_TIMEOUT_MS = 5_000;
const IDLE_POLL_MS = 250;

/** 1 s, 2 s, 4 s … capped at 5 min. */
export function outboxBackoffMs(attempts: number): number {
  return Math.min(1000 * 2 ** Math.max(0, attempts - 1), 300_000);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`publish timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Moves committed outbox rows to BullMQ (worker role). Rows are leased with
 * FOR UPDATE SKIP LOCKED, so any number of relays can run; a failed publish is retried with
 * exponential backoff and parked as 'dead' after OUTBOX_MAX_ATTEMPTS.
 */
@Injectable()
export class OutboxRelay implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(OutboxRelay.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;
  private stopped = false;

  constructor(
    private readonly outbox: OutboxRepository,
    private readonly publisher: OutboxPublisher,
  ) {}

  onApplicationBootstrap(): void {
    this.schedule(0);
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One batch: returns how many rows were published and how many failed. */
  async relayOnce(limit = 100): Promise<{ published: number; failed: number }> {
    const rows = await this.outbox.claimDue(limit, LEASE_MS);
    const published: string[] = [];
    let failed = 0;
    for (const row of rows) {
      try {
        await withTimeout(this.publisher.publish(row), PUBLISH_TIMEOUT_MS);
        published.push(row.id);
      } catch (err) {
        failed++;
        const message = err instanceof Error ? err.message : String(err);
        const dead = row.attempts >= OUTBOX_MAX_ATTEMPTS;
        await this.outbox.markFailed(row.id, message, outboxBackoffMs(row.attempts), dead);
        if (dead) this.logger.error(`outbox row ${row.id} (${row.topic}) parked as dead: ${message}`);
      }
    }
    await this.outbox.markPublished(published);
    return { published: published.length, failed };
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      const run = this.relayOnce()
        .then((r) => (r.published > 0 ? 0 : IDLE_POLL_MS))
        .catch((err: unknown) => {
          this.logger.warn(`outbox relay batch failed: ${String(err)}`);
          return 2000;
        });
      this.running = run;
      void run.then((next) => this.schedule(next));
    }, delayMs);
  }
}
