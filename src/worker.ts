import 'reflect-metadata';
import { loadConfig } from './config/config';
import { logBootFailure } from './common/logging/boot-logger';
import { loadEnvFile } from './config/env-file';
import { exitCodeOf } from './config/exit-codes';
import { logProcessWarnings } from './common/logging/process-warnings';
import { exitOnCrash } from './common/logging/crash-log';

// an uncaught exception or unhandled rejection: one fatal JSON line, then exit 1 (crash-log.ts)
exitOnCrash();

async function bootstrap(): Promise<void> {
  loadEnvFile(); // .env, if any; the real environment wins
  const config = loadConfig(process.env);
  logProcessWarnings(config.logLevel);
  // as the API (main.ts): the application is loaded once the configuration holds, so a refused
  // one answers at once
  const [{ NestFactory }, { Logger }, { closeOnSignals }, { WorkerModule }, { bootLogger }] =
    await Promise.all([
      import('@nestjs/core'),
      import('nestjs-pino'),
      import('./common/shutdown'),
      import('./worker.module'),
      import('./common/logging/boot-logger'),
    ]);
  // creating the context initializes it: its queue workers take jobs and the outbox relay runs
  // before it resolves, so the signals are handled from the start (a SIGTERM during boot drains
  // what has started instead of killing it)
  const booting = NestFactory.createApplicationContext(WorkerModule.register(config), {
    bufferLogs: true,
    logger: bootLogger(config.logLevel), // until nestjs-pino's is there: JSON lines, also on a failed boot
    // a failure while the modules are created is thrown to the catch below (a refused
    // DATABASE_URL exits EXIT_CONFIG), not ended by Nest with exit code 1
    abortOnError: false,
  });
  closeOnSignals(booting, config.http.shutdownTimeoutMs);
  const app = await booting;
  app.useLogger(app.get(Logger));
  app.get(Logger).log('worker started');
}

bootstrap().catch((err: unknown) => {
  // one JSON line like every other (a configuration's names the variables), then exit
  logBootFailure(err);
  // (1, or a refusal's own: EXIT_CONFIG for a ConfigError — a variable refused at once or later
  // in the boot, MAIL_OUTBOX_DIR — or KeyPrefixClaim's PrefixInUse)
  process.exit(exitCodeOf(err));
});
