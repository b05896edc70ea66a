import { BullModule, getQueueToken } from '@nestjs/bullmq';
import { Global, Logger, Module } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { APP_CONFIG, AppConfig } from '../config/config';
import { JobQueues } from './job-queues';
import { logQueueError } from './queue-errors';
import { QUEUES } from './queues';
import { bullPrefix, queueConnectionOptions } from './redis-connection';

/**
 * BullMQ on REDIS_URL, every key under `<REDIS_KEY_PREFIX>:bull`. Registers every queue of the
 * registry and provides JobQueues, the typed way to add jobs. The queues' workers are not
 * started here: the worker's JobHandlers starts them once every job has its handler.
 */
@Global()
@Module({
  imports: [
    BullModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        connection: queueConnectionOptions(config.redis.url),
        prefix: bullPrefix(config.redis.keyPrefix),
        defaultJobOptions: {
          attempts: 8,
          backoff: { type: 'exponential', delay: 1000 },
          removeOnComplete: { age: 3600, count: 1000 },
          removeOnFail: { age: 7 * 86_400 },
          // the stack of the last failure only: BullMQ keeps one per failed attempt by default,
          // and an email job fails 60 times a day (more with the reconciler's rounds) while a
          // mail server is down — ~1 KB each, per owed email, in a Redis that must not evict
          stackTraceLimit: 1,
        },
      }),
      extraOptions: { manualRegistration: true },
    }),
    ...QUEUES.map((name) => BullModule.registerQueue({ name })),
  ],
  providers: [
    {
      provide: JobQueues,
      inject: QUEUES.map((name) => getQueueToken(name)),
      useFactory: (...queues: Queue[]) => {
        // a queue's errors (its connection's, its job scheduler's) as warning lines, limited as
        // the workers' are: without a listener BullMQ writes each to stderr with console.error,
        // stack and all, outside the JSON log — hundreds of lines a minute while Redis is down
        const logger = new Logger(QueueModule.name);
        for (const queue of queues) {
          queue.on('error', (err) => logQueueError(logger, queue.name, 'queue', err));
        }
        return new JobQueues(queues);
      },
    },
  ],
  exports: [BullModule, JobQueues],
})
export class QueueModule {}
