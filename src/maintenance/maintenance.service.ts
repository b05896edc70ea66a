import { Injectable } from '@nestjs/common';
import { RefreshTokenRepository } from '../auth/refresh-token.repository';
import { Clock } from '../common/time/clock';
import { drainBatches } from '../database/batched-delete';
import { IdempotencyService } from '../idempotency/idempotency.service';
import { OutboxRepository } from '../outbox/outbox.repository';
import { OnJob } from '../queue/on-job.decorator';
import { JobName } from '../queue/queues';

const OUTBOX_RETENTION_MS = 7 * 86_400_000;
/** Ended sessions are kept a while for security investigations, then removed. */
const REFRESH_FAMILY_RETENTION_MS = 30 * 86_400_000;

/** Housekeeping jobs: expired idempotency records, old published outbox rows, ended sessions. */
@Injectable()
export class MaintenanceService {
  constructor(
    private readonly idempotency: IdempotencyService,
    private readonly outbox: OutboxRepository,
    private readonly refreshTokens: RefreshTokenRepository,
    private readonly clock: Clock,
  ) {}

  @OnJob(JobName.PurgeIdempotencyKeys)
  purgeIdempotencyKeys(): Promise<number> {
    return this.idempotency.purgeExpired();
  }

  @OnJob(JobName.PurgeOutbox)
  purgeOutbox(): Promise<number> {
    const before = this.ago(OUTBOX_RETENTION_MS);
    return drainBatches(() => this.outbox.purgePublished(before));
  }

  @OnJob(JobName.PurgeRefreshTokens)
  async purgeRefreshTokens(): Promise<number> {
    const before = this.ago(REFRESH_FAMILY_RETENTION_MS);
    const families = await drainBatches(() => this.refreshTokens.purgeEnded(before));
    // the tombstones of sessions deleted with their account: kept as long as ended sessions
    await drainBatches(() => this.refreshTokens.purgeDeletedBefore(before));
    return families;
  }

  private ago(ms: number): Date {
    return new Date(this.clock.now().getTime() - ms);
  }
}
