import { Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Clock } from '../common/time/clock';
import { IdGenerator } from '../common/ids';
import { APP_CONFIG, AppConfig } from '../config/config';
import { dataSourceOptions } from './data-source-options';
import { TransactionHost } from './transaction-host';

/** PostgreSQL through TypeORM, the transaction host, and the clock and id side effects. */
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
  providers: [TransactionHost, Clock, IdGenerator],
  exports: [TransactionHost, Clock, IdGenerator],
})
export class DatabaseModule {}
