import { WORKER_OPTIONS } from '../queue/worker-options';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import type { Job } from 'bullmq';
import { HandlesJobs } from '../queue/handles-jobs.decorator';
import { RecommendationsService } from './recommendations.service';

@Processor('catalog', WORKER_OPTIONS)
@HandlesJobs('catalog.recompute-recommendations')
export class CatalogProcessor extends WorkerHost {
  constructor(private readonly recommendations: RecommendationsService) {
    super();
  }

  async process(job: Job): Promise<number> {
    if (job.name === 'catalog.recompute-recommendations') return this.recommendations.recompute();
    throw new Error(`catalog queue cannot handle job ${job.name}`);
  }
}
