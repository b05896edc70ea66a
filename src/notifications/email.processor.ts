import { WORKER_OPTIONS } from '../queue/worker-options';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import type { Job } from 'bullmq';
import { HandlesJobs } from '../queue/handles-jobs.decorator';
import type { JobPayloads } from '../queue/queues';
import { EmailOutcome, EmailService } from './email.service';

/** Order emails; delegates to the service (jobs carry ids, the service reloads). */
@Processor('email', WORKER_OPTIONS)
@HandlesJobs('email.send')
export class EmailProcessor extends WorkerHost {
  constructor(private readonly emails: EmailService) {
    super();
  }

  async process(job: Job): Promise<EmailOutcome> {
    if (job.name === 'email.send') {
      return this.emails.send(job.data as JobPayloads['email.send']);
    }
    throw new Error(`email queue cannot handle job ${job.name}`);
  }
}
