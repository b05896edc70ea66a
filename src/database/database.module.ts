import { Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Clock } from '../common/time/clock';
import { IdGenerator } from '../common/ids';
import { APP_CONFIG, AppConfig } from '../config/config';
import { dataSourceOptions } from './data-source-options';
import { DbCircuitBreaker } from './db-circuit-breaker';
import { TransactionHost } from './transaction-host';

/** PostgreSQL through TypeORM (behind a circuit breaker), the transaction host, and the clock and id side effects. */
@Global()
@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        ...dataSourceOptions(config.database.url, { poolSize: config.database.poolSize }),
        entities: [],
        autoLoadEntities: true,
        retryAttempts: 3,
        retryDelay: 500,
      }),
    }),
  ],
  providers: [DbCircuitBreaker, TransactionHost, Clock, IdGenerator],
  exports: [DbCircuitBreaker, TransactionHost, Clock, IdGenerator],
})
export class DatabaseModule {}
