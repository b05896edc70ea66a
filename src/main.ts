import 'reflect-metadata';
import cluster from 'node:cluster';
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
  if (cluster.isPrimary && config.http.processes > 1) {
    // the primary loads no application code: it forks, restarts and serves /metrics
    const { runApiCluster } = await import('./api-cluster');
    return runApiCluster(config);
  }
  const { createApp } = await import('./app.setup');
  const { closeOnSignals } = await import('./common/shutdown');
  const app = await createApp(config);
  closeOnSignals(app, config.http.shutdownTimeoutMs, config.http.shutdownDelayMs);
  await app.listen({ port: config.http.port, host: config.http.host });
}

bootstrap().catch((err: unknown) => {
  // one JSON line like every other (a configuration's names the variables), then exit
  logBootFailure(err);
  // (1, or a refusal's own: EXIT_CONFIG for a ConfigError — a variable refused at once or later
  // in the boot, MAIL_OUTBOX_DIR — or KeyPrefixClaim's PrefixInUse)
  process.exit(exitCodeOf(err));
});
