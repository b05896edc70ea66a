import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { parseArgs } from 'node:util';
import { AppModule } from '../src/app.module';
import { AuthService } from '../src/auth/auth.service';
import { loadConfig } from '../src/config/config';

/**
 * `npm run admin:create -- --email <email> --password <password> [--name <name>]`
 * Creates the admin, or promotes an existing account (and sets its password). Idempotent.
 * This is how a production deployment gets its first admin: there are no default credentials.
 */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { email: { type: 'string' }, password: { type: 'string' }, name: { type: 'string' } },
  });
  if (!values.email || !values.password || values.password.length < 8 || values.password.length > 128) {
    console.error('usage: npm run admin:create -- --email <email> --password <8..128 chars> [--name <name>]');
    process.exit(2);
  }
  const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  const app = await NestFactory.createApplicationContext(AppModule.register(config), { logger: ['error'] });
  try {
    const user = await app
      .get(AuthService)
      .ensureAccount(values.email, values.password, 'admin', values.name ?? 'Administrator');
    console.log(`admin ready: ${user.email} (${user.id})`);
  } finally {
    await app.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
