import { WORKER_OPTIONS } from '../queue/worker-options';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import { DelayedError, type Job } from 'bullmq';
import { HandlesJobs } from '../queue/handles-jobs.decorator';
import type { JobPayloads } from '../queue/queues';
import { EMAIL_BUSY_RETRIES, EMAIL_BUSY_RETRY_MS } from './email-job';
import { EmailDeliveryBusyError, EmailOutcome, EmailService } from './email.service';

/** What the processor adds to an `email.send` job's data: how often it found the delivery busy. */
interface BusyCount {
  busyRetries?: number;
}

/** Order emails; delegates to the service (jobs carry ids, the service reloads). */
@Processor('email', WORKER_OPTIONS)
@HandlesJobs('email.send')
export class EmailProcessor extends WorkerHost {
  constructor(private readonly emails: EmailService) {
    super();
  }

  async process(job: Job, token?: string): Promise<EmailOutcome> {
    if (job.name !== 'email.send') throw new Error(`email queue cannot handle job ${job.name}`);
    const data = job.data as JobPayloads['email.send'] & BusyCount;
    try {
      return await this.emails.send(data);
    } catch (err) {
      // another attempt, alive, is sending it: look again in a moment (not an attempt spent,
      // and not the exponential backoff meant for a mail server that is down)
      const busy = data.busyRetries ?? 0;
      if (!(err instanceof EmailDeliveryBusyError) || !token || busy >= EMAIL_BUSY_RETRIES) throw err;
      await job.updateData({ ...data, busyRetries: busy + 1 });
      await job.moveToDelayed(Date.now() + EMAIL_BUSY_RETRY_MS, token);
      throw new DelayedError();
    }
  }
}
