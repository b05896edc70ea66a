import 'reflect-metadata';
import { createApp } from './app.setup';
import { ConfigError, loadConfig } from './config/config';
import { loadEnvFile } from './config/env-file';
import { closeOnSignals } from './common/shutdown';

async function bootstrap(): Promise<void> {
  loadEnvFile(); // .env, if any; the real environment wins
  const config = loadConfig(process.env);
  const app = await createApp(config);
  closeOnSignals(app, config.http.shutdownTimeoutMs);
  await app.listen({ port: config.http.port, host: config.http.host });
}

bootstrap().catch((err: unknown) => {
  // Config errors name the variable; everything else is a crash at boot.
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
