import { Injectable } from '@nestjs/common';
import { Clock } from '../common/time/clock';
import { drainBatches } from '../database/batched-delete';
import { OnJob } from '../queue/on-job.decorator';
import { JobName } from '../queue/queues';
import { WebhookEventRepository } from './webhook-event.repository';

/** How long a processed provider event is kept (for an investigation), then removed. */
const WEBHOOK_EVENT_RETENTION_MS = 30 * 86_400_000;

/**
 * Removes payment provider events processed more than 30 days ago, in batches, hourly. Each holds
 * the provider's payload — the customer's name, email, card brand and last four digits, their
 * address — that nothing reads once the event is processed; the provider redelivers an event for
 * three days at most, and a late one is processed again harmlessly (its intent is re-read).
 * Unprocessed events are never removed.
 */
@Injectable()
export class WebhookEventRetention {
  constructor(
    private readonly events: WebhookEventRepository,
    private readonly clock: Clock,
  ) {}

  @OnJob(JobName.PurgeWebhookEvents)
  purge(): Promise<number> {
    const before = new Date(this.clock.now().getTime() - WEBHOOK_EVENT_RETENTION_MS);
    return drainBatches(() => this.events.purgeProcessed(before));
  }
}
