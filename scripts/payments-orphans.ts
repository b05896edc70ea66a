import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { commandFailed } from './command-failed';
import { loadConfig } from '../src/config/config';
import { loadEnvFile } from '../src/config/env-file';

/** Exit codes: 0 nothing found; these otherwise (a runbook step can be gated on 0). */
const EXIT_FOUND = 1;
const EXIT_USAGE = 2;
/**
 * Not all checked: the provider or the database failed, a list went past --max, or some could not
 * be told ours or another deployment's (made before intents named the shop).
 */
const EXIT_UNCHECKED = 3;

const DEFAULT_MAX = 10_000;
const USAGE =
  'usage: npm run payments:orphans -- --since <time> [--max <n>]\n' +
  '  --since: ISO 8601, a date (2026-03-01, UTC) or a time with its offset (2026-03-01T09:40:00Z,\n' +
  '           …+05:30): the backup the database was restored from was taken after it\n' +
  `  --max:   how many intents, refunds and disputes of each kind are read at most (default ${DEFAULT_MAX})\n` +
  'exit 0: nothing found; 1: found (printed, one a line); 2: usage; 3: not all checked (or not all\n' +
  '        told ours: see the message)';
/** A date, or a date and time with its offset: a time without one would be read in local time. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2}))?$/;

/**
 * `npm run payments:orphans -- --since <time>`: after PostgreSQL was restored from a backup while
 * the payment provider kept its newer state, lists what the provider made since `--since` that the
 * database does not account for — intents of ours (naming this shop) whose order or payment is
 * missing, or which took money the database does not record; refunds and disputes not recorded
 * (PaymentOrphans); and how many it could not tell ours from another deployment's. The
 * webhook events of the time between went with the database, and the provider never sends again
 * an event it was answered 200 for. Read-only: it changes nothing, here or at the provider, and
 * touches no Redis.
 */
async function main(): Promise<number> {
  loadEnvFile(); // .env, if any; the real environment wins
  let values: { since?: string; max?: string };
  try {
    ({ values } = parseArgs({
      options: { since: { type: 'string' }, max: { type: 'string' } },
    }));
  } catch (err) {
    // an unknown option or a stray argument: usage (2), not "not all checked" (3) with a stack
    usage((err as Error).message);
  }
  if (values.since === undefined || !ISO_TIME.test(values.since))
    usage('--since: the time to look from, ISO 8601 with its offset (or a date)');
  const since = new Date(values.since);
  if (Number.isNaN(since.getTime()) || since.getTime() > Date.now())
    usage('--since: a time that was, ISO 8601 with its offset (or a date)');
  // a day that does not exist (2026-02-30) was rolled over by Date to 2026-03-02: two days never
  // looked at, exit 0 (review of the CLIs)
  const [year, month, day] = values.since.slice(0, 10).split('-').map(Number) as [
    number,
    number,
    number,
  ];
  const calendar = new Date(Date.UTC(year, month - 1, day));
  if (calendar.getUTCMonth() !== month - 1 || calendar.getUTCDate() !== day)
    usage('--since: no such date');
  const max = values.max === undefined ? DEFAULT_MAX : Number(values.max);
  if (!Number.isSafeInteger(max) || max < 1 || max > 1_000_000)
    usage('--max: a whole number from 1 to 1000000');

  const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  const [{ NestFactory }, { PaymentOrphansModule }, { PaymentOrphans }, { commandLogger }] =
    await Promise.all([
      import('@nestjs/core'),
      import('../src/payments/payment-orphans.module'),
      import('../src/payments/payment-orphans'),
      import('./command-logger'),
    ]);
  // the database, the gateway and what reads them, no more (no Redis: PaymentOrphansModule)
  const app = await NestFactory.createApplicationContext(PaymentOrphansModule.register(config), {
    logger: commandLogger(['error']),
    // a refused DATABASE_URL exits EXIT_CONFIG, a database that does not answer EXIT_UNCHECKED
    // (commandFailed) — Nest's own ending, exit 1, said "found"
    abortOnError: false,
  });
  let report;
  try {
    report = await app.get(PaymentOrphans).find(since, max);
  } finally {
    await app.close();
  }
  for (const orphan of report.orphans) console.log(orphan.line);
  const { intents, refunds, disputes } = report.listed;
  console.log(
    `${report.orphans.length} found among the ${intents} intents, ${refunds} refunds and ${disputes} ` +
      `disputes made at the payment provider since ${since.toISOString()}`,
  );
  if (report.unsure > 0) {
    console.error(
      `${report.unsure} more (intents, refunds or disputes) not listed: of intents that name an order this database ` +
        "does not have and no shop or another's (metadata.shop) — ours the restore lost (made before intents carried " +
        "this shop's id, or before a restore from a backup older than it gave this database a new one), or another " +
        "deployment's on this Stripe account: look at each at the payment provider by hand (since " +
        `${since.toISOString()}, metadata.orderId set) before refunding or cancelling anything`,
    );
  }
  if (!report.complete) {
    console.error(
      `a list had more than ${max} since ${since.toISOString()}: its oldest were not looked at — ` +
        'run again with a larger --max',
    );
  }
  // not all checked wins: a runbook that settles what is listed on 1 must still look further
  if (!report.complete || report.unsure > 0) return EXIT_UNCHECKED;
  return report.orphans.length > 0 ? EXIT_FOUND : 0;
}

function usage(problem: string): never {
  console.error(`${problem}\n${USAGE}`);
  process.exit(EXIT_USAGE);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => commandFailed(err, EXIT_UNCHECKED),
);
