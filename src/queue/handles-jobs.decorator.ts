import { SetMetadata } from '@nestjs/common';
import type { JobName } from './queues';

export const HANDLES_JOBS = 'queue:handlesJobs';

/** Declares which job names a BullMQ processor handles (checked at worker boot). */
export const HandlesJobs = (...names: JobName[]): ClassDecorator => SetMetadata(HANDLES_JOBS, names);
