import { WORKER_OPTIONS } from '../queue/worker-options';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import type { Job } from 'bullmq';
import { HandlesJobs } from '../queue/handles-jobs.decorator';
import type { JobPayloads } from '../queue/queues';
import { PaymentFinalizer } from './payment-finalizer.service';
import { paymentsBackoff } from './refund-settle.job';
import { RefundsService } from './refunds.service';

@Processor('payments', { ...WORKER_OPTIONS, settings: { backoffStrategy: paymentsBackoff } })
@HandlesJobs('payments.process-event', 'payments.reconcile', 'payments.cancel-intent', 'payments.settle-refund')
export class PaymentsProcessor extends WorkerHost {
  constructor(
    private readonly finalizer: PaymentFinalizer,
    private readonly refunds: RefundsService,
  ) {
    super();
  }

  async process(job: Job): Promise<unknown> {
    if (job.name === 'payments.process-event') {
      return this.finalizer.processEvent((job.data as JobPayloads['payments.process-event']).eventId);
    }
    if (job.name === 'payments.reconcile') return this.finalizer.reconcile();
    if (job.name === 'payments.settle-refund') {
      return this.refunds.settlePending((job.data as JobPayloads['payments.settle-refund']).refundId);
    }
    if (job.name === 'payments.cancel-intent') {
      return this.finalizer.cancelIntentOf((job.data as JobPayloads['payments.cancel-intent']).orderId);
    }
    throw new Error(`payments queue cannot handle job ${job.name}`);
  }
}
