import { WORKER_OPTIONS } from '../queue/worker-options';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import { DelayedError, type Job } from 'bullmq';
import { HandlesJobs } from '../queue/handles-jobs.decorator';
import type { JobPayloads } from '../queue/queues';
import { ReservationExpiryService } from './reservation-expiry.service';

/** How long after a deadline the expiry job looks, so the guarded transition sees it as due. */
const EXPIRY_GRACE_MS = 250;

/** Reservation expiry jobs; delegates to the service (jobs carry ids, handlers reload). */
@Processor('orders', WORKER_OPTIONS)
@HandlesJobs('orders.expire-reservation', 'orders.sweep-expired')
export class OrdersProcessor extends WorkerHost {
  constructor(private readonly expiry: ReservationExpiryService) {
    super();
  }

  async process(job: Job, token?: string): Promise<unknown> {
    switch (job.name) {
      case 'orders.expire-reservation': {
        const { orderId } = job.data as JobPayloads['orders.expire-reservation'];
        const { expired, retryAt } = await this.expiry.expireOrReschedule(orderId);
        if (!retryAt || !token) return expired;
        // not due yet (the deadline was extended): the same job looks again just after it
        await job.moveToDelayed(retryAt.getTime() + EXPIRY_GRACE_MS, token);
        throw new DelayedError();
      }
      case 'orders.sweep-expired':
        return this.expiry.sweep();
      default:
        throw new Error(`orders queue cannot handle job ${job.name}`);
    }
  }
}
