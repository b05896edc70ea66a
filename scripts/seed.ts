import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from '../src/app.module';
import { ConfigError, loadConfig } from '../src/config/config';
import { loadEnvFile } from '../src/config/env-file';
import { DemoSeeder } from '../src/seed/demo.seeder';

/** `npm run seed`: loads demo data (only with NODE_ENV=development; refused otherwise). Idempotent. */
async function main(): Promise<void> {
  loadEnvFile(); // .env, if any; the real environment wins
  if (process.env.NODE_ENV !== 'development') {
    console.error(
      `npm run seed loads demo accounts and runs only with NODE_ENV=development (NODE_ENV is ${process.env.NODE_ENV || 'not set'}).`,
    );
    process.exit(1);
  }
  const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  const app = await NestFactory.createApplicationContext(AppModule.register(config), {
    logger: ['error', 'warn'],
  });
  try {
    const lines = await app.get(DemoSeeder).run();
    for (const line of lines) console.log(`[seed] ${line}`);
  } finally {
    await app.close();
  }
}

main().catch((err: unknown) => {
  // a refused configuration names the variables; no stack trace needed
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
