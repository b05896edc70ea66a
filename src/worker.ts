import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { Logger } from 'nestjs-pino';
import { ConfigError, loadConfig } from './config/config';
import { loadEnvFile } from './config/env-file';
import { closeOnSignals } from './common/shutdown';
import { WorkerModule } from './worker.module';

async function bootstrap(): Promise<void> {
  loadEnvFile(); // .env, if any; the real environment wins
  const config = loadConfig(process.env);
  const app = await NestFactory.createApplicationContext(WorkerModule.register(config), {
    bufferLogs: true,
  });
  app.useLogger(app.get(Logger));
  closeOnSignals(app, config.http.shutdownTimeoutMs);
  await app.init();
  app.get(Logger).log('worker started');
}

bootstrap().catch((err: unknown) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
