import 'reflect-metadata';
import { commandFailed } from './command-failed';
import { loadConfig } from '../src/config/config';
import { loadEnvFile } from '../src/config/env-file';

/**
 * `npm run seed`: loads demo data (only with NODE_ENV=development; refused otherwise), and only into
 * a database holding nothing the seed did not create itself (refused with exit code 65 otherwise:
 * DemoSeeder). Idempotent.
 */
async function main(): Promise<void> {
  loadEnvFile(); // .env, if any; the real environment wins
  if (process.env.NODE_ENV !== 'development') {
    console.error(
      `npm run seed loads demo accounts and runs only with NODE_ENV=development (NODE_ENV is ${process.env.NODE_ENV || 'not set'}).`,
    );
    process.exit(1);
  }
  const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  // the application is loaded only once the command may run: a refusal answers at once
  const [{ NestFactory }, { AppModule }, { DemoSeeder }, { commandLogger }] = await Promise.all([
    import('@nestjs/core'),
    import('../src/app.module'),
    import('../src/seed/demo.seeder'),
    import('./command-logger'),
  ]);
  const app = await NestFactory.createApplicationContext(AppModule.register(config), {
    logger: commandLogger(['error', 'warn']),
    abortOnError: false, // a refused DATABASE_URL exits EXIT_CONFIG (commandFailed), not Nest's 1
  });
  try {
    const lines = await app.get(DemoSeeder).run();
    for (const line of lines) console.log(`[seed] ${line}`);
  } finally {
    await app.close();
  }
}

main().catch(commandFailed);
