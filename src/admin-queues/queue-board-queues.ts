import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Queue } from 'bullmq';
import type Redis from 'ioredis';
import { APP_CONFIG, AppConfig } from '../config/config';
import { QUEUES } from '../queue/queues';
import { bullPrefix } from '../queue/redis-connection';
import { REDIS } from '../redis/redis.module';

/**
 * Read-only handles on every queue in QUEUES for the board, on the app's shared fail-fast Redis
 * client (no offline queue) rather than QueueModule's queues: the API opens no BullMQ
 * connections of its own, nothing waits for Redis at boot or shutdown, and while Redis is away
 * a board request fails at once instead of hanging. Same key prefix as QueueModule (bullPrefix).
 */
@Injectable()
export class QueueBoardQueues implements OnApplicationShutdown {
  readonly queues: readonly Queue[];

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.queues = QUEUES.map((name) => {
      const queue = new Queue(name, {
        connection: redis,
        prefix: bullPrefix(config.redis.keyPrefix),
        // no I/O at construction: no waiting for `ready`, no INFO, no meta write
        skipWaitingForReady: true,
        skipVersionCheck: true,
        skipMetasUpdate: true,
      });
      // the shared client's errors, which the health checks report (RedisModule): without a
      // listener BullMQ wrote each one a queue's job scheduler hears (made once the board has
      // counted a queue's schedulers) to stderr with console.error, stack and all, once per queue
      queue.on('error', () => undefined);
      return queue;
    });
  }

  /** Whether the shared client is connected (else the board's API answers 503). */
  get redisReady(): boolean {
    return this.redis.status === 'ready';
  }

  /** The client is shared, so this only detaches the queues; RedisModule closes the client. */
  async onApplicationShutdown(): Promise<void> {
    await Promise.all(this.queues.map((queue) => queue.close()));
  }
}
