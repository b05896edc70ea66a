import { Global, Module } from '@nestjs/common';
import { OutboxRepository } from './outbox.repository';

/** Writing events (every role). The relay that publishes them is registered by the worker. */
@Global()
@Module({ providers: [OutboxRepository], exports: [OutboxRepository] })
export class OutboxModule {}
