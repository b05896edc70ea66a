import { WORKER_OPTIONS } from '../queue/worker-options';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import type { Job } from 'bullmq';
import { HandlesJobs } from '../queue/handles-jobs.decorator';
import type { JobPayloads } from '../queue/queues';
import { ReservationExpiryService } from './reservation-expiry.service';

/** Reservation expiry jobs; delegates to the service (jobs carry ids, handlers reload). */
@Processor('orders', WORKER_OPTIONS)
@HandlesJobs('orders.expire-reservation', 'orders.sweep-expired')
export class OrdersProcessor extends WorkerHost {
  constructor(private readonly expiry: ReservationExpiryService) {
    super();
  }

  async process(job: Job): Promise<unknown> {
    switch (job.name) {
      case 'orders.expire-reservation':
        return this.expiry.expire((job.data as JobPayloads['orders.expire-reservation']).orderId);
      case 'orders.sweep-expired':
        return this.expiry.sweep();
      default:
        throw new Error(`orders queue cannot handle job ${job.name}`);
    }
  }
}
