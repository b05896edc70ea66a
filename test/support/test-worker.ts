import { DynamicModule, INestApplicationContext, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from '../../src/app.module';
import { AppConfig } from '../../src/config/config';
import { OutboxPublisher } from '../../src/outbox/outbox.publisher';
import { QueueModule } from '../../src/queue/queue.module';
import { WorkerModule } from '../../src/worker.module';

/** The real worker role (processors, relay, schedulers running) for end-to-end job tests. */
export async function bootTestWorker(config: AppConfig): Promise<INestApplicationContext> {
  const ctx = await NestFactory.createApplicationContext(WorkerModule.register(config), {
    logger: false,
  });
  await ctx.init();
  return ctx;
}

@Module({})
class PublisherOnlyModule {
  static register(config: AppConfig): DynamicModule {
    return {
      module: PublisherOnlyModule,
      imports: [AppModule.register(config), QueueModule],
      providers: [OutboxPublisher],
      exports: [OutboxPublisher],
    };
  }
}

/** Queues and the outbox publisher, but no processors or loops: tests drive relays by hand. */
export async function bootPublisherContext(config: AppConfig): Promise<INestApplicationContext> {
  const ctx = await NestFactory.createApplicationContext(PublisherOnlyModule.register(config), {
    logger: false,
  });
  await ctx.init();
  return ctx;
}
