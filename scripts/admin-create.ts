import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { isEmail } from 'class-validator';
import { parseArgs } from 'node:util';
import { AppModule } from '../src/app.module';
import { AccountService } from '../src/auth/account.service';
import { PASSWORD_MAX, PASSWORD_MIN } from '../src/auth/dto/auth.dto';
import { ConfigError, loadConfig } from '../src/config/config';
import { loadEnvFile } from '../src/config/env-file';

const USAGE = `usage: npm run admin:create -- --email <email> --password <${PASSWORD_MIN}..${PASSWORD_MAX} chars> [--name <name>]`;

/**
 * `npm run admin:create -- --email <email> --password <password> [--name <name>]`
 *
 * Creates the admin, or promotes an existing account (and sets its password, which revokes
 * its sessions). Idempotent: running it again with the same arguments changes nothing. This is
 * how a production deployment gets its first admin: there are no default credentials.
 */
async function main(): Promise<void> {
  loadEnvFile(); // .env, if any; the real environment wins
  const { values } = parseArgs({
    options: { email: { type: 'string' }, password: { type: 'string' }, name: { type: 'string' } },
  });
  const { email, password } = values;
  const name = values.name?.trim() || 'Administrator';
  if (
    !email ||
    !isEmail(email.trim()) ||
    !password ||
    password.length < PASSWORD_MIN ||
    password.length > PASSWORD_MAX ||
    name.length > 200
  ) {
    console.error(USAGE);
    process.exit(2);
  }
  const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  const app = await NestFactory.createApplicationContext(AppModule.register(config), {
    logger: ['error'],
  });
  try {
    const user = await app.get(AccountService).ensureAccount(email, password, 'admin', name);
    console.log(`admin ready: ${user.email} (${user.id})`);
  } finally {
    await app.close();
  }
}

main().catch((err: unknown) => {
  // a refused configuration names the variables; no stack trace needed
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
