// not re-exported by the package's index
import { ProcessorDecoratorService } from '@nestjs/bullmq/dist/instrument/processor-decorator.service';
import type { Job } from 'bullmq';
import { Store, storage } from 'nestjs-pino/storage';
import type { Logger as PinoBaseLogger } from 'pino';

let installed: (() => PinoBaseLogger) | undefined;

/**
 * Every BullMQ job runs with a logger bound to its `jobId` (and `job` name), the way every
 * request runs with one bound to its `requestId`: lines logged while it runs — an order's
 * transitions in the worker — say which job did it.
 *
 * ProcessorDecoratorService#decorate is @nestjs/bullmq's hook for wrapping processors ("can be
 * overridden"); its provider lives inside BullModule's core module with no way to replace it,
 * so the wrapping is installed on its prototype, once per process (idempotent), before the
 * workers register (BullRegistrar, onModuleInit). `base` is read per job: the process's
 * out-of-request logger.
 */
export function installJobLogContext(base: () => PinoBaseLogger): void {
  const first = installed === undefined;
  installed = base;
  if (!first) return;
  const original = ProcessorDecoratorService.prototype.decorate;
  ProcessorDecoratorService.prototype.decorate = function decorate(
    this: ProcessorDecoratorService,
    processor: (job: Job, token?: string) => Promise<unknown>,
  ) {
    const decorated = original.call(this, processor) as typeof processor;
    return (job: Job, token?: string) =>
      storage.run(new Store(installed!().child({ jobId: job.id, job: job.name })), () =>
        decorated(job, token),
      );
  } as typeof original;
}
