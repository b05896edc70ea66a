import 'reflect-metadata';
import { commandFailed } from './command-failed';
import { isEmail } from 'class-validator';
import { PLAIN_ADDRESS } from '../src/common/email';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { PASSWORD_MAX, PASSWORD_MIN } from '../src/auth/dto/auth.dto';
import { passwordFits } from '../src/auth/password-form';
import { charLength } from '../src/common/http/char-length';
import { hasControlCharacters } from '../src/common/http/control-characters';
import { oneLine } from '../src/common/http/single-line';
import { loadConfig } from '../src/config/config';
import { loadEnvFile } from '../src/config/env-file';

const USAGE =
  `usage: npm run admin:create -- --email <email> [--name <name>]   (the password in ADMIN_PASSWORD: read -rs ADMIN_PASSWORD; export ADMIN_PASSWORD)\n` +
  `   or: npm run admin:create -- --email <email> --password-stdin [--name <name>]   (the password on stdin's first line)\n` +
  `   or: npm run admin:create -- --email <email> --password <password> [--name <name>]   (visible to ps and npm's logs)\n` +
  `the password: ${PASSWORD_MIN}..${PASSWORD_MAX} characters; the name: one line of at most 200`;

/**
 * `npm run admin:create -- --email <email> [--name <name>]` with the password in `ADMIN_PASSWORD`,
 * on stdin (`--password-stdin`), or — as API.md shows it — in `--password <password>`, which puts
 * it in the process list, npm's banner and npm's debug log: it works, with a warning.
 *
 * Creates the admin, or promotes an existing account (and sets its password, which revokes
 * its sessions). Idempotent: running it again with the same arguments changes nothing. This is
 * how a production deployment gets its first admin: there are no default credentials. The
 * password and the name are held to the API's own rules (lengths in code points, no control
 * characters, the name on one line).
 */
async function main(): Promise<void> {
  loadEnvFile(); // .env, if any; the real environment wins
  const { values } = parseArgs({
    options: {
      email: { type: 'string' },
      password: { type: 'string' },
      'password-stdin': { type: 'boolean' },
      name: { type: 'string' },
    },
  });
  const sources = [
    values.password !== undefined,
    values['password-stdin'] === true,
    !!process.env.ADMIN_PASSWORD,
  ];
  if (sources.filter(Boolean).length !== 1)
    usage('give the password one way: ADMIN_PASSWORD, --password-stdin or --password');
  if (values.password !== undefined) {
    console.error(
      "warning: a password given with --password is visible to ps and kept in npm's logs; prefer ADMIN_PASSWORD or --password-stdin",
    );
  }
  const password = values['password-stdin']
    ? (readFileSync(0, 'utf8').split(/\r?\n/)[0] ?? '')
    : (values.password ?? process.env.ADMIN_PASSWORD ?? '');
  const email = values.email?.trim();
  const name = values.name?.trim() || 'Administrator';
  if (!email || !isEmail(email) || !PLAIN_ADDRESS.test(email))
    usage('--email: an email address (no quotes, backslashes or spaces)');
  // as the API holds a new password: as typed and in the form it is hashed in (NFKC)
  if (!passwordFits(password, PASSWORD_MIN, PASSWORD_MAX) || hasControlCharacters(password)) {
    usage(`the password: ${PASSWORD_MIN}..${PASSWORD_MAX} characters, no control characters`);
  }
  if (charLength(name) > 200 || hasControlCharacters(name) || oneLine(name) !== name)
    usage('--name: one line of at most 200 characters');

  const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  // the application is loaded only for arguments and a configuration that hold: a refusal
  // answers at once (a start that loads it costs ~2.5 s of CPU)
  const [{ NestFactory }, { AppModule }, { AccountService }, { commandLogger }] = await Promise.all(
    [
      import('@nestjs/core'),
      import('../src/app.module'),
      import('../src/auth/account.service'),
      import('./command-logger'),
    ],
  );
  const app = await NestFactory.createApplicationContext(AppModule.register(config), {
    logger: commandLogger(['error']),
    abortOnError: false, // a refused DATABASE_URL exits EXIT_CONFIG (commandFailed), not Nest's 1
  });
  try {
    const user = await app.get(AccountService).ensureAccount(email, password, 'admin', name);
    console.log(`admin ready: ${user.email} (${user.id})`);
  } finally {
    await app.close();
  }
}

function usage(problem: string): never {
  console.error(`${problem}\n${USAGE}`);
  process.exit(2);
}

main().catch(commandFailed);
