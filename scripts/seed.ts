import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from '../src/app.module';
import { loadConfig } from '../src/config/config';
import { DemoSeeder } from '../src/seed/demo.seeder';

/** `npm run seed`: loads demo data (development only; refused in production). Idempotent. */
async function main(): Promise<void> {
  const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  if (config.isProduction) {
    console.error('npm run seed is for development only (NODE_ENV=production).');
    process.exit(1);
  }
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
  console.error(err);
  process.exit(1);
});
