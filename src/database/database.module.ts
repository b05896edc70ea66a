import { Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { APP_CONFIG, AppConfig } from '../config/config';
import { dataSourceOptions } from './data-source-options';
import { DbCircuitBreaker } from './db-circuit-breaker';
import { TransactionHost } from './transaction-host';

/** PostgreSQL through TypeORM (behind a circuit breaker) and the transaction host. */
@Global()
@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        ...dataSourceOptions(config.database.url, {
          poolSize: config.database.poolSize,
          poolWaitMs: config.database.poolWaitMs,
          queryTimeoutMs: config.database.queryTimeoutMs,
        }),
        entities: [],
        autoLoadEntities: true,
        retryAttempts: 3,
        retryDelay: 500,
      }),
    }),
  ],
  providers: [DbCircuitBreaker, TransactionHost],
  exports: [DbCircuitBreaker, TransactionHost],
})
export class DatabaseModule {}
