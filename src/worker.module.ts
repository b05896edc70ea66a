import { DynamicModule, Module } from '@nestjs/common';
import { AppModule } from './app.module';
import { AppConfig } from './config/config';

/**
 * The worker role: the same feature modules as the API plus the BullMQ processors and
 * schedulers, which only run here.
 */
@Module({})
export class WorkerModule {
  static register(config: AppConfig): DynamicModule {
    return {
      module: WorkerModule,
      imports: [AppModule.register(config)],
    };
  }
}
