import { isIP } from 'node:net';
import { z } from 'zod';
import { type ConnectionOptions, parse as parsePgUrl } from 'pg-connection-string';
import { EXIT_CONFIG } from './exit-codes';
import { parseConnectionUrl } from 'nodemailer/lib/shared';
import {
  JwtKeyPair,
  JwtVerifyOnlyKey,
  keyGivenAsSecret,
  parseJwtKeyPair,
  parseJwtVerifyOnlyKey,
} from './jwt-keys';
import { ESTIMATED_LENGTH, guessesLog10 } from './secret-strength';
import { usableCpus } from './usable-cpus';

/** Injection token for the parsed, immutable configuration. */
export const APP_CONFIG = Symbol('APP_CONFIG');

/** The most API processes one primary forks (API_PROCESSES, or one per usable CPU for 0). */
const MAX_API_PROCESSES = 64;

/**
 * Built-in secrets for a local development instance. Public (they are in the source), so they
 * are used only with NODE_ENV=development set explicitly, and refused everywhere else even
 * when given on purpose.
 */
/** How much longer than an access token a session and its idle limit must live (loadConfig). */
const SESSION_MARGIN_SECONDS = 60;

/** The webhooks' secrets' formats (the schema's; webhookSecretProblems judges the values that have them). */
const WEBHOOK_SECRET_FORMAT = {
  STRIPE_WEBHOOK_SECRET: /^whsec_[\x21-\x7e]{16,}$/,
  STORAGE_WEBHOOK_TOKEN: /^[\x21-\x7e]{16,512}$/,
} as const;

export const DEV_SECRETS = {
  JWT_SECRET: 'dev-only-insecure-jwt-secret-change-me',
  STRIPE_WEBHOOK_SECRET: 'whsec_dev_only_insecure_webhook_secret',
  // MinIO's out-of-the-box root credentials, as a local `minio server` or compose service has them
  STORAGE_ACCESS_KEY_ID: 'minioadmin',
  STORAGE_SECRET_ACCESS_KEY: 'minioadmin',
  STORAGE_WEBHOOK_TOKEN: 'dev-only-storage-webhook-token',
} as const;

/**
 * What every process needs outside development (the simulated payment gateway, too, exists
 * only in development, hence STRIPE_SECRET_KEY).
 */
const REQUIRED_OUTSIDE_DEVELOPMENT = [
  // their defaults are a local checkout's services: a deployment that forgot one would quietly
  // use whatever listens there (a Redis without persistence, a stale `shop` database)
  'DATABASE_URL',
  'REDIS_URL',
  // the default is a local MinIO: upload URLs handed to clients would point at their own machine
  'STORAGE_ENDPOINT',
  'STORAGE_ACCESS_KEY_ID',
  'STORAGE_SECRET_ACCESS_KEY',
  'STORAGE_WEBHOOK_TOKEN',
  'STRIPE_SECRET_KEY',
  'STRIPE_WEBHOOK_SECRET',
] as const;

/** The domain of the sender development mails from (and .env.example shows): none a provider verifies. */
const PLACEHOLDER_MAIL_DOMAIN = 'shop.example';
const PLACEHOLDER_MAIL_FROM = `Shop <orders@${PLACEHOLDER_MAIL_DOMAIN}>`;
/**
 * A sender: `user@host`, or that in angle brackets after a display name (outside development with
 * SMTP_URL the host must be a domain with a dot: secretProblems; a local catcher's `@localhost`
 * or `@mailpit` serves development).
 */
const SENDER =
  /^(?:[^<>]*<[^\s@<>"]+@[^\s@<>".]+(?:\.[^\s@<>".]+)*>|[^\s@<>"]+@[^\s@<>".]+(?:\.[^\s@<>".]+)*)$/;

const bool = (def: boolean) =>
  z
    .enum(['true', 'false', '1', '0'])
    .default(def ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1');

// digits only: a value of spaces or a tab (kept by a quoted .env entry) would coerce to 0, which
// switches a cap off or picks a random port
const optionalInt = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,12}$/, 'must be a whole number (digits only)')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
/** Stripe's smallest charge in INR, USD and EUR (minor units); higher in many other currencies. */
const STRIPE_MINIMUM_CHARGE = 50;
/** The smallest order total taken: ORDER_MINIMUM_AMOUNT, or the payment provider's smallest charge. */
const minimumOrderOf = (e: { ORDER_MINIMUM_AMOUNT?: number; STRIPE_SECRET_KEY?: string }): number =>
  e.ORDER_MINIMUM_AMOUNT ?? (e.STRIPE_SECRET_KEY ? STRIPE_MINIMUM_CHARGE : 1);
/** Stripe's largest charge: an amount of at most eight digits (minor units). */
const STRIPE_MAXIMUM_CHARGE = 99_999_999;

const int = (def: number, min: number, max: number) => optionalInt(min, max).default(String(def));

/** The shortest and longest PAYMENT_ORPHAN_SWEEP_INTERVAL_MS but 0 (off): a minute, a day. */
const ORPHAN_SWEEP_INTERVAL_MIN_MS = 60_000;
const ORPHAN_SWEEP_INTERVAL_MAX_MS = 86_400_000;

/**
 * The shortest reservation taken outside development, in seconds. A customer needs minutes to pay
 * (a card form, 3-D Secure in the bank's app, a UPI approval): an operator who meant 15 minutes
 * and wrote `15` had every payment expire under its customer — the stock released, the order
 * expired, the money refunded — and nothing at boot said so. Development keeps values down to 10
 * s (the expiry tests wait them out).
 */
const RESERVATION_TTL_MINIMUM = 300;

/** Values of a flag or a number, never a host's name (a template's, or the wrong variable's). */
const NOT_HOST_NAMES = new Set([
  'true',
  'false',
  'yes',
  'no',
  'on',
  'off',
  'nan',
  'infinity',
  'null',
  'undefined',
  'none',
]);

/**
 * An IP address, or a host name that is not a mistyped IPv4 address: all labels numeric
 * (`192.168.110`, `127.0.0.1.1`), or three of four (`127.0.0.l`); nor a flag or a number
 * (`yes`, `TRUE`, `NaN`, `1e3`: a template's value, or one meant for another variable — METRICS_HOST
 * `yes` failed to resolve and the process ran without metrics, a warning its only trace), nor a
 * label in hex (`0x10`, `0x7f.1`: the resolver reads it as an IPv4 address, 0.0.0.16).
 */
function isBindHost(host: string): boolean {
  if (isIP(host) !== 0) return true;
  const labels = host.split('.');
  const numeric = labels.filter((l) => /^\d+$/.test(l)).length;
  if (numeric === labels.length || (labels.length === 4 && numeric >= 3)) return false;
  if (NOT_HOST_NAMES.has(host.toLowerCase()) || !Number.isNaN(Number(host))) return false;
  if (labels.some((l) => /^0x[\da-f]*$/i.test(l))) return false;
  return labels.every((l) => /^[a-z\d]([a-z\d-]{0,61}[a-z\d])?$/i.test(l));
}

/** A URL with no host, in its authority or as `?host=` (a Unix socket's directory for PostgreSQL). */
const namesNoHost = (parsed: URL): boolean =>
  parsed.hostname === '' && !parsed.searchParams.has('host');

/**
 * A URL of one of `protocols`. One that does not parse is an issue naming the variable — never
 * the parser's own error, which quotes the whole value (a password with `/` or `#` in it).
 */
/** Whether a URL's percent-encoded part decodes (`%zz` does not). */
function decodes(part: string): boolean {
  try {
    decodeURIComponent(part);
    return true;
  } catch {
    return false;
  }
}

const url = (protocols: string[], opts: { hostless?: 'checked-later' } = {}) =>
  z.string().superRefine((v, ctx) => {
    let parsed: URL | undefined;
    try {
      parsed = new URL(v);
    } catch {
      parsed = undefined;
    }
    if (!parsed || !protocols.includes(parsed.protocol)) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: `must be a URL using ${protocols.join(' or ')} (characters such as / # ? @ in a password percent-encoded)`,
      });
    } else if (!decodes(parsed.username) || !decodes(parsed.password)) {
      // `S3cret%zz`: every client decodes the user and password, and the boot died later in the
      // driver ("URI malformed", exit 1, the variable unnamed: restarted again and again)
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message:
          'its user or password is not percent-encoded correctly (a % must start %XX: a literal % is %25)',
      });
    } else if (parsed.hostname === '' && opts.hostless !== 'checked-later') {
      // `redis://${REDIS_HOST}` with the variable unset: every client library takes no host for
      // this machine's, and the process would quietly use whatever listens here (a `?host=` is
      // PostgreSQL's way to a socket, and DATABASE_URL's hosts are checked later)
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: 'must name a host',
      });
    }
  });

/**
 * REDIS_URL: host, port, user, password, database number (the path) and TLS (`rediss:`) only —
 * what every Redis client here reads alike. A query string or fragment is refused: ioredis (the
 * shared client: readiness, the queue board, queue depth metrics) reads `?db=`, `?password=` or
 * `?family=` as options that BullMQ's connections and the catalog store ignore, so the queues
 * would live in another database than the board shows, or only some clients would authenticate
 * (readiness green while the worker's queues never connect).
 */
const redisUrl = url(['redis:', 'rediss:']).superRefine((v, ctx) => {
  let parsed: URL;
  try {
    parsed = new URL(v);
  } catch {
    return; // (url() has said so)
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      message:
        'takes no query string or fragment (a database number goes in the path: redis://host:6379/2; a password before the host: redis://:password@host:6379)',
    });
  }
  if (!/^\/?(\d{1,5})?$/.test(parsed.pathname)) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      message: 'its path is a database number (redis://host:6379/2) or nothing',
    });
  }
});

/**
 * The object store's URLs, as they are used. STORAGE_BASE_URL is the start of every public image
 * URL (`<base>/<key>`): a user or password in it was handed to every client in every product's
 * images (a CDN's credentials), and a query string or fragment broke every one of them
 * (`…?v=1/products/…`). STORAGE_ENDPOINT's user and password were dropped without a word (its
 * keys are STORAGE_ACCESS_KEY_ID and STORAGE_SECRET_ACCESS_KEY).
 */
const storageUrlProblems =
  (name: 'STORAGE_ENDPOINT' | 'STORAGE_BASE_URL') =>
  (v: string, ctx: z.RefinementCtx): void => {
    let parsed: URL;
    try {
      parsed = new URL(v);
    } catch {
      return; // (url() has said so)
    }
    if (parsed.username !== '' || parsed.password !== '') {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message:
          name === 'STORAGE_BASE_URL'
            ? 'takes no user or password: it begins every public image URL, handed to every client'
            : 'takes no user or password (they would be ignored: the keys are STORAGE_ACCESS_KEY_ID and STORAGE_SECRET_ACCESS_KEY)',
      });
    }
    if (name === 'STORAGE_BASE_URL' && /[?#]/.test(v)) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message:
          "takes no query string or fragment: each image's key is added after it (…?v=1/products/…)",
      });
    }
  };

/** An access key or secret: printable, no spaces (a secret file's trailing newline, a quoted blank). */
const credential = (min: number, max: number) =>
  z
    .string()
    .min(min)
    .max(max)
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces or line breaks');

/**
 * A JWT_SECRET with fewer different characters than this is refused (32 × "a", "changeme…"):
 * whoever guesses it signs admin tokens. A random hex secret has 16, base64 about 30.
 */
const JWT_SECRET_MIN_DISTINCT = 12;
/**
 * … and a webhook secret (16 characters at least) with fewer than this: not JWT_SECRET's 12,
 * which 16 random hex characters (`openssl rand -hex 8`) miss 84% of the time and 32 (`-hex 16`)
 * 1.7%; 16 of them have fewer than 5 about once in 2 million.
 */
const WEBHOOK_SECRET_MIN_DISTINCT = 5;
/**
 * Outside development, a JWT_SECRET an attacker trying patterns first — sequences, keyboard rows,
 * repeats, common words, and this deployment's own (deploymentWords) — would find in fewer than
 * 10^(this × its length) guesses (guessesLog10) is refused: whoever guesses it signs admin tokens.
 * Random output scores about one per character (32 random hex characters, `openssl rand -hex 16`,
 * the shortest random key taken: 0.83 at the least of 20,000 draws; `openssl rand -hex 32` 0.92
 * and `-base64 32` 0.97 at the least of 2,000), a key made of words far less: `shop-orders-jwt-secret-production-2026` 0.53
 * (20 in all — it booted under a bar of 10^20, and a list of 17 words from one access token's own
 * iss and aud found it in 3 s), ten such words and a digit 0.71 at the most of 500 made up, a
 * label before 32 random hex characters (`shop-orders-jwt-…`) 0.81. By length, not a bar of its
 * own: a key of words is long, and each word added adds to zxcvbn's estimate (a sequence's
 * count of orders) far more than to an attacker's work.
 */
const JWT_SECRET_MIN_GUESSES_LOG10_PER_CHARACTER = 0.8;
/**
 * … and a webhook secret (after `whsec_`) below 10^(this × its length): each guess is a request to
 * us, not an offline hash, so less; 16 random hex characters (`openssl rand -hex 8`, the shortest
 * taken) score 0.74 per character at the least of 50,000 draws, `shop-orders-storage-webhook-2026`
 * 0.54, `storage-webhook-token-prod-1` 0.67.
 */
const WEBHOOK_SECRET_MIN_GUESSES_LOG10_PER_CHARACTER = 0.7;

/** The guesses (log10) a secret needs: `perCharacter` for each character the estimator reads. */
const guessesNeeded = (secret: string, perCharacter: number): number =>
  perCharacter * Math.min(secret.length, ESTIMATED_LENGTH);

/** The name of the application (the default JWT_ISSUER; the database sessions' application_name). */
const APP_NAME = 'shop-orders';

/** The words a deployment's secrets are made of when they are made of words (deploymentWords). */
const SECRET_WORDS = [
  'jwt',
  'secret',
  'key',
  'token',
  'signing',
  'access',
  'auth',
  'webhook',
  'storage',
  'stripe',
  'whsec',
  'production',
  'prod',
  'staging',
  'test',
  'live',
  'shop',
  'orders',
  'api',
];

/**
 * What an attacker knows, or tries first, of this deployment: the names every access token
 * carries (JWT_ISSUER, JWT_AUDIENCE), the key prefix and the bucket, the application's name —
 * each whole and in its parts — the words secrets are made of, and the years around this one.
 * zxcvbn matches them as the likeliest words there are (its `userInputs`).
 */
function deploymentWords(env: Record<string, string>): string[] {
  const names = [
    env.JWT_ISSUER ?? DEFAULT_JWT_ISSUER,
    env.JWT_AUDIENCE ?? DEFAULT_JWT_AUDIENCE,
    env.REDIS_KEY_PREFIX ?? 'shop',
    env.STORAGE_BUCKET ?? 'shop-images',
    APP_NAME,
  ];
  const year = new Date().getUTCFullYear();
  const years = Array.from({ length: 7 }, (_, i) => String(year - 3 + i));
  const words = [...names, ...names.flatMap((n) => n.split(/[^a-z0-9]+/i)), ...SECRET_WORDS];
  return [...new Set([...words.map((w) => w.toLowerCase()), ...years])].filter((w) => w.length > 1);
}

const DEFAULT_JWT_ISSUER = 'shop-orders';
const DEFAULT_JWT_AUDIENCE = 'shop-orders-api';

/** An HS256 key (JWT_SECRET, JWT_VERIFY_ONLY_SECRET): whoever has it signs admin tokens. */
const jwtSecret = z
  .string()
  .min(32)
  .refine((v) => new Set(v).size >= JWT_SECRET_MIN_DISTINCT, {
    message: `too predictable: fewer than ${JWT_SECRET_MIN_DISTINCT} different characters (use e.g. openssl rand -base64 48)`,
  });

const envSchema = z.object({
  // No default: only an explicit `development` gets development behaviour (see loadConfig).
  // One of NODE_ENVS (nodeEnvProblems): only `development` gets development behaviour,
  // `production` its extra checks, and the others (staging, test, unset) neither (API.md:
  // "anything else … gets none of them")
  NODE_ENV: z.string().optional(),
  PORT: int(3000, 0, 65535),
  METRICS_PORT: int(9465, 0, 65535),
  WORKER_METRICS_PORT: int(9464, 0, 65535),
  // unset: loopback in development (its secrets, demo admin and dev routes are public knowledge:
  // never reachable from the network by default), every interface otherwise
  HOST: z
    .string()
    .refine(
      isBindHost,
      'must be an IP address (e.g. 127.0.0.1, 0.0.0.0, ::) or a host name (not a flag or a number: yes, true, 0x10)',
    )
    .optional(),
  // the operational listeners: loopback unless a deployment says where its Prometheus reaches them.
  // An IP address or a host name (RFC 1123) — not an IPv4 address mistyped (`127.0.0.l`), which
  // failed to listen and left the process running without metrics, a warning its only trace
  METRICS_HOST: z
    .string()
    .refine(
      isBindHost,
      'must be an IP address (e.g. 127.0.0.1, 0.0.0.0, ::) or a host name (not a flag or a number: yes, true, 0x10)',
    )
    .default('127.0.0.1'),
  // API processes serving PORT together (node:cluster); 0 = one per CPU the process can use
  API_PROCESSES: int(1, 0, MAX_API_PROCESSES),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // (a URL without a host may take it from libpq's PGHOST: databaseHostProblems)
  DATABASE_URL: url(['postgres:', 'postgresql:'], { hostless: 'checked-later' }).default(
    'postgres://shop:shop@127.0.0.1:5432/shop',
  ),
  // the dedicated lock sessions' connection (session advisory locks): PostgreSQL itself or a
  // session-mode pool, when DATABASE_URL points at a transaction-mode PgBouncer; unset = DATABASE_URL
  DATABASE_LOCK_URL: url(['postgres:', 'postgresql:'], { hostless: 'checked-later' }).optional(),
  DATABASE_POOL_SIZE: int(20, 1, 500),
  // how long a request waits for a free pool connection while every one is in use (a sale's queue
  // in front of a database that answers) before 503; opening a connection gives up after 5 s (or
  // this, if shorter). Below SHUTDOWN_TIMEOUT_MS: a request queued when the process stops is answered
  DATABASE_POOL_WAIT_MS: int(8_000, 100, 600_000),
  // a statement PostgreSQL sends nothing back for this long fails (503) and its connection is
  // dropped: a stalled or vanished server frees the pool instead of holding it for TCP's ~15 min
  DATABASE_QUERY_TIMEOUT_MS: int(60_000, 1_000, 3_600_000),
  DB_BREAKER_FAILURES: int(5, 1, 1000),
  DB_BREAKER_HALF_OPEN_MS: int(5000, 100, 600_000),
  REDIS_URL: redisUrl.default('redis://127.0.0.1:6379'),
  REDIS_KEY_PREFIX: z
    .string()
    .regex(/^[a-z0-9_-]{1,32}$/i)
    .default('shop'),
  JWT_SECRET: jwtSecret.optional(),
  // the alternative to JWT_SECRET: an access-token key pair, PEM (jwt-keys.ts checks them)
  JWT_PRIVATE_KEY: z.string().optional(),
  JWT_PUBLIC_KEY: z.string().optional(),
  // a key access tokens are accepted under but never signed with, for a rotation's roll: the next
  // key, then the previous one (jwt-keys.ts parseJwtVerifyOnlyKey)
  JWT_VERIFY_ONLY_SECRET: jwtSecret.optional(),
  JWT_VERIFY_ONLY_PUBLIC_KEY: z.string().optional(),
  JWT_ISSUER: z.string().default(DEFAULT_JWT_ISSUER),
  JWT_AUDIENCE: z.string().default(DEFAULT_JWT_AUDIENCE),
  JWT_ACCESS_TTL_SECONDS: int(900, 30, 86_400),
  REFRESH_TOKEN_TTL_SECONDS: int(30 * 86_400, 3600, 365 * 86_400),
  REFRESH_TOKEN_IDLE_SECONDS: int(7 * 86_400, 600, 365 * 86_400),
  SESSIONS_PER_ACCOUNT: int(100, 1, 10_000),
  STRIPE_SECRET_KEY: z.string().min(1).optional(),
  // Stripe's are `whsec_` and 32 characters: a stub (`whsec_`, `whsec_x`) or the `whsec_…` placeholder
  // would let anyone sign webhook events
  STRIPE_WEBHOOK_SECRET: z
    .string()
    .regex(WEBHOOK_SECRET_FORMAT.STRIPE_WEBHOOK_SECRET, {
      message:
        "a webhook signing secret from Stripe: 'whsec_' then at least 16 printable characters",
    })
    .optional(),
  STRIPE_API_URL: url(['http:', 'https:']).optional(),
  STRIPE_TEST_MODE: bool(false),
  // how long a customer's payment start may wait on Stripe in all, its retries included, before
  // it answers 503 with Retry-After (the SDK's own 8 s timeout, sent three times, kept it ~25 s);
  // an admin's refund waits as long, then answers 201 with the refund pending
  PAYMENT_START_BUDGET_MS: int(8_000, 1_000, 60_000),
  // how often the worker lists what the payment provider made and looks for what the database does
  // not account for (PaymentOrphanSweep); 0: never. Milliseconds: `15` meant as minutes (or `900`
  // as seconds) would page through the provider's lists without pause, at its rate limit
  PAYMENT_ORPHAN_SWEEP_INTERVAL_MS: z
    .string()
    .regex(/^\d{1,12}$/, 'must be a whole number (digits only)')
    .transform(Number)
    .refine(
      (ms) =>
        ms === 0 || (ms >= ORPHAN_SWEEP_INTERVAL_MIN_MS && ms <= ORPHAN_SWEEP_INTERVAL_MAX_MS),
      `must be 0 (off) or from ${ORPHAN_SWEEP_INTERVAL_MIN_MS} (a minute) to ${ORPHAN_SWEEP_INTERVAL_MAX_MS} (a day), in milliseconds`,
    )
    .default('900000'),
  // NODE_ENV=development on a database or Redis that is not this machine: refused unless this says
  // they are development servers (developmentRemoteServices)
  DEVELOPMENT_REMOTE_SERVICES: bool(false),
  // outside development, PostgreSQL or Redis on another machine without TLS: refused unless its
  // host is named here, reached over a private network of its own (plainTextServiceProblems)
  SERVICES_PRIVATE_NETWORK: z.string().optional(),
  SMTP_URL: url(['smtp:', 'smtps:']).optional(),
  // an address (`orders@your-shop.com` or `Shop <orders@your-shop.com>`): anything else the mail
  // server refuses at MAIL FROM, each email retried for a day while the process looks healthy
  MAIL_FROM: z
    .string()
    .refine(
      (v) => SENDER.test(v.trim()),
      'must be an address, user@domain.tld or "Name <user@domain.tld>"',
    )
    .default(PLACEHOLDER_MAIL_FROM),
  // (a flag there is refused without SMTP_URL: outboxDirProblems)
  MAIL_OUTBOX_DIR: z.string().default('var/mail'),
  // cancellation emails a day, shop-wide, to inboxes nobody has proven (no receipt sent to them);
  // 0: none (CancellationLimits)
  CANCELLATION_EMAILS_UNPROVEN_PER_DAY: int(100, 0, 1_000_000),
  // at least RESERVATION_TTL_MINIMUM outside development (loadConfig): a short one is for tests
  RESERVATION_TTL_SECONDS: int(900, 10, 86_400),
  PURCHASE_LIMIT_UNITS_PER_PRODUCT: int(5, 0, 1_000_000),
  PURCHASE_LIMIT_OPEN_ORDERS: int(3, 0, 1_000_000),
  PURCHASE_LIMIT_ABANDONED_PER_DAY: int(10, 0, 1_000_000),
  // an ISO 4217 code this runtime knows (`IRN` for INR would boot, and every payment be refused)
  SHOP_CURRENCY: z
    .string()
    .regex(/^[A-Z]{3}$/)
    .refine(
      (code) => Intl.supportedValuesOf('currency').includes(code),
      'must be an ISO 4217 currency code (e.g. INR, EUR, USD)',
    )
    .default('INR'),
  // the smallest order total (minor units of SHOP_CURRENCY) the payment provider can charge;
  // unset: 50 with Stripe (its minimum in INR, USD and EUR; GBP 30 — higher in many other
  // currencies, HKD, MXN, THB, CZK…, and tied to the account's settlement currency, so not checked
  // here: an order under it is cancelled at its first payment start, PaymentsService#start), 1
  // with the development gateway (which charges any amount; a total of nothing is never charged)
  ORDER_MINIMUM_AMOUNT: optionalInt(1, 1_000_000_000).optional(),
  // the largest order total (minor units) the payment provider can charge: Stripe takes at most
  // eight digits (99,999,999: ₹999,999.99, $999,999.99); the development gateway is held to the
  // same, so a shop sees in development what production will refuse
  ORDER_MAXIMUM_AMOUNT: int(STRIPE_MAXIMUM_CHARGE, 1, Number.MAX_SAFE_INTEGER),
  RATE_LIMIT_ENABLED: bool(true),
  // how long a request waits for the limits' Redis before it counts as unavailable (each policy's
  // fail-open / fail-closed choice applies): 500 ms, unless Redis is across a slower link
  RATE_LIMIT_STORE_TIMEOUT_MS: int(500, 50, 10_000),
  SIGN_IN_FAILURES_PER_CLIENT: int(5, 1, 1000),
  SIGN_IN_FAILURES_PER_ACCOUNT: int(100, 1, 1_000_000),
  SIGN_IN_FAILURES_PER_IP: int(50, 1, 1_000_000),
  PASSWORD_HASH_CONCURRENCY: int(1, 1, 64), // see DEFAULT_HASH_CONCURRENCY
  CATALOG_CACHE_ENABLED: bool(true),
  TRUST_PROXY: z.string().default('false'),
  SHUTDOWN_TIMEOUT_MS: int(10_000, 100, 120_000),
  // after SIGTERM the API answers readiness 503 this long while still serving, so a load balancer
  // takes it out before it stops accepting; unset: 5 s, 0 in development
  // (at most 2 min, as SHUTDOWN_TIMEOUT_MS: a typo's extra digit kept readiness 503 for minutes
  // and ran every deploy into its supervisor's kill)
  SHUTDOWN_DELAY_MS: optionalInt(0, 120_000).optional(),
  // a client that announces a request and then sends it slowly (or never) is answered 408 and
  // its connection closed: headers within HTTP_HEADERS_TIMEOUT_MS, the whole request within
  // HTTP_REQUEST_TIMEOUT_MS (the handler's own time is not counted)
  HTTP_HEADERS_TIMEOUT_MS: int(10_000, 500, 600_000),
  HTTP_REQUEST_TIMEOUT_MS: int(30_000, 500, 600_000),
  // a connection on which nothing moves either way this long — a client that stopped reading
  // its answers (a full TCP window holds the socket forever otherwise), or a handler that never
  // answers — is closed; above every handler's own limit (a statement's DATABASE_QUERY_TIMEOUT_MS).
  // Unset: 120 s, or HTTP_REQUEST_TIMEOUT_MS, or DATABASE_QUERY_TIMEOUT_MS + 60 s, the longest
  HTTP_SOCKET_TIMEOUT_MS: optionalInt(1_000, 3_600_000).optional(),
  // S3-compatible object storage (MinIO, R2, S3) for product images
  STORAGE_ENDPOINT: url(['http:', 'https:'])
    .superRefine(storageUrlProblems('STORAGE_ENDPOINT'))
    .default('http://localhost:9000'),
  STORAGE_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name')
    .default('shop-images'),
  STORAGE_REGION: z
    .string()
    .regex(/^[a-z0-9-]{1,32}$/, 'must be a region name such as us-east-1 or auto')
    .default('us-east-1'),
  STORAGE_FORCE_PATH_STYLE: bool(true),
  STORAGE_ACCESS_KEY_ID: credential(3, 128).optional(),
  STORAGE_SECRET_ACCESS_KEY: credential(8, 256).optional(),
  STORAGE_WEBHOOK_TOKEN: z
    .string()
    .min(16)
    .max(512)
    .regex(WEBHOOK_SECRET_FORMAT.STORAGE_WEBHOOK_TOKEN, 'must be printable ASCII without spaces')
    .optional(),
  STORAGE_BASE_URL: url(['http:', 'https:'])
    .superRefine(storageUrlProblems('STORAGE_BASE_URL'))
    .optional(),
  CORS_ORIGINS: z.string().optional(),
  DOCS_ENABLED: z
    .enum(['true', 'false', '1', '0'])
    .transform((v) => v === 'true' || v === '1')
    .optional(),
});

/** Every variable the configuration reads (the deployment files must pass each one on). */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

export interface AppConfig {
  /** NODE_ENV as given; `undefined` when unset (which is NOT development). */
  env: string | undefined;
  /**
   * NODE_ENV=development, set explicitly: development-only routes, demo data, the simulated
   * payment gateway and built-in secrets. Every other value, unset included, gets none of them.
   */
  isDevelopment: boolean;
  http: {
    port: number;
    host: string;
    trustProxy: boolean | number | string;
    shutdownTimeoutMs: number;
    /** After SIGTERM: readiness 503 while still serving, this long, before the server closes. */
    shutdownDelayMs: number;
    /** Time a client has to send the request's headers / the whole request (408 after). */
    headersTimeoutMs: number;
    requestTimeoutMs: number;
    /** A connection with no traffic either way this long is closed (a client not reading). */
    socketTimeoutMs: number;
    /** API processes sharing the port (API_PROCESSES; 0 = one per CPU the process can use, at most 64). */
    processes: number;
  };
  /** The API's own Prometheus listener (GET /metrics, GET /health/live); 0 = none. */
  /** Where the METRICS_PORT / WORKER_METRICS_PORT listeners bind (loopback by default). */
  metricsHost: string;
  metricsPort: number;
  /** The worker's own /metrics and /health/live listener (0 = none). */
  workerMetricsPort: number;
  /** Swagger UI at /docs and the document at /docs-json (DOCS_ENABLED, default on everywhere). */
  docsEnabled: boolean;
  /**
   * Browser origins allowed to call the API (CORS): a list of exact origins, or `'*'` for any.
   * Default: any in development, none otherwise.
   */
  corsOrigins: string[] | '*';
  logLevel: string;
  database: {
    url: string;
    /**
     * Where the dedicated lock sessions connect (AdvisoryLockSession): the same database as `url`,
     * reached directly or through a session-mode pool (DATABASE_LOCK_URL; `url` when unset).
     */
    lockUrl: string;
    poolSize: number;
    /** How long a request waits for a free pool connection while all are in use (not a connect). */
    poolWaitMs: number;
    /** A statement the server sends nothing back for this long fails, its connection dropped. */
    queryTimeoutMs: number;
    /** Circuit breaker: opens after `failures` consecutive connection failures, probes after 1 s, doubled after each failed probe up to `halfOpenAfterMs`. */
    breaker: { failures: number; halfOpenAfterMs: number };
  };
  redis: { url: string; keyPrefix: string };
  jwt: {
    /** The HS256 key; absent when a key pair signs instead. */
    secret?: string;
    /** JWT_PRIVATE_KEY/JWT_PUBLIC_KEY: tokens signed with an asymmetric key (ES256/ES384/RS256). */
    keyPair?: JwtKeyPair;
    /**
     * JWT_VERIFY_ONLY_SECRET or JWT_VERIFY_ONLY_PUBLIC_KEY: a key tokens are accepted under, never
     * signed with (a rotation's next or previous key).
     */
    verifyOnly?: JwtVerifyOnlyKey;
    issuer: string;
    audience: string;
    accessTtlSeconds: number;
    refreshTtlSeconds: number;
    refreshIdleSeconds: number;
    /** Live sessions (refresh-token families) an account may hold; a new sign-in ends the least recently used beyond it. */
    sessionsPerAccount: number;
  };
  stripe: {
    secretKey?: string;
    webhookSecret: string;
    apiUrl?: string;
    /**
     * How long a customer's payment start, or an admin's refund, waits on the provider in all
     * (PAYMENT_START_BUDGET_MS).
     */
    startBudgetMs: number;
  };
  /**
   * How often the worker sweeps the payment provider's lists for what the database does not
   * account for (PAYMENT_ORPHAN_SWEEP_INTERVAL_MS; 0: never).
   */
  paymentOrphanSweepIntervalMs: number;
  mail: {
    smtpUrl?: string;
    from: string;
    outboxDir: string;
    /**
     * Cancellation emails the shop sends in 24 h to inboxes nobody has proven — no payment
     * receipt sent to them (CANCELLATION_EMAILS_UNPROVEN_PER_DAY; 0: none); more are suppressed.
     */
    cancellationsUnprovenPerDay: number;
  };
  reservationTtlSeconds: number;
  /**
   * Per-customer caps on open unpaid orders (INVENTORY_RESERVED / PAYMENT_PENDING), the new one
   * included: units of one product held, and number of such orders; and on unpaid orders
   * abandoned (cancelled by the customer, expired or declined) among those placed in the last 24 h — so
   * re-ordering when a reservation ends cannot hold stock all day. 0 switches a cap off.
   */
  purchaseLimits: { unitsPerProduct: number; openOrders: number; abandonedPerDay: number };
  /**
   * S3-compatible object storage for product images: clients upload straight to it with
   * pre-signed PUT URLs (SigV4); it notifies POST /v1/webhooks/storage with a bearer token.
   */
  storage: {
    endpoint: string;
    bucket: string;
    region: string;
    forcePathStyle: boolean;
    accessKeyId: string;
    secretAccessKey: string;
    /** The token the store's webhook target sends as `Authorization: Bearer <token>`. */
    webhookToken: string;
    /** Public URL prefix of ready images (`<baseUrl>/<key>`), no trailing slash. */
    baseUrl: string;
  };
  /** The one ISO 4217 currency the shop sells in. */
  currency: string;
  /**
   * What every amount charged or refunded must be a multiple of (minor units): 10 for Stripe's
   * three-decimal currencies (BHD, JOD, KWD, OMR, TND: their last digit must be 0), 1 otherwise.
   */
  amountStep: number;
  /** The smallest order total (minor units) checkout takes: less cannot be charged. */
  orderMinimumAmount: number;
  /** The largest order total checkout takes (minor units): more could never be charged. */
  orderMaximumAmount: number;
  rateLimitEnabled: boolean;
  /**
   * A limits' Redis slower than this counts as unavailable for the request asking (the request
   * limits and the sign-in limiter: redis-throttler.storage.ts askStore).
   */
  rateLimitStoreTimeoutMs: number;
  /**
   * Failed password sign-ins (login, queue board); see rate-limit.policies.ts signInBuckets.
   * `enabled` follows RATE_LIMIT_ENABLED only in development; anywhere else brute-force protection
   * stays on whatever the throttling flag says (a load test switches throttling off, never this).
   */
  signIn: {
    enabled: boolean;
    failuresPerClient: number;
    failuresPerAccount: number;
    failuresPerIp: number;
  };
  /** argon2 hashes/verifications running at once per process (the rest wait, bounded). */
  passwordHashConcurrency: number;
  catalogCacheEnabled: boolean;
}

/** A Stripe test-mode secret or restricted key (`sk_test_…`, `rk_test_…`): test cards pay with it. */
export const isTestKey = (key: string): boolean => /^(sk|rk)_test_/.test(key);

/**
 * A configuration that does not hold, naming every variable at fault. The process it stops exits
 * EXIT_CONFIG (78, as README and ARCHITECTURE say): an orchestrator tells it from an outage (1)
 * and the API's cluster primary stops instead of forking a replacement refused the same way.
 */
export class ConfigError extends Error {
  readonly exitCode = EXIT_CONFIG;

  constructor(
    readonly problems: string[],
    hint?: string,
  ) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}${hint ? `\n${hint}` : ''}`);
    this.name = 'ConfigError';
  }
}

/** Names proxy-addr (Fastify's trustProxy) takes for address ranges. */
const PROXY_RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** An IP address, or a CIDR range of one, written out in full (no `1` meaning 0.0.0.1). */
function isAddressOrRange(item: string): boolean {
  const [address, prefix, ...rest] = item.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

/**
 * Which proxies may say who the client is (X-Forwarded-For), for Fastify's `trustProxy`:
 * `false` (none: the socket's peer is the client), a hop count (`1`: the one load balancer in
 * front), or the proxies' addresses / CIDR ranges (or proxy-addr's `loopback`, `linklocal`,
 * `uniquelocal`). `true` — anyone — only in development: with it, a client picks its own
 * address per request and every per-IP limit (login, register, the default policy, the sign-in
 * failure buckets) stops counting it. An entry that is not a full address (`1.2`, a host name)
 * refuses the boot rather than silently trusting nobody, or somebody else.
 */
function parseTrustProxy(
  value: string | undefined,
  isDevelopment: boolean,
): { trustProxy: boolean | number | string; problems: string[] } {
  const v = (value ?? '').trim();
  if (v === '' || v === 'false') return { trustProxy: false, problems: [] };
  if (v === 'true') {
    return isDevelopment
      ? { trustProxy: true, problems: [] }
      : {
          trustProxy: false,
          problems: [
            'TRUST_PROXY: "true" lets any client set its own address (X-Forwarded-For) and escape every per-IP limit; ' +
              'name the load balancers (addresses or CIDR ranges) or give a hop count — "true" only with NODE_ENV=development',
          ],
        };
  }
  if (/^\d+$/.test(v)) {
    const hops = Number(v);
    // no hop trusts no proxy: `false` itself, which the development checks read (0 read as "a
    // proxy is named" turned the local-only gate off and left the demo passwords on)
    if (hops === 0) return { trustProxy: false, problems: [] };
    return {
      trustProxy: hops,
      problems:
        hops > MAX_PROXY_HOPS && !isDevelopment
          ? [
              `TRUST_PROXY: ${hops} hops trusts more proxies than any deployment has: the hops past the real ones are ` +
                `the client's own X-Forwarded-For entries, and every per-IP limit stops counting it; at most ${MAX_PROXY_HOPS} (more only with NODE_ENV=development)`,
            ]
          : [],
    };
  }
  const items = v.split(',').map((item) => item.trim());
  const bad = items.filter((item) => !PROXY_RANGE_NAMES.has(item) && !isAddressOrRange(item));
  const wide = isDevelopment
    ? []
    : items.filter((item) => !bad.includes(item) && isWideRange(item));
  return {
    trustProxy: items.join(','),
    problems: [
      ...bad.map(
        (item) =>
          `TRUST_PROXY: "${item}" is not an IP address or CIDR range (e.g. 10.0.0.0/8), a hop count, or false`,
      ),
      ...wide.map(
        (item) =>
          `TRUST_PROXY: "${item}" covers (nearly) every address, as "true" does: any client could set its own address; ` +
          `name the load balancers' range (at least /8 for IPv4, /32 for IPv6) — wider only with NODE_ENV=development`,
      ),
    ],
  };
}

/** More trusted hops than this refuses the boot outside development. */
const MAX_PROXY_HOPS = 5;

/**
 * A CIDR range wider than /8 (IPv4, also IPv4-mapped IPv6) or /32 (IPv6, unless it lies within the
 * private fc00::/7 or link-local fe80::/10): the internet, near enough.
 */
function isWideRange(item: string): boolean {
  const [address, prefix] = item.split('/');
  if (prefix === undefined) return false;
  const bits = Number(prefix);
  if (isIP(address) === 4) return bits < 8;
  const words = ipv6Words(address);
  // IPv4-mapped (::ffff:a.b.c.d, however written): proxy-addr matches IPv4 peers against it
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) return bits < 96 + 8;
  if ((words[0] & 0xfe00) === 0xfc00 && bits >= 7) return false; // unique local
  if ((words[0] & 0xffc0) === 0xfe80 && bits >= 10) return false; // link-local
  return bits < 32;
}

/** The eight 16-bit words of a valid IPv6 address (`::` expanded, a trailing dotted quad as two words). */
function ipv6Words(address: string): number[] {
  let text = address.toLowerCase();
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number);
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const part = (s: string | undefined) => (s ? s.split(':').map((w) => parseInt(w, 16)) : []);
  const front = part(head);
  const back = part(tail);
  return tail === undefined
    ? front
    : [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back];
}

/** The NODE_ENV values the processes take, each written exactly so (nodeEnvProblems). */
const NODE_ENVS = ['development', 'production', 'test', 'staging'] as const;

/**
 * A NODE_ENV that is none of NODE_ENVS: `Production` or `production ` (a quoted manifest value)
 * booted as a staging instance — every production-only check skipped (a store on loopback, a
 * sender in a reserved domain) with nothing said — and `Development` was not development either.
 * Refused, named; unset (or empty) is not development (secretProblems).
 */
function nodeEnvProblems(value: string | undefined): string[] {
  if (!value || (NODE_ENVS as readonly string[]).includes(value)) return [];
  return [
    `NODE_ENV: ${JSON.stringify(value)} is none of ${NODE_ENVS.join(', ')} (written exactly so: lower case, no spaces)`,
  ];
}

/**
 * The variables that may begin or end with whitespace: PEM keys, whose last line break is part of
 * the format (jwt-keys.ts reads them trimmed).
 */
const PEM_VARIABLES = new Set(['JWT_PRIVATE_KEY', 'JWT_PUBLIC_KEY', 'JWT_VERIFY_ONLY_PUBLIC_KEY']);

/**
 * Every other variable among `names` that begins or ends with whitespace (a space, a tab, a line
 * break: a quoted .env value, a secret file's last newline) is refused, named, its value never
 * quoted — and `trimmed` is `env` with those values trimmed (an empty one taken out: unset), for
 * the other checks to judge what was meant. The checks and the clients read a value apart: `new
 * URL()` drops the space, node-postgres read ` postgres://…` as the host `base` (a DATABASE_LOCK_URL
 * booted, readiness 200, and every payment answered 503), ioredis refused ` redis://…` as an
 * `Invalid URL` quoting the password twice and naming no variable; a JWT_SECRET with a newline signed
 * tokens no other service with the same key would accept. Refused, the value checked is the value used.
 */
function surroundingWhitespace(
  env: Record<string, string>,
  names: readonly string[],
): { trimmed: Record<string, string>; problems: string[] } {
  const trimmed = { ...env };
  const problems: string[] = [];
  for (const name of names) {
    const value = env[name];
    if (value === undefined || PEM_VARIABLES.has(name) || value === value.trim()) continue;
    problems.push(
      `${name}: begins or ends with whitespace (a space, a tab or a line break: a quoted .env value, a secret file's last newline); remove it`,
    );
    if (value.trim() === '') delete trimmed[name];
    else trimmed[name] = value.trim();
  }
  return { trimmed, problems };
}

/** Empty strings count as unset (e.g. `JWT_SECRET=` in a .env file). */
function present(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).filter(
      (entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== '',
    ),
  );
}

/**
 * CORS_ORIGINS: comma-separated exact origins (`https://shop.example,http://localhost:5173`) or
 * `*`. Each must be a bare origin (scheme, host, optional port; no path, query or credentials),
 * compared exactly with a browser's `Origin` header, so a typo is a boot error, not a silent miss.
 */
function parseCorsOrigins(
  value: string | undefined,
  isDevelopment: boolean,
): { origins: string[] | '*'; problems: string[] } {
  if (value === undefined) return { origins: isDevelopment ? '*' : [], problems: [] };
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (items.length === 1 && items[0] === '*') return { origins: '*', problems: [] };
  const problems: string[] = [];
  const origins = items.map((item) => {
    // `https://*.shop.com` parsed as an origin whose host is `*.shop.com`, which no browser sends:
    // taken, and it matched nothing (`*` means any origin only alone)
    if (item.includes('*')) {
      problems.push(
        `CORS_ORIGINS: "${item}" — a wildcard matches no origin here (each is compared exactly): list every origin, or use * alone for any`,
      );
      return item;
    }
    let origin: string | null = null;
    try {
      const u = new URL(item);
      const bare = u.pathname === '/' && !u.search && !u.hash && !u.username && !u.password;
      if ((u.protocol === 'http:' || u.protocol === 'https:') && bare && !item.endsWith('#')) {
        origin = u.origin; // normalised: lower-case host, default port dropped
      }
    } catch {
      origin = null;
    }
    if (origin === null) {
      problems.push(
        `CORS_ORIGINS: "${item}" is not an origin like https://shop.example (or use * alone)`,
      );
    }
    return origin ?? item;
  });
  return { origins, problems };
}

function describe(error: z.ZodError): string[] {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
}

/**
 * A PostgreSQL URL without a host takes it from `?host=` or from libpq's PGHOST (node-postgres
 * reads it too); with neither, it would quietly reach this machine (a template's unset variable).
 */
function databaseHostProblems(env: Record<string, string | undefined>): string[] {
  return (['DATABASE_URL', 'DATABASE_LOCK_URL'] as const).flatMap((name) => {
    const value = env[name]?.trim();
    if (!value || env.PGHOST?.trim()) return [];
    try {
      return namesNoHost(new URL(value))
        ? [
            `${name}: must name a host (for a Unix socket: ?host=/path/to/socket-directory; or set PGHOST)`,
          ]
        : [];
    } catch {
      return []; // (the schema names it)
    }
  });
}

/** The variables loadDatabaseConfig reads (but NODE_ENV). */
const DATABASE_VARIABLES = [
  'DATABASE_URL',
  'DATABASE_LOCK_URL',
  'DATABASE_POOL_SIZE',
  'DATABASE_POOL_WAIT_MS',
  'DATABASE_QUERY_TIMEOUT_MS',
  'DB_BREAKER_FAILURES',
  'DB_BREAKER_HALF_OPEN_MS',
] as const;

/**
 * Just the database settings, for tools that only migrate or create databases (the TypeORM
 * CLI, benchmarks): they need no application secrets — but DATABASE_URL itself once NODE_ENV
 * names anything but development (`test` included, as for the API and the worker).
 */
export function loadDatabaseConfig(
  env: Record<string, string | undefined> = process.env,
): AppConfig['database'] {
  // (as the API and the worker: a migration step's `Production`, or a DATABASE_URL with a space
  // before it, is refused there too)
  const spaced = surroundingWhitespace(present(env), ['NODE_ENV', ...DATABASE_VARIABLES]).problems;
  if (spaced.length > 0) throw new ConfigError(spaced);
  const nodeEnv = nodeEnvProblems(env.NODE_ENV);
  if (nodeEnv.length > 0) throw new ConfigError(nodeEnv);
  const parsed = envSchema
    .pick({
      DATABASE_URL: true,
      DATABASE_LOCK_URL: true,
      DATABASE_POOL_SIZE: true,
      DATABASE_POOL_WAIT_MS: true,
      DATABASE_QUERY_TIMEOUT_MS: true,
      DB_BREAKER_FAILURES: true,
      DB_BREAKER_HALF_OPEN_MS: true,
    } satisfies Record<(typeof DATABASE_VARIABLES)[number], true>)
    .safeParse(present(env));
  if (!parsed.success) throw new ConfigError(describe(parsed.error));
  const hostless = databaseHostProblems(env);
  if (hostless.length > 0) throw new ConfigError(hostless);
  // a development .env holding a deployment's URL: `npm start` migrated that database first, and
  // only the seed and the API refused afterwards
  const remote = developmentRemoteServices(present(env), ['DATABASE_URL', 'DATABASE_LOCK_URL']);
  if (remote.length > 0) throw new ConfigError(remote);
  const plainText = plainTextServiceProblems(env, ['DATABASE_URL', 'DATABASE_LOCK_URL']);
  if (plainText.length > 0) throw new ConfigError(plainText);
  // a deployment's migration that forgot it would migrate whatever answers at the local default
  // (a stale `shop` database a checkout once created) and exit 0, the real database left behind
  // — NODE_ENV unset included, as everywhere else (a migration step of a deployment rarely sets it),
  // and `test` (a staging deployment's value: its API and worker refuse to boot without it too)
  if (env.NODE_ENV !== 'development' && !env.DATABASE_URL?.trim()) {
    throw new ConfigError([
      `DATABASE_URL: required with NODE_ENV=${env.NODE_ENV ? JSON.stringify(env.NODE_ENV) : '(not set)'} (the default, a local development database, is for NODE_ENV=development)`,
    ]);
  }
  return databaseOf(parsed.data);
}

/** The database part of the configuration, from the parsed variables. */
function databaseOf(
  d: Pick<
    z.infer<typeof envSchema>,
    | 'DATABASE_URL'
    | 'DATABASE_LOCK_URL'
    | 'DATABASE_POOL_SIZE'
    | 'DATABASE_POOL_WAIT_MS'
    | 'DATABASE_QUERY_TIMEOUT_MS'
    | 'DB_BREAKER_FAILURES'
    | 'DB_BREAKER_HALF_OPEN_MS'
  >,
): AppConfig['database'] {
  return {
    url: d.DATABASE_URL,
    lockUrl: d.DATABASE_LOCK_URL ?? d.DATABASE_URL,
    poolSize: d.DATABASE_POOL_SIZE,
    poolWaitMs: d.DATABASE_POOL_WAIT_MS,
    queryTimeoutMs: d.DATABASE_QUERY_TIMEOUT_MS,
    breaker: { failures: d.DB_BREAKER_FAILURES, halfOpenAfterMs: d.DB_BREAKER_HALF_OPEN_MS },
  };
}

/**
 * Outside development (NODE_ENV unset, `test`, `production` — anything but an explicit
 * `development`), every secret must be given, and none may be a built-in development value; and
 * a mail server (SMTP_URL) unless MAIL_OUTBOX_DIR says mail is to be written as files.
 */
function secretProblems(env: Record<string, string>): string[] {
  const nodeEnv = env.NODE_ENV;
  if (nodeEnv === 'development') return [];
  const why =
    nodeEnv === 'production'
      ? 'required in production'
      : `required unless NODE_ENV=development (NODE_ENV is ${nodeEnv ? `"${nodeEnv}"` : 'not set'})`;
  const problems: string[] = REQUIRED_OUTSIDE_DEVELOPMENT.filter((name) => !env[name]).map(
    (name) => `${name}: ${why}`,
  );
  if (!env.JWT_SECRET && !env.JWT_PRIVATE_KEY && !env.JWT_PUBLIC_KEY) {
    problems.unshift(`JWT_SECRET: ${why} (or the key pair JWT_PRIVATE_KEY and JWT_PUBLIC_KEY)`);
  }
  // Without a mail server, mail goes to .eml files (and is recorded as sent): a development
  // convenience that a deployment gets only by asking for it, never by forgetting SMTP_URL.
  if (!env.SMTP_URL && !env.MAIL_OUTBOX_DIR) {
    problems.push(
      `SMTP_URL: ${why} (or MAIL_OUTBOX_DIR, to write outgoing mail as .eml files on purpose)`,
    );
  }
  // The sender a mail provider verifies (SES, Postmark) and SPF/DMARC judge: the built-in
  // placeholder would have every confirmation refused or filed as spam, with nothing at boot to say so.
  if (env.SMTP_URL && !env.MAIL_FROM) {
    problems.push(
      `MAIL_FROM: ${why} with SMTP_URL (the shop's sender, e.g. "Shop <orders@<your domain>>")`,
    );
  } else if (env.SMTP_URL && mailDomainOf(env.MAIL_FROM ?? '') === PLACEHOLDER_MAIL_DOMAIN) {
    // the placeholder, given explicitly (a copy of .env.example): as good as not given
    problems.push(
      `MAIL_FROM: the placeholder sender (${env.MAIL_FROM}) is refused unless NODE_ENV=development; use the address your mail provider verifies`,
    );
  } else if (
    env.SMTP_URL &&
    env.MAIL_FROM &&
    SENDER.test(env.MAIL_FROM.trim()) &&
    !mailDomainOf(env.MAIL_FROM).includes('.')
  ) {
    // `orders@myshop`: every mail server out there refuses it at MAIL FROM
    problems.push(
      `MAIL_FROM: the sender's domain must be a real one (user@domain.tld) unless NODE_ENV=development`,
    );
  }
  // A Stripe test key takes test cards: in production, orders would be paid for with 4242…. Refused
  // outside development (NODE_ENV unset or mistyped included) unless a staging instance says so.
  if (
    nodeEnv !== 'development' &&
    isTestKey(env.STRIPE_SECRET_KEY ?? '') &&
    !['true', '1'].includes(env.STRIPE_TEST_MODE ?? '')
  ) {
    problems.push(
      'STRIPE_SECRET_KEY: a test-mode key outside development (test cards would pay for orders); use a live key, ' +
        'or STRIPE_TEST_MODE=true for a staging or test instance',
    );
  }
  // Node's switch that stops checking every TLS certificate — Stripe's, the store's, the mail
  // server's, PostgreSQL's and Redis's — while the checks here count those connections as safe:
  // anyone on the path reads the keys and passwords sent over them (configuration review)
  if (env.NODE_TLS_REJECT_UNAUTHORIZED === '0') {
    problems.push(
      'NODE_TLS_REJECT_UNAUTHORIZED: 0 turns off every TLS certificate check (Stripe, the image store, mail, the database); refused unless NODE_ENV=development — trust a private CA with NODE_EXTRA_CA_CERTS instead',
    );
  }
  for (const [name, value] of Object.entries(DEV_SECRETS)) {
    if (env[name] === value) {
      problems.push(
        `${name}: the built-in development value is refused unless NODE_ENV=development`,
      );
    }
  }
  // the secrets' strength: the checks run once to learn which secrets their cheap rules leave to
  // judge, those are estimated at once (one child process: secret-strength.ts), and the checks
  // run again with the estimates
  const judged = secretsLeftToEstimate(env);
  let estimates: number[] | null = [];
  try {
    if (judged.length > 0) estimates = guessesLog10(judged, deploymentWords(env));
  } catch (err) {
    estimates = null; // (said once, here: not again as "too predictable" per secret)
    problems.push(
      `JWT_SECRET, STRIPE_WEBHOOK_SECRET, STORAGE_WEBHOOK_TOKEN: ${(err as Error).message}`,
    );
  }
  // a secret without an estimate is not taken on trust
  const strength = (secret: string) =>
    estimates === null ? Infinity : (estimates[judged.indexOf(secret)] ?? 0);
  for (const name of JWT_SECRETS) problems.push(...jwtSecretProblems(env, strength, name));
  problems.push(...webhookSecretProblems(env, strength));
  problems.push(...storageProblems(env));
  problems.push(...smtpTlsProblems(env.SMTP_URL));
  if (nodeEnv === 'production') problems.push(...productionProblems(env));
  return problems;
}

/** The secrets of `env` its cheap rules leave to the estimator (their checks run with no estimate). */
function secretsLeftToEstimate(env: Record<string, string>): string[] {
  const wanted = new Set<string>();
  const want = (secret: string) => (wanted.add(secret), Infinity);
  for (const name of JWT_SECRETS) jwtSecretProblems(env, want, name);
  webhookSecretProblems(env, want);
  return [...wanted];
}

/**
 * The secrets loadConfig(env) leaves to the estimator and the words it tells it (the deployment's):
 * what guessesLog10 is asked when `env` is loaded. Nothing in development, where none is judged.
 * (The tests estimate many environments' secrets in one child process with it.)
 */
export function secretsToEstimate(env: Record<string, string | undefined>): {
  secrets: string[];
  words: string[];
} {
  const cleaned = surroundingWhitespace(present(env), CONFIG_VARIABLES).trimmed;
  if (cleaned.NODE_ENV === 'development') return { secrets: [], words: [] };
  return { secrets: secretsLeftToEstimate(cleaned), words: deploymentWords(cleaned) };
}

/**
 * Names reserved for examples, tests and private networks (RFC 2606, 6761, 6762, 7686, 8375,
 * 9476, ICANN's .internal): no mail provider verifies a sender there, and nothing on the internet
 * answers there.
 */
const RESERVED_DOMAIN =
  /(^|\.)(example|test|invalid|localhost|local|internal|alt|onion|home\.arpa)$|(^|\.)example\.(com|net|org)$/;

/**
 * NODE_ENV=production only (a staging or test instance may use example names and a store on its
 * own machine): a sender in a reserved domain (`orders@your-shop.example`, a copy of an example)
 * has every email refused or filed as spam while the process looks healthy; a store on loopback
 * hands customers' browsers upload and image URLs on their own machines.
 */
function productionProblems(env: Record<string, string>): string[] {
  const problems: string[] = [];
  const sender = mailDomainOf(env.MAIL_FROM ?? '');
  // (the placeholder's own domain: said already)
  if (env.SMTP_URL && sender !== PLACEHOLDER_MAIL_DOMAIN && RESERVED_DOMAIN.test(sender)) {
    problems.push(
      `MAIL_FROM: ${sender} is reserved for examples and tests: no mail provider delivers from it; use the address your provider verifies`,
    );
  }
  for (const name of ['STORAGE_ENDPOINT', 'STORAGE_BASE_URL'] as const) {
    const host = hostOf(env[name]);
    if (host !== null && isThisMachine(host)) {
      problems.push(
        `${name}: on this machine (${host}) — customers' browsers upload to and load images from it, on their own machines; name the store's public address`,
      );
    }
  }
  return problems;
}

/**
 * Whether a URL's host names this machine, in any of its spellings: loopback (isLoopbackHost),
 * with a trailing dot, a `*.localhost` name, the unspecified addresses (0.0.0.0, ::) and IPv4
 * loopback mapped into IPv6 (`::ffff:7f00:1`, as URL writes `::ffff:127.0.0.1`).
 */
function isThisMachine(hostname: string): boolean {
  const host = hostname
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '');
  return (
    isLoopbackHost(host) ||
    host.endsWith('.localhost') ||
    host === '0.0.0.0' ||
    host === '::' ||
    host === '::ffff:0:0' ||
    /^::ffff:(7f[0-9a-f]{2}:[0-9a-f]{1,4}|127(\.\d{1,3}){3})$/.test(host)
  );
}

/** The host name of a URL the schema accepted; null when unset or unparsable (the schema says so). */
function hostOf(value: string | undefined): string | null {
  if (!value) return null;
  try {
    return new URL(value).hostname;
  } catch {
    return null;
  }
}

/** The domain of a sender (`Name <user@domain>` or `user@domain`), lower-cased. */
function mailDomainOf(from: string): string {
  return (/@([^\s@>]+)>?\s*$/.exec(from)?.[1] ?? '').toLowerCase();
}

/** The HS256 keys: the signing one and a verify-only one (a rotation's next or previous). */
const JWT_SECRETS = ['JWT_SECRET', 'JWT_VERIFY_ONLY_SECRET'] as const;

/** The other secrets a JWT_SECRET must not repeat (whoever reads one of them would sign tokens). */
const OTHER_SECRETS = [
  'STRIPE_SECRET_KEY',
  'STRIPE_WEBHOOK_SECRET',
  'STORAGE_ACCESS_KEY_ID',
  'STORAGE_SECRET_ACCESS_KEY',
  'STORAGE_WEBHOOK_TOKEN',
] as const;

/**
 * Outside development, a JWT_SECRET that is a placeholder (`<…>`, spaces), words
 * (`replace-with-a-long-random-secret`: one kind of character), the public development secret
 * with something added, or another secret of this deployment is refused: each can be guessed or
 * read elsewhere, and it signs admin tokens. Random output (`openssl rand -base64 48` or `-hex
 * 32`) mixes at least two of lower case, upper case and digits. JWT_VERIFY_ONLY_SECRET alike (tokens
 * signed with it are accepted).
 */
function jwtSecretProblems(
  env: Record<string, string>,
  strength: (secret: string) => number,
  name: (typeof JWT_SECRETS)[number],
): string[] {
  const secret = env[name];
  // (too short or too few different characters: the schema says so already)
  if (!secret || secret === DEV_SECRETS.JWT_SECRET || secret.length < 32) return [];
  if (new Set(secret).size < JWT_SECRET_MIN_DISTINCT) return [];
  const problems: string[] = [];
  if (looksLikePlaceholder(secret)) {
    problems.push(
      `${name}: looks like a placeholder or words, not a random key (use e.g. openssl rand -base64 48)`,
    );
  }
  if (secret.toLowerCase().includes(DEV_SECRETS.JWT_SECRET)) {
    problems.push(`${name}: contains the public development secret`);
  }
  for (const other of OTHER_SECRETS) {
    if (env[other] === secret) problems.push(`${name}: the same value as ${other}`);
  }
  // (refused already: not worth the estimate's child process)
  if (problems.length > 0) return problems;
  const guesses = strength(secret);
  const needed = guessesNeeded(secret, JWT_SECRET_MIN_GUESSES_LOG10_PER_CHARACTER);
  if (guesses < needed) {
    problems.push(
      `${name}: too predictable — this deployment's names, words such as jwt, secret or production, years, sequences, keyboard rows or repeats make up much of it ` +
        `(about 10^${Math.floor(guesses)} guesses for its ${secret.length} characters, 10^${Math.ceil(needed)} needed: a random key's); use e.g. openssl rand -base64 48`,
    );
  }
  return problems;
}

/**
 * A placeholder (`<your-signing-secret>`, `<SECRET>`: a word in angle brackets; a space; an
 * ellipsis) or words in one kind of character (random output mixes at least two of lower case,
 * upper case and digits). Angle brackets among random characters (a password manager's
 * symbols) are no placeholder.
 */
function looksLikePlaceholder(secret: string): boolean {
  const kinds = [/[a-z]/, /[A-Z]/, /[0-9]/].filter((kind) => kind.test(secret)).length;
  // (digits alone are no words: `openssl rand -hex 8` gives only digits once in ~1,850 draws)
  return (
    /\s|\u2026|<[a-z_-]{4,}>|<[A-Z_-]{4,}>/.test(secret) || (kinds < 2 && /[a-z]/i.test(secret))
  );
}

/**
 * Outside development, the webhooks' secrets as JWT_SECRET: whoever guesses one has forged
 * events accepted (each a stored event, a job and a provider call) — so no placeholder
 * (`whsec_<your-signing-secret>`), no words, and not the public development value with something
 * added (`…_prod`, `…-2`). Stripe's own (`whsec_` and base64 or hex) and `openssl rand` output pass.
 */
const WEBHOOK_SECRETS = ['STRIPE_WEBHOOK_SECRET', 'STORAGE_WEBHOOK_TOKEN'] as const;

function webhookSecretProblems(
  env: Record<string, string>,
  strength: (secret: string) => number,
): string[] {
  const problems: string[] = [];
  for (const name of WEBHOOK_SECRETS) {
    const value = env[name];
    // (absent, malformed, or the development value itself: said already)
    if (!value || !WEBHOOK_SECRET_FORMAT[name].test(value) || value === DEV_SECRETS[name]) continue;
    const refusedBefore = problems.length;
    if (looksLikePlaceholder(value.replace(/^whsec_/, ''))) {
      problems.push(
        `${name}: looks like a placeholder or words, not a random secret (use the provider's, or e.g. openssl rand -hex 32)`,
      );
    }
    if (value.toLowerCase().includes(DEV_SECRETS[name].toLowerCase())) {
      problems.push(`${name}: contains the public development value`);
    }
    // few different characters (16 × "a1", 15 × "a" and a digit)
    if (new Set(value.replace(/^whsec_/, '')).size < WEBHOOK_SECRET_MIN_DISTINCT) {
      problems.push(
        `${name}: too predictable: fewer than ${WEBHOOK_SECRET_MIN_DISTINCT} different characters (use the provider's, or e.g. openssl rand -hex 32)`,
      );
    }
    // and a secret of its own: one read elsewhere (the store's access key) forges its events
    for (const other of OTHER_SECRETS) {
      if (other !== name && env[other] === value)
        problems.push(`${name}: the same value as ${other}`);
    }
    // a pattern (`0123456789abcdef`), if nothing above refused it (the estimate's child process)
    const secret = value.replace(/^whsec_/, '');
    if (
      problems.length === refusedBefore &&
      strength(secret) < guessesNeeded(secret, WEBHOOK_SECRET_MIN_GUESSES_LOG10_PER_CHARACTER)
    ) {
      problems.push(
        `${name}: too predictable — this deployment's names, words such as webhook, storage or production, years, sequences, keyboard rows or repeats make up much of it (use the provider's, or e.g. openssl rand -base64 48)`,
      );
    }
  }
  return problems;
}

/**
 * Whether a URL's host name is this machine (localhost, 127.0.0.0/8, ::1 with or without its
 * brackets): a plain-text connection to it never crosses a network (STRIPE_API_URL, SMTP_URL).
 */
export function isLoopbackHost(hostname: string): boolean {
  return /^(localhost|127(\.\d{1,3}){3}|\[?::1\]?)$/i.test(hostname);
}

/**
 * Currencies Stripe counts in other units than ISO 4217 minor units, which are the API's (API.md)
 * and what is sent to Stripe as is: ISK and UGX (Stripe wants hundredths of a unit ISO has no
 * minor unit for), MGA (Stripe: no minor unit; ISO: two decimals), IQD and LYD (three decimals,
 * not taken by Stripe). A shop in one of them would charge a different amount from its prices.
 */
const STRIPE_UNIT_MISMATCH = new Set(['ISK', 'UGX', 'MGA', 'IQD', 'LYD']);

/**
 * Stripe's three-decimal currencies: it takes their amounts in thousandths, but only with a last
 * digit of 0 (a payment or refund of 5.125 KWD is refused) — AppConfig#amountStep.
 */
const STRIPE_TENS_ONLY = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);

/** What amounts in `currency` must be a multiple of (minor units), with Stripe or without. */
export function amountStepFor(currency: string, stripe: boolean): number {
  return stripe && STRIPE_TENS_ONLY.has(currency) ? 10 : 1;
}

/**
 * In every mode (development included: configuration review): a Stripe key must look like one
 * (`sk_live_…`, `rk_test_…`; not a placeholder such as `sk_live_…` or a stray space, which would
 * boot and fail every checkout); a live key is refused in development and with STRIPE_TEST_MODE,
 * and goes to Stripe alone; and STRIPE_API_URL, which receives the key with every call, must be
 * https unless it is this host (a local fake).
 */
function stripeProblems(env: Record<string, string>): string[] {
  const problems: string[] = [];
  const key = env.STRIPE_SECRET_KEY;
  const wellFormed = key !== undefined && /^(sk|rk)_(live|test)_[A-Za-z0-9_]+$/.test(key);
  if (key !== undefined && !wellFormed) {
    problems.push(
      "STRIPE_SECRET_KEY: not a Stripe secret or restricted key ('sk_live_…', 'rk_live_…', or a test one)",
    );
  }
  const currency = env.SHOP_CURRENCY ?? 'INR';
  if (key !== undefined && STRIPE_UNIT_MISMATCH.has(currency)) {
    problems.push(
      `SHOP_CURRENCY: Stripe counts ${currency} in other units than ISO 4217 minor units (the API's amounts): not supported with Stripe`,
    );
  }
  if (plainTextBeyondThisHost(env.STRIPE_API_URL)) {
    problems.push(
      'STRIPE_API_URL: must use https (it receives the secret key) unless it is on this host',
    );
  }
  const live = wellFormed && /^(sk|rk)_live_/.test(key);
  if (live && env.NODE_ENV === 'development') {
    // a production env file run through `npm start` (which sets development when NODE_ENV is
    // unset), or copied to a laptop: real cards charged by an instance with CORS open to any
    // origin, the demo accounts and the development routes
    problems.push(
      'STRIPE_SECRET_KEY: a live key with NODE_ENV=development (real cards would be charged by a development instance); use a test key',
    );
  }
  if (live && ['true', '1'].includes(env.STRIPE_TEST_MODE ?? '')) {
    // the flag says test cards pay here; with a live key they do not and real cards are charged
    problems.push(
      'STRIPE_TEST_MODE: set with a live key (real cards are charged); unset it, or use a test key',
    );
  }
  // a placeholder in the live key's form (`sk_live_x`, `sk_live_xxxx…`): every checkout would be
  // refused by Stripe, nothing at boot saying why (real keys carry 24 characters or more)
  const body = live ? key.slice('sk_live_'.length) : '';
  if (live && (body.length < 24 || new Set(body).size < 8)) {
    problems.push(
      "STRIPE_SECRET_KEY: a placeholder, not a live key (Stripe's carry at least 24 random characters after the prefix)",
    );
  }
  // a live key goes to Stripe alone: an env file of a test setup (pointing at a stub) carried
  // into production would hand the key to whatever answers there, and have payments "succeed"
  const apiHost = hostOf(env.STRIPE_API_URL);
  if (live && apiHost !== null && !/(^|\.)stripe\.com$/.test(apiHost.toLowerCase())) {
    problems.push(
      `STRIPE_API_URL: ${apiHost} is not Stripe's — a live key is sent to Stripe only (leave STRIPE_API_URL unset)`,
    );
  }
  return problems;
}

/**
 * Without SMTP_URL, mail is written to MAIL_OUTBOX_DIR: a flag there (`false`, `0`, `off`: meant
 * as "no file mail") or /dev/null would be taken as the folder — every customer email written to
 * ./false, or nowhere, and recorded as sent (configuration review). With SMTP_URL the folder is
 * not used, and whatever it says is left alone.
 */
function outboxDirProblems(env: Record<string, string>): string[] {
  const dir = env.MAIL_OUTBOX_DIR;
  if (env.SMTP_URL || dir === undefined) return [];
  return /^(true|false|yes|no|on|off|none|null|disabled?|[01])$/i.test(dir) || dir === '/dev/null'
    ? [
        'MAIL_OUTBOX_DIR: a folder for the .eml files, not a flag or /dev/null (to send mail, set SMTP_URL)',
      ]
    : [];
}

/**
 * Outside development, SMTP_URL's options that undo what the transport enforces there
 * (smtpTransportOptions): `ignoreTLS` never upgrades the connection even though STARTTLS is
 * required — the password and every receipt sent in clear, the one explicit way to that being
 * `requireTLS=false` — and `tls.rejectUnauthorized=false` takes any certificate, so anyone on the
 * path reads them (configuration review). A server on this host is exempt, as for STARTTLS.
 */
function smtpTlsProblems(value: string | undefined): string[] {
  if (!value) return [];
  // read as the transport reads it (nodemailer's own parser: `smtp://relay.example\\@127.0.0.1`
  // is the relay's address to it, this host's to the URL standard — review)
  let options: { host?: string; secure?: boolean; ignoreTLS?: unknown; tls?: unknown };
  try {
    options = parseConnectionUrl(value);
  } catch {
    return []; // the schema names it
  }
  if (isLoopbackHost(options.host ?? '')) return [];
  const problems: string[] = [];
  // (ignoreTLS is read as a flag: `0` and an empty value are off; an smtps:// connection is TLS
  // from its first byte, and STARTTLS is never asked there)
  if (options.ignoreTLS && !options.secure) {
    problems.push(
      'SMTP_URL: ignoreTLS sends the password and every email in clear; refused unless NODE_ENV=development (requireTLS=false is the explicit way to a server without STARTTLS)',
    );
  }
  if ((options.tls as { rejectUnauthorized?: unknown } | undefined)?.rejectUnauthorized === false) {
    problems.push(
      "SMTP_URL: tls.rejectUnauthorized=false takes any server's certificate (anyone on the path reads the password and every email); refused unless NODE_ENV=development — trust a private CA with NODE_EXTRA_CA_CERTS",
    );
  }
  return problems;
}

/** Whether `value` is a URL (as the schema checks it) over plain http to a host that is not this one. */
function plainTextBeyondThisHost(value: string | undefined): boolean {
  if (!value) return false;
  try {
    const target = new URL(value);
    return target.protocol !== 'https:' && !isLoopbackHost(target.hostname);
  } catch {
    return false; // the schema names it
  }
}

/**
 * Outside development, the object store's addresses over https unless on this host: customers'
 * browsers upload to STORAGE_ENDPOINT (the pre-signed URLs name it) and load images from
 * STORAGE_BASE_URL, so over http anyone on their path reads or swaps the pictures.
 */
function storageProblems(env: Record<string, string>): string[] {
  return (['STORAGE_ENDPOINT', 'STORAGE_BASE_URL'] as const).flatMap((name) =>
    plainTextBeyondThisHost(env[name])
      ? [
          `${name}: must use https (customers' browsers upload to and load images from it) unless it is on this host`,
        ]
      : [],
  );
}

/** Where the store serves a key when no CDN prefix is configured: path- or virtual-host style. */
function defaultPublicBaseUrl(endpoint: string, bucket: string, pathStyle: boolean): string {
  const u = new URL(endpoint);
  const base = u.pathname.replace(/\/$/, '');
  return pathStyle
    ? `${u.protocol}//${u.host}${base}/${bucket}`
    : `${u.protocol}//${bucket}.${u.host}${base}`;
}

/** Only where NODE_ENV was not given at all: a production deployment is never pointed at development mode. */
const SECRETS_HINT =
  'Set the secrets above (NODE_ENV is not set: on a local checkout only, NODE_ENV=development runs with built-in development secrets).';

/**
 * A development instance listening beyond this machine (HOST 0.0.0.0, a LAN address: a container
 * or VM with its port published) with the built-in JWT_SECRET: anyone who can reach it signs an
 * admin token with the published secret. Refused unless the instance has a signing key of its own.
 */
function developmentExposure(env: Record<string, string>): string[] {
  if (env.NODE_ENV !== 'development') return [];
  const ownKey =
    (env.JWT_SECRET !== undefined && env.JWT_SECRET !== DEV_SECRETS.JWT_SECRET) ||
    env.JWT_PRIVATE_KEY !== undefined;
  if (ownKey) return [];
  const problems: string[] = [];
  if (env.HOST !== undefined && !isLoopbackHost(env.HOST.trim()))
    problems.push(
      `HOST: ${env.HOST} makes this development instance reachable from the network, where anyone could sign an admin token with the built-in JWT_SECRET; ` +
        'leave HOST unset (loopback) or give JWT_SECRET a secret of its own',
    );
  // a proxy in front (on loopback, a reverse proxy on the same server) makes it as reachable;
  // without TRUST_PROXY such requests are refused at the door (developmentLocalOnly)
  if (parseTrustProxy(env.TRUST_PROXY, true).trustProxy !== false)
    problems.push(
      'TRUST_PROXY: a proxy in front makes this development instance reachable beyond this machine, where anyone could sign an admin token with the built-in JWT_SECRET; ' +
        'give JWT_SECRET a secret of its own',
    );
  return problems;
}

/**
 * A development instance — simulated payments, a demo seed (`npm start`: demo accounts and
 * products), the built-in secrets — on a database or Redis that is not on this machine: a
 * developer's .env holding a deployment's URLs (NODE_ENV left unset: `npm start` makes it
 * development) migrated and seeded demo data into that deployment's database, and ran a worker
 * with the simulated gateway on its queues and its REDIS_KEY_PREFIX. Refused unless
 * DEVELOPMENT_REMOTE_SERVICES=true says the servers are development ones.
 */
function developmentRemoteServices(
  env: Record<string, string>,
  names: readonly ('DATABASE_URL' | 'DATABASE_LOCK_URL' | 'REDIS_URL')[] = [
    'DATABASE_URL',
    'DATABASE_LOCK_URL',
    'REDIS_URL',
  ],
): string[] {
  if (env.NODE_ENV !== 'development') return [];
  if (['true', '1'].includes(env.DEVELOPMENT_REMOTE_SERVICES ?? '')) return [];
  const problems: string[] = [];
  for (const [name, protocols] of [
    ['DATABASE_URL', ['postgres:', 'postgresql:']],
    ['DATABASE_LOCK_URL', ['postgres:', 'postgresql:']],
    ['REDIS_URL', ['redis:', 'rediss:']],
  ] as const) {
    if (!names.includes(name)) continue;
    let host: string;
    try {
      const parsed = new URL(env[name] ?? '');
      if (!(protocols as readonly string[]).includes(parsed.protocol)) continue; // its own check's
      host = serviceHostOf(name, parsed, env);
    } catch {
      continue; // unset (its default is this machine), or refused by its own check
    }
    if (host === '' || host.startsWith('/') || isLoopbackHost(host)) continue;
    problems.push(
      `${name}: ${host} is not this machine, and NODE_ENV=development runs simulated payments, ` +
        'a demo seed and built-in secrets against it; use a local server, or set ' +
        'DEVELOPMENT_REMOTE_SERVICES=true if it is a development one',
    );
  }
  return problems;
}

/**
 * The host a service URL's driver connects to, without IPv6 brackets; '' or a socket directory:
 * this machine. For PostgreSQL as node-postgres reads the URL (postgresTarget).
 */
function serviceHostOf(
  name: 'DATABASE_URL' | 'DATABASE_LOCK_URL' | 'REDIS_URL',
  parsed: URL,
  env: Record<string, string | undefined>,
): string {
  if (name !== 'REDIS_URL') return postgresTarget(parsed.href, env).host;
  return parsed.hostname.replace(/^\[(.*)\]$/, '$1');
}

/** The parameters that name a certificate file node-postgres reads (and so asks for TLS). */
const PG_CERTIFICATE_PARAMETERS = ['sslcert', 'sslkey', 'sslrootcert'];

/**
 * Where node-postgres connects for this URL and whether it speaks TLS there, decided by its own
 * parser (pg-connection-string): the last of a repeated parameter, an empty one as absent, a
 * socket directory as the host (`%2Fvar%2Frun%2Fpostgresql`), `?host=` over the URL's host and
 * PGHOST after both; TLS for any `sslmode` but `disable`, a certificate file named,
 * `ssl=true`/`no-verify`, `sslnegotiation=direct`, or else PGSSLMODE as given. A hand-written
 * reading took `?sslmode=` (empty), `?sslmode=require&sslmode=disable` or
 * `?host=localhost&host=db.remote` for other than the driver did (diff review). The certificate
 * parameters are taken out before parsing: the parser reads their files.
 */
function postgresTarget(
  url: string,
  env: Record<string, string | undefined>,
): { host: string; tls: boolean } {
  const at = url.indexOf('?');
  const query = new URLSearchParams(at === -1 ? '' : url.slice(at + 1));
  const certificate = PG_CERTIFICATE_PARAMETERS.some((k) => (query.getAll(k).at(-1) ?? '') !== '');
  for (const k of PG_CERTIFICATE_PARAMETERS) query.delete(k);
  const rest = query.toString();
  let cfg: ConnectionOptions;
  try {
    cfg = parsePgUrl(at === -1 ? url : `${url.slice(0, at)}${rest ? `?${rest}` : ''}`);
  } catch {
    // refused by the parser without the certificate parameters (`uselibpqcompat=true` with
    // `sslmode=verify-ca` and its CA taken out): the host as the URL names it, never "this
    // machine" (a development .env with a deployment's URL passed the remote check so — diff
    // review); TLS, as the driver reads the whole URL
    let named = '';
    try {
      const parsed = new URL(url);
      named = query.getAll('host').at(-1) || decodeURIComponent(parsed.hostname);
    } catch {
      /* no URL at all: its own check's */
    }
    return { host: (named || env.PGHOST || '').replace(/^\[(.*)\]$/, '$1'), tls: true };
  }
  const host = (cfg.host || env.PGHOST || '').replace(/^\[(.*)\]$/, '$1');
  const mode = (cfg as { sslmode?: string }).sslmode;
  if (certificate) return { host, tls: mode !== 'disable' };
  if (cfg.ssl !== undefined) return { host, tls: Boolean(cfg.ssl) };
  return {
    host,
    tls: ['prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'].includes(
      env.PGSSLMODE ?? '',
    ),
  };
}

/** SERVICES_PRIVATE_NETWORK's host names (lower-case), and what is wrong with the value. */
function privateNetworkHosts(value: string | undefined): {
  hosts: Set<string>;
  problems: string[];
} {
  const hosts = new Set(
    (value ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter((h) => h !== ''),
  );
  const flags = [...hosts].filter((h) => ['true', 'false', '1', '0', 'yes', 'no'].includes(h));
  return {
    hosts,
    problems:
      flags.length > 0
        ? [
            `SERVICES_PRIVATE_NETWORK: names the hosts reached over a private network of their own (e.g. postgres,redis), not ${flags.join(', ')}`,
          ]
        : [],
  };
}

/**
 * Outside development, PostgreSQL or Redis on another machine over plain text: the database
 * password (or Redis's) and every customer's order, email and address crossing the network
 * readable and alterable by anything on the path. Refused unless the URL asks for TLS
 * (`?sslmode=verify-full`, `rediss://`) — or says plain text itself (`?sslmode=disable`) — or its
 * host is one SERVICES_PRIVATE_NETWORK names as reached over a private network of its own (the
 * compose stack's `postgres` and `redis`; another host given through the stack, a PgBouncer
 * elsewhere in DATABASE_LOCK_URL, is not).
 */
function plainTextServiceProblems(
  env: Record<string, string | undefined>,
  names: readonly ('DATABASE_URL' | 'DATABASE_LOCK_URL' | 'REDIS_URL')[] = [
    'DATABASE_URL',
    'DATABASE_LOCK_URL',
    'REDIS_URL',
  ],
): string[] {
  if (env.NODE_ENV === 'development') return [];
  const network = privateNetworkHosts(env.SERVICES_PRIVATE_NETWORK);
  return [
    ...network.problems,
    ...names.flatMap((name) => {
      const value = env[name]?.trim() ?? '';
      let parsed: URL;
      try {
        parsed = new URL(value);
      } catch {
        return []; // unset (this machine's default), or refused by its own check
      }
      const redis = name === 'REDIS_URL';
      const target = redis
        ? { host: serviceHostOf(name, parsed, env), tls: parsed.protocol !== 'redis:' }
        : postgresTarget(value, env);
      const { host } = target;
      if (host === '' || host.startsWith('/') || isThisMachine(host)) return [];
      if (target.tls || network.hosts.has(host.toLowerCase())) return [];
      if (!redis && parsed.searchParams.getAll('sslmode').at(-1) === 'disable') return [];
      return [
        `${name}: ${host} is another machine, reached in plain text (its password and every order readable on the way); ` +
          (redis
            ? 'use rediss:// (TLS)'
            : 'add ?sslmode=verify-full (TLS), or ?sslmode=disable to say plain text is meant') +
          `, or name ${host} in SERVICES_PRIVATE_NETWORK if it is reached over a private network of its own`,
      ];
    }),
  ];
}

/** Whether listeners on these two hosts may take the same address (one port for both: EADDRINUSE). */
function mayShareAddress(a: string, b: string): boolean {
  const wildcard = (h: string) => h === '0.0.0.0' || h === '::' || h === '' || isIP(h) === 0; // (a name may resolve to the other)
  return a === b || wildcard(a) || wildcard(b);
}

/**
 * Parses and validates the environment once. Throws one ConfigError naming every bad or
 * missing variable.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): AppConfig {
  // (each value with whitespace around it is refused, and judged trimmed by the other checks)
  const spaced = surroundingWhitespace(present(env), CONFIG_VARIABLES);
  const cleaned = spaced.trimmed;
  const parsed = envSchema.safeParse(cleaned);
  const problems = [...spaced.problems, ...(parsed.success ? [] : describe(parsed.error))];
  problems.push(...nodeEnvProblems(cleaned.NODE_ENV));
  const missing = secretProblems(cleaned);
  const cors = parseCorsOrigins(cleaned.CORS_ORIGINS, cleaned.NODE_ENV === 'development');
  problems.push(...cors.problems);
  const proxies = parseTrustProxy(cleaned.TRUST_PROXY, cleaned.NODE_ENV === 'development');
  problems.push(...proxies.problems);
  const jwtKeys = parseJwtKeyPair(cleaned);
  problems.push(...jwtKeys.problems);
  // in every mode: a development instance with a live key charges real cards (configuration review)
  problems.push(...stripeProblems(cleaned));
  problems.push(...outboxDirProblems(cleaned));
  const keyAsSecret =
    cleaned.JWT_SECRET === undefined
      ? null
      : keyGivenAsSecret('JWT_SECRET', cleaned.JWT_SECRET, 'JWT_PUBLIC_KEY (with JWT_PRIVATE_KEY)');
  if (keyAsSecret) problems.push(keyAsSecret);
  const verifyOnly =
    cleaned.JWT_VERIFY_ONLY_SECRET === DEV_SECRETS.JWT_SECRET
      ? {
          key: undefined,
          // (in development too: the built-in key is public, anyone would sign tokens taken here)
          problems: [
            'JWT_VERIFY_ONLY_SECRET: the built-in development secret (public: anyone could sign tokens accepted under it)',
          ],
        }
      : parseJwtVerifyOnlyKey(cleaned, {
          // the effective signing secret: the built-in one in development when none is given
          secret: jwtKeys.keyPair
            ? undefined
            : (cleaned.JWT_SECRET ??
              (cleaned.NODE_ENV === 'development' ? DEV_SECRETS.JWT_SECRET : undefined)),
          keyPair: jwtKeys.keyPair,
        });
  problems.push(...verifyOnly.problems);
  problems.push(...developmentExposure(cleaned));
  problems.push(...developmentRemoteServices(cleaned));
  problems.push(...plainTextServiceProblems(cleaned));
  problems.push(...databaseHostProblems(cleaned));
  const orderMinimum = parsed.success ? minimumOrderOf(parsed.data) : 0;
  if (parsed.success && parsed.data.ORDER_MAXIMUM_AMOUNT < orderMinimum) {
    // no total would be both large enough and small enough: every checkout refused
    problems.push(
      `ORDER_MAXIMUM_AMOUNT: must not be below the smallest order total, ${orderMinimum} (ORDER_MINIMUM_AMOUNT, or the payment provider's smallest charge)`,
    );
  } else if (
    parsed.success &&
    parsed.data.STRIPE_SECRET_KEY !== undefined &&
    parsed.data.ORDER_MAXIMUM_AMOUNT > STRIPE_MAXIMUM_CHARGE
  ) {
    // Stripe refuses a larger amount: such an order would reserve its stock at checkout and be
    // refused at payment on every try, holding the stock until it expired (the development
    // gateway, without a key, charges any amount)
    problems.push(
      `ORDER_MAXIMUM_AMOUNT: above Stripe's largest charge, ${STRIPE_MAXIMUM_CHARGE} (eight digits in minor units): orders up to it would reserve stock and then be refused at payment`,
    );
  } else if (parsed.success) {
    // nor when no total between them is one the provider charges (a three-decimal currency with
    // Stripe: multiples of 10 only)
    const step = amountStepFor(
      parsed.data.SHOP_CURRENCY,
      parsed.data.STRIPE_SECRET_KEY !== undefined,
    );
    if (Math.floor(parsed.data.ORDER_MAXIMUM_AMOUNT / step) * step < orderMinimum) {
      problems.push(
        `ORDER_MAXIMUM_AMOUNT: no order total from ${orderMinimum} to it is a multiple of ${step}, the only amounts the payment provider charges in ${parsed.data.SHOP_CURRENCY}`,
      );
    }
  }
  if (
    parsed.success &&
    cleaned.NODE_ENV !== 'development' &&
    parsed.data.RESERVATION_TTL_SECONDS < RESERVATION_TTL_MINIMUM
  ) {
    const ttl = parsed.data.RESERVATION_TTL_SECONDS;
    problems.push(
      `RESERVATION_TTL_SECONDS: ${ttl} seconds is too short to pay an order (3-D Secure, a bank's app); ` +
        `at least ${RESERVATION_TTL_MINIMUM} unless NODE_ENV=development — the value is in seconds, not minutes (${ttl} minutes is ${ttl * 60})`,
    );
  }
  if (
    parsed.success &&
    parsed.data.PORT === 0 &&
    !['development', 'test'].includes(cleaned.NODE_ENV ?? '')
  ) {
    // the API listened on a port the system picked, said nowhere: no load balancer, health check
    // or client could find it (tests and a development instance may ask for one)
    problems.push(
      'PORT: 0 (a random port, said nowhere) only with NODE_ENV=development or test; give the port to listen on',
    );
  }
  if (parsed.success && parsed.data.HTTP_HEADERS_TIMEOUT_MS > parsed.data.HTTP_REQUEST_TIMEOUT_MS) {
    // Node would swap them silently: the longer one would bound the headers
    problems.push('HTTP_HEADERS_TIMEOUT_MS: must not exceed HTTP_REQUEST_TIMEOUT_MS');
  }
  const socketTimeout = parsed.success ? parsed.data.HTTP_SOCKET_TIMEOUT_MS : undefined;
  if (
    parsed.success &&
    socketTimeout !== undefined &&
    socketTimeout < parsed.data.HTTP_REQUEST_TIMEOUT_MS
  ) {
    // a request still arriving within its limit would lose its connection first
    problems.push('HTTP_SOCKET_TIMEOUT_MS: must not be below HTTP_REQUEST_TIMEOUT_MS');
  }
  if (
    parsed.success &&
    socketTimeout !== undefined &&
    socketTimeout <= parsed.data.DATABASE_QUERY_TIMEOUT_MS
  ) {
    // a handler waiting that long on a statement is within its limits: its connection is not cut
    // under it (the client would get no answer to a request that commits)
    problems.push('HTTP_SOCKET_TIMEOUT_MS: must be above DATABASE_QUERY_TIMEOUT_MS');
  }
  if (parsed.success && parsed.data.PORT !== 0 && parsed.data.PORT === parsed.data.METRICS_PORT) {
    // the metrics listener binds first: the API then died on EADDRINUSE, naming no variable —
    // unless the two bind distinct addresses (a pod's IP and loopback)
    const apiHost =
      parsed.data.HOST ?? (cleaned.NODE_ENV === 'development' ? '127.0.0.1' : '0.0.0.0');
    if (mayShareAddress(apiHost, parsed.data.METRICS_HOST)) {
      problems.push(
        'METRICS_PORT: must differ from PORT (or be 0: no metrics listener) when HOST and METRICS_HOST may be the same address',
      );
    }
  }
  // (the refresh token's clock starts inside the sign-in's transaction, the access token's when
  // it is signed after it: equal lifetimes end the refresh token first)
  if (
    parsed.success &&
    parsed.data.REFRESH_TOKEN_IDLE_SECONDS <
      parsed.data.JWT_ACCESS_TTL_SECONDS + SESSION_MARGIN_SECONDS
  ) {
    // a client refreshing when its access token expires would find its session idle-ended every
    // time: every sign-in over after one access token's life, shop-wide
    problems.push(
      `REFRESH_TOKEN_IDLE_SECONDS: must exceed JWT_ACCESS_TTL_SECONDS by at least ${SESSION_MARGIN_SECONDS}`,
    );
  }
  if (
    parsed.success &&
    parsed.data.REFRESH_TOKEN_TTL_SECONDS <
      parsed.data.JWT_ACCESS_TTL_SECONDS + SESSION_MARGIN_SECONDS
  ) {
    // an access token would outlive its session (the documented longest life)
    problems.push(
      `REFRESH_TOKEN_TTL_SECONDS: must exceed JWT_ACCESS_TTL_SECONDS by at least ${SESSION_MARGIN_SECONDS}`,
    );
  }
  if (parsed.success && parsed.data.DATABASE_POOL_WAIT_MS >= parsed.data.SHUTDOWN_TIMEOUT_MS) {
    // a request queued for a connection when the process stops would still be waiting when the
    // pools close: its client would get a reset instead of an answer
    problems.push('DATABASE_POOL_WAIT_MS: must be below SHUTDOWN_TIMEOUT_MS');
  }
  if (problems.length || missing.length || !parsed.success) {
    throw new ConfigError(
      [...problems, ...missing],
      missing.length && cleaned.NODE_ENV === undefined ? SECRETS_HINT : undefined,
    );
  }
  const e = parsed.data;
  const isDevelopment = e.NODE_ENV === 'development';
  // Only reachable in development: outside it, secretProblems() refused the boot.
  const devSecret = (name: keyof typeof DEV_SECRETS): string => {
    if (!isDevelopment) throw new ConfigError([`${name}: required`]);
    return DEV_SECRETS[name];
  };

  return Object.freeze({
    env: e.NODE_ENV,
    isDevelopment,
    http: {
      port: e.PORT,
      host: e.HOST ?? (isDevelopment ? '127.0.0.1' : '0.0.0.0'),
      trustProxy: proxies.trustProxy,
      shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
      shutdownDelayMs:
        e.SHUTDOWN_DELAY_MS !== undefined ? Number(e.SHUTDOWN_DELAY_MS) : isDevelopment ? 0 : 5_000,
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
      socketTimeoutMs:
        e.HTTP_SOCKET_TIMEOUT_MS ??
        Math.max(120_000, e.HTTP_REQUEST_TIMEOUT_MS, e.DATABASE_QUERY_TIMEOUT_MS + 60_000),
      // 0: one per CPU the process can really use (a container's quota counts), never more than
      // an explicit value may ask for
      processes:
        e.API_PROCESSES === 0 ? Math.min(MAX_API_PROCESSES, usableCpus()) : e.API_PROCESSES,
    },
    metricsHost: e.METRICS_HOST,
    metricsPort: e.METRICS_PORT,
    workerMetricsPort: e.WORKER_METRICS_PORT,
    // API.md lists /docs and /docs-json as part of the surface (clients generate from the document,
    // admins use Swagger UI): on everywhere unless an operator turns them off
    docsEnabled: e.DOCS_ENABLED ?? true,
    corsOrigins: cors.origins,
    logLevel: e.LOG_LEVEL,
    database: databaseOf(e),
    redis: { url: e.REDIS_URL, keyPrefix: e.REDIS_KEY_PREFIX },
    jwt: {
      secret: jwtKeys.keyPair ? undefined : (e.JWT_SECRET ?? devSecret('JWT_SECRET')),
      keyPair: jwtKeys.keyPair,
      verifyOnly: verifyOnly.key,
      issuer: e.JWT_ISSUER,
      audience: e.JWT_AUDIENCE,
      accessTtlSeconds: e.JWT_ACCESS_TTL_SECONDS,
      refreshTtlSeconds: e.REFRESH_TOKEN_TTL_SECONDS,
      refreshIdleSeconds: e.REFRESH_TOKEN_IDLE_SECONDS,
      sessionsPerAccount: e.SESSIONS_PER_ACCOUNT,
    },
    stripe: {
      secretKey: e.STRIPE_SECRET_KEY,
      webhookSecret: e.STRIPE_WEBHOOK_SECRET ?? devSecret('STRIPE_WEBHOOK_SECRET'),
      apiUrl: e.STRIPE_API_URL,
      startBudgetMs: e.PAYMENT_START_BUDGET_MS,
    },
    paymentOrphanSweepIntervalMs: e.PAYMENT_ORPHAN_SWEEP_INTERVAL_MS,
    mail: {
      smtpUrl: e.SMTP_URL,
      from: e.MAIL_FROM,
      outboxDir: e.MAIL_OUTBOX_DIR,
      cancellationsUnprovenPerDay: e.CANCELLATION_EMAILS_UNPROVEN_PER_DAY,
    },
    reservationTtlSeconds: e.RESERVATION_TTL_SECONDS,
    purchaseLimits: {
      unitsPerProduct: e.PURCHASE_LIMIT_UNITS_PER_PRODUCT,
      openOrders: e.PURCHASE_LIMIT_OPEN_ORDERS,
      // a limit on placing orders (429 RATE_LIMITED): API.md's RATE_LIMIT_ENABLED=false switches
      // "all request throttling" off, this included (a load test places and cancels at will)
      abandonedPerDay: e.RATE_LIMIT_ENABLED ? e.PURCHASE_LIMIT_ABANDONED_PER_DAY : 0,
    },
    storage: {
      endpoint: e.STORAGE_ENDPOINT.replace(/\/$/, ''),
      bucket: e.STORAGE_BUCKET,
      region: e.STORAGE_REGION,
      forcePathStyle: e.STORAGE_FORCE_PATH_STYLE,
      accessKeyId: e.STORAGE_ACCESS_KEY_ID ?? devSecret('STORAGE_ACCESS_KEY_ID'),
      secretAccessKey: e.STORAGE_SECRET_ACCESS_KEY ?? devSecret('STORAGE_SECRET_ACCESS_KEY'),
      webhookToken: e.STORAGE_WEBHOOK_TOKEN ?? devSecret('STORAGE_WEBHOOK_TOKEN'),
      baseUrl: (
        e.STORAGE_BASE_URL ??
        defaultPublicBaseUrl(e.STORAGE_ENDPOINT, e.STORAGE_BUCKET, e.STORAGE_FORCE_PATH_STYLE)
      ).replace(/\/$/, ''),
    },
    currency: e.SHOP_CURRENCY,
    amountStep: amountStepFor(e.SHOP_CURRENCY, e.STRIPE_SECRET_KEY !== undefined),
    orderMinimumAmount: minimumOrderOf(e),
    orderMaximumAmount: e.ORDER_MAXIMUM_AMOUNT,
    rateLimitEnabled: e.RATE_LIMIT_ENABLED,
    rateLimitStoreTimeoutMs: e.RATE_LIMIT_STORE_TIMEOUT_MS,
    signIn: {
      enabled: e.RATE_LIMIT_ENABLED || e.NODE_ENV !== 'development',
      failuresPerClient: e.SIGN_IN_FAILURES_PER_CLIENT,
      failuresPerAccount: e.SIGN_IN_FAILURES_PER_ACCOUNT,
      failuresPerIp: e.SIGN_IN_FAILURES_PER_IP,
    },
    passwordHashConcurrency: e.PASSWORD_HASH_CONCURRENCY,
    catalogCacheEnabled: e.CATALOG_CACHE_ENABLED,
  });
}
