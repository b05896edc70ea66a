import { SetMetadata } from '@nestjs/common';
import type { JobName, JobOf, JobPayloads } from './queues';

export const ON_JOB = 'queue:onJob';

/**
 * What a handler of job N is called with: the job's data (typed by the registry) and, for the
 * handlers that steer the job itself (delay it, update its data), the BullMQ job and its lock
 * token. A handler may declare fewer parameters; whatever it returns is the job's return value.
 */
type JobHandler<N extends JobName> = (
  data: JobPayloads[N],
  job: JobOf<N>,
  token?: string,
) => Promise<unknown>;

/**
 * Marks the service method that runs job `name`. Found at worker boot (JobHandlers); a method
 * whose parameters do not fit the job's payload is a compile error.
 */
export function OnJob<N extends JobName>(name: N) {
  return <H extends JobHandler<N>>(
    target: object,
    key: string | symbol,
    descriptor: TypedPropertyDescriptor<H>,
  ): void => {
    SetMetadata(ON_JOB, name)(target, key, descriptor);
  };
}
