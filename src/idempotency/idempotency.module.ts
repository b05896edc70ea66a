import { Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { IdempotencyBodyEntity } from './entities/idempotency-body.entity';
import { IdempotencyKeyEntity } from './entities/idempotency-key.entity';
import { IdempotencyInterceptor } from './idempotency.interceptor';
import { IdempotencyKeyLocks } from './idempotency-key-locks';
import { IdempotencyRepository } from './idempotency.repository';
import { IdempotencyService } from './idempotency.service';
import { IdempotencyStoredAnswers } from './stored-answers';
import { STORED_ANSWERS } from '../common/throttling/rate-limit.guard';

@Module({
  imports: [TypeOrmModule.forFeature([IdempotencyKeyEntity, IdempotencyBodyEntity])],
  providers: [
    IdempotencyRepository,
    IdempotencyService,
    IdempotencyKeyLocks,
    IdempotencyInterceptor,
    { provide: APP_INTERCEPTOR, useExisting: IdempotencyInterceptor },
    // asked by the per-user rate limits before a refusal (RateLimitGuard)
    { provide: STORED_ANSWERS, useClass: IdempotencyStoredAnswers },
  ],
  exports: [IdempotencyService],
})
export class IdempotencyModule {}
