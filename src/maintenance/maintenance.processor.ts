import { WORKER_OPTIONS } from '../queue/worker-options';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import type { Job } from 'bullmq';
import { RefreshTokenRepository } from '../auth/refresh-token.repository';
import { Clock } from '../common/time/clock';
import { IdempotencyService } from '../idempotency/idempotency.service';
import { OutboxRepository } from '../outbox/outbox.repository';
import { HandlesJobs } from '../queue/handles-jobs.decorator';

const OUTBOX_RETENTION_MS = 7 * 86_400_000;
/** Ended sessions are kept a while for security investigations, then removed. */
const REFRESH_FAMILY_RETENTION_MS = 30 * 86_400_000;

/** Housekeeping: expired idempotency records, old published outbox rows, ended sessions. */
@Processor('maintenance', WORKER_OPTIONS)
@HandlesJobs(
  'maintenance.purge-idempotency-keys',
  'maintenance.purge-outbox',
  'maintenance.purge-refresh-tokens',
)
export class MaintenanceProcessor extends WorkerHost {
  constructor(
    private readonly idempotency: IdempotencyService,
    private readonly outbox: OutboxRepository,
    private readonly refreshTokens: RefreshTokenRepository,
    private readonly clock: Clock,
  ) {
    super();
  }

  async process(job: Job): Promise<number> {
    switch (job.name) {
      case 'maintenance.purge-idempotency-keys':
        return this.idempotency.purgeExpired();
      case 'maintenance.purge-outbox':
        return drain((before) => this.outbox.purgePublished(before), this.ago(OUTBOX_RETENTION_MS));
      case 'maintenance.purge-refresh-tokens':
        return drain(
          (before) => this.refreshTokens.purgeEnded(before),
          this.ago(REFRESH_FAMILY_RETENTION_MS),
        );
      default:
        throw new Error(`maintenance queue cannot handle job ${job.name}`);
    }
  }

  private ago(ms: number): Date {
    return new Date(this.clock.now().getTime() - ms);
  }
}

/** Repeats a batched delete until a batch removes nothing; returns the total removed. */
async function drain(batch: (before: Date) => Promise<number>, before: Date): Promise<number> {
  let total = 0;
  for (let n = await batch(before); n > 0; n = await batch(before)) total += n;
  return total;
}
