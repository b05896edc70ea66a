import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { ThrottlingModule } from '../common/throttling/throttling.module';
import { UsersModule } from '../users/users.module';
import { QueueBoardAuth } from './queue-board-auth.service';
import { QueueBoardQueues } from './queue-board-queues';
import { QueueBoardRegistrar } from './queue-board.registrar';

/**
 * Bull Board at /admin/queues for admins (`queues:view`), mounted on the API's Fastify
 * instance. In the worker role (no HTTP server) it registers nothing.
 */
@Module({
  imports: [AuthModule, ThrottlingModule, UsersModule],
  providers: [QueueBoardAuth, QueueBoardQueues, QueueBoardRegistrar],
})
export class AdminQueuesModule {}
