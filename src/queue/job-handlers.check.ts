import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DiscoveryService, Reflector } from '@nestjs/core';
import { HANDLES_JOBS } from './handles-jobs.decorator';
import { JOB_QUEUE, JobName } from './queues';

export function missingHandlers(handled: Iterable<JobName>): JobName[] {
  const set = new Set(handled);
  return (Object.keys(JOB_QUEUE) as JobName[]).filter((name) => !set.has(name));
}

/** The worker refuses to boot when a job name in queues.ts has no processor declaring it. */
@Injectable()
export class JobHandlersCheck implements OnApplicationBootstrap {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly reflector: Reflector,
  ) {}

  onApplicationBootstrap(): void {
    const handled = this.discovery
      .getProviders()
      .flatMap((w) =>
        w.metatype ? (this.reflector.get<JobName[]>(HANDLES_JOBS, w.metatype) ?? []) : [],
      );
    const missing = missingHandlers(handled);
    if (missing.length > 0) {
      throw new Error(`No handler for job(s): ${missing.join(', ')}`);
    }
  }
}
