import { BullModule } from '@nestjs/bullmq';
import { Global, Module } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import { QUEUES } from './queues';
import { bullPrefix, redisOptionsFromUrl } from './redis-connection';

/** BullMQ on REDIS_URL, every key under `<REDIS_KEY_PREFIX>:bull`. Registers every queue. */
@Global()
@Module({
  imports: [
    BullModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        connection: {
          ...redisOptionsFromUrl(config.redis.url),
          maxRetriesPerRequest: null,
          // reconnect at most 5 s after Redis is back (BullMQ's default backs off to 20 s), so
          // the relay, the workers and the schedulers resume soon after an outage
          retryStrategy: (times: number) => Math.min(500 * times, 5_000),
        },
        prefix: bullPrefix(config.redis.keyPrefix),
        defaultJobOptions: {
          attempts: 8,
          backoff: { type: 'exponential', delay: 1000 },
          removeOnComplete: { age: 3600, count: 1000 },
          removeOnFail: { age: 7 * 86_400 },
        },
      }),
    }),
    ...QUEUES.map((name) => BullModule.registerQueue({ name })),
  ],
  exports: [BullModule],
})
export class QueueModule {}
