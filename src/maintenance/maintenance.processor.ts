import { Processor, WorkerHost } from '@nestjs/bullmq';
import type { Job } from 'bullmq';
import { Clock } from '../common/time/clock';
import { IdempotencyService } from '../idempotency/idempotency.service';
import { OutboxRepository } from '../outbox/outbox.repository';
import { HandlesJobs } from '../queue/handles-jobs.decorator';

const OUTBOX_RETENTION_MS = 7 * 86_400_000;

/** Housekeeping: expired idempotency records, published outbox rows past their retention. */
@Processor('maintenance')
@HandlesJobs('maintenance.purge-idempotency-keys', 'maintenance.purge-outbox')
export class MaintenanceProcessor extends WorkerHost {
  constructor(
    private readonly idempotency: IdempotencyService,
    private readonly outbox: OutboxRepository,
    private readonly clock: Clock,
  ) {
    super();
  }

  async process(job: Job): Promise<number> {
    switch (job.name) {
      case 'maintenance.purge-idempotency-keys':
        return this.idempotency.purgeExpired();
      case 'maintenance.purge-outbox': {
        const before = new Date(this.clock.now().getTime() - OUTBOX_RETENTION_MS);
        let total = 0;
        for (let n = -1; n !== 0; total += n) n = await this.outbox.purgePublished(before);
        return total;
      }
      default:
        throw new Error(`maintenance queue cannot handle job ${job.name}`);
    }
  }
}
