import 'reflect-metadata';
import { commandFailed } from './command-failed';
import { isEmail } from 'class-validator';
import { PLAIN_ADDRESS } from '../src/common/email';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { PASSWORD_MAX, PASSWORD_MIN } from '../src/auth/dto/auth.dto';
import { normalizePassword, passwordFits } from '../src/auth/password-form';
import { charLength } from '../src/common/http/char-length';
import { hasControlCharacters } from '../src/common/http/control-characters';
import { oneLine } from '../src/common/http/single-line';
import { loadConfig } from '../src/config/config';
import { loadEnvFile } from '../src/config/env-file';
import { guessesLog10 } from '../src/config/secret-strength';
import { DEMO_ADMIN, DEMO_CUSTOMER } from '../src/auth/demo-credentials';
import type { AccountChange } from '../src/auth/account.service';

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
 * its sessions), saying which — a takeover of an existing account also as a warning on stderr.
 * Idempotent: running it again with the same arguments changes nothing. The password must be
 * strong (zxcvbn, ADMIN_PASSWORD_MIN_GUESSES_LOG10) and not the published demo one. This is
 * how a production deployment gets its first admin: there are no default credentials. The
 * password and the name are held to the API's own rules (lengths in code points, no control
 * characters, the name on one line).
 */
async function main(): Promise<void> {
  loadEnvFile(); // .env, if any; the real environment wins
  let values: { email?: string; password?: string; 'password-stdin'?: boolean; name?: string };
  try {
    ({ values } = parseArgs({
      options: {
        email: { type: 'string' },
        password: { type: 'string' },
        'password-stdin': { type: 'boolean' },
        name: { type: 'string' },
      },
    }));
  } catch (err) {
    // an unknown option or a stray argument: a usage error (2), not an outage's 1 with a stack
    usage((err as Error).message);
  }
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
  // an admin's password as strong as a random 12-character one at the least: `password` made an
  // admin who runs the shop's refunds (review of the CLIs); the published demo pair is refused
  // too (it never signs in outside a local development instance: an admin nobody could use)
  // (judged in the form it is hashed and checked in, NFKC: `ｐａｓｓｗｏｒｄ１２３` signs in as
  // `password123`; and the demo passwords whatever the email — they are published)
  const hashed = normalizePassword(password);
  if (DEMO_PASSWORDS.includes(hashed)) usage('a published demo password: choose another');
  const [guesses] = guessesLog10([hashed], passwordWords(email, name));
  if ((guesses ?? 0) < ADMIN_PASSWORD_MIN_GUESSES_LOG10) {
    usage(
      `the password is too guessable for an admin (about 10^${Math.floor(guesses ?? 0)} guesses, 10^${ADMIN_PASSWORD_MIN_GUESSES_LOG10} needed): use a passphrase of several random words or a password manager's`,
    );
  }
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
    console.log(`admin ready: ${user.email} (${user.id}): ${told(user.change)}`);
    if (user.change.kind !== 'created' && user.change.kind !== 'unchanged') {
      // an existing account taken over: said where an operator looks, in case the email was not
      // the one meant (a colleague's, a customer's)
      console.error(`warning: ${user.email} existed already: ${told(user.change)}`);
    }
  } finally {
    await app.close();
  }
}

/** The published demo passwords (README, the seed): refused for any admin. */
const DEMO_PASSWORDS = [DEMO_ADMIN.password, DEMO_CUSTOMER.password].map(normalizePassword);

/** zxcvbn's estimate an admin's password must reach (a random 12-character password is ~12). */
const ADMIN_PASSWORD_MIN_GUESSES_LOG10 = 10;

/** What an attacker tries first for this admin: its email's parts, its name, the shop's words. */
function passwordWords(email: string, name: string): string[] {
  const parts = [email, ...email.split(/[@.+_-]+/), name, ...name.split(/\s+/)];
  return [...parts, 'admin', 'administrator', 'shop', 'orders'].filter((w) => w.length > 1);
}

/** What ensureAccount did, in words. */
function told(change: AccountChange): string {
  switch (change.kind) {
    case 'created':
      return 'created';
    case 'unchanged':
      return 'already an admin with this password, nothing changed';
    case 'role-changed':
      return `a ${change.from} account promoted to admin${change.passwordSet ? ', its password set anew' : ''}, its sessions ended`;
    case 'password-set':
      return 'an admin account whose password was set anew, its sessions ended';
    case 'taken-over':
      return 'an account registered with this email a moment ago was promoted to admin, its password set anew, its sessions ended';
  }
}

function usage(problem: string): never {
  console.error(`${problem}\n${USAGE}`);
  process.exit(2);
}

main().catch(commandFailed);
