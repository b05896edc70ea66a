import { Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource, DataSourceOptions } from 'typeorm';
import { APP_CONFIG, AppConfig } from '../config/config';
import { BOOT_CONNECT_ATTEMPTS, BOOT_CONNECT_RETRY_MS, refusedAs } from './connection-refusal';
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
        retryAttempts: BOOT_CONNECT_ATTEMPTS,
        retryDelay: BOOT_CONNECT_RETRY_MS,
      }),
      // a server that refuses the connection (a stale password, a role or database that does not
      // exist) is ConnectionRefused once the attempts are spent: the boot stops with exit code
      // EXIT_CONFIG naming DATABASE_URL and the SQLSTATE (it was 1, and TypeORM's stack)
      dataSourceFactory: async (options?: DataSourceOptions) => {
        const dataSource = new DataSource(options!);
        try {
          return await dataSource.initialize();
        } catch (err) {
          throw refusedAs('DATABASE_URL', err);
        }
      },
    }),
  ],
  providers: [DbCircuitBreaker, TransactionHost],
  exports: [DbCircuitBreaker, TransactionHost],
})
export class DatabaseModule {}
