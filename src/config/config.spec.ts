import { createHash, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  CONFIG_VARIABLES,
  ConfigError,
  DEV_SECRETS,
  loadConfig,
  loadDatabaseConfig,
  secretsToEstimate,
} from './config';
import { guessesLog10 } from './secret-strength';

/** Every secret a non-development process needs, none of them a built-in one. */
const SECRETS = {
  DATABASE_URL: 'postgres://shop:pw@db.internal:5432/shop?sslmode=verify-full',
  REDIS_URL: 'rediss://cache.internal:6379',
  JWT_SECRET: 'eOLHybF6Y/pvY/1Wdqk7yA5u/GSsHTYSBFbE74d4n7A=',
  STORAGE_ENDPOINT: 'https://storage.shop.example.test',
  STORAGE_ACCESS_KEY_ID: 'shop-images-writer',
  STORAGE_SECRET_ACCESS_KEY: 'y'.repeat(40),
  STORAGE_WEBHOOK_TOKEN: 'Zq8rT3vW9xK2mP5nLs6Jd1Hf',
  STRIPE_SECRET_KEY: 'sk_test_123',
  STRIPE_TEST_MODE: 'true',
  STRIPE_WEBHOOK_SECRET: 'whsec_Rk7Tq2Wv9Xz4Mn8Pb3Ls6Jd1Hf5Gc0Ya',
  SMTP_URL: 'smtp://mail.example.test:587',
  MAIL_FROM: 'Shop <orders@cornershop-mail.in>',
};
/**
 * The secrets proper (STRIPE_TEST_MODE only says the Stripe key above may be a test key;
 * MAIL_FROM is required beside SMTP_URL, no secret).
 */
const ALL_SECRET_NAMES = Object.keys(SECRETS).filter(
  (name) => name !== 'STRIPE_TEST_MODE' && name !== 'MAIL_FROM',
);

/** A live key's stand-in (built so no secret scanner takes it for a leaked key). */
const LIVE_KEY = `sk_live_${'Zx9Qw3Er7Ty1Ui5Op'}${'Ka2Sd4Fg6Hj8'}`;

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected loadConfig to refuse this environment');
}

/**
 * Estimates at once — one child process per set of deployment words — the secrets loadConfig
 * leaves to the estimator in each of `envs` (secret-strength.ts keeps the estimates): a loop of
 * loadConfig calls then judges them with the very estimates one child per call made (the
 * estimator reads each secret alone), without a child per call (~0.4 CPU-s each: most of this
 * file's CPU). The child itself is what the tests calling guessesLog10 directly exercise.
 */
function estimateAtOnce(envs: Record<string, string>[]): void {
  const told = new Map<string, { words: string[]; secrets: Set<string> }>();
  for (const env of envs) {
    const { secrets, words } = secretsToEstimate(env);
    const key = JSON.stringify(words);
    const group = told.get(key) ?? { words, secrets: new Set<string>() };
    told.set(key, group);
    for (const secret of secrets) group.secrets.add(secret);
  }
  for (const { words, secrets } of told.values())
    if (secrets.size > 0) guessesLog10([...secrets], words);
}

const named = (problems: string[]) => problems.map((p) => p.split(':')[0]).sort();

describe('loadConfig', () => {
  it('applies documented defaults to an empty development environment', () => {
    const c = loadConfig({ NODE_ENV: 'development' });
    expect(c.http.port).toBe(3000);
    expect(c.metricsHost).toBe('127.0.0.1'); // the operational listeners: loopback unless told
    // and the API itself: a development instance's secrets and demo admin are public knowledge
    expect(c.http.host).toBe('127.0.0.1');
    expect(loadConfig({ ...SECRETS, NODE_ENV: 'production' }).http.host).toBe('0.0.0.0');
    // beyond loopback a development instance needs a signing key of its own: anyone reaching it
    // could sign an admin token with the built-in one
    expect(problemsOf({ NODE_ENV: 'development', HOST: '0.0.0.0' })).toEqual([
      expect.stringMatching(/^HOST: 0\.0\.0\.0 makes this development instance reachable/),
    ]);
    expect(
      problemsOf({
        NODE_ENV: 'development',
        HOST: '192.168.1.20',
        JWT_SECRET: DEV_SECRETS.JWT_SECRET,
      }),
    ).toHaveLength(1);
    expect(
      loadConfig({
        NODE_ENV: 'development',
        HOST: '0.0.0.0',
        JWT_SECRET: 'a-lan-demo-secret-of-its-own-0123456789abcdef',
      }).http.host,
    ).toBe('0.0.0.0');
    for (const host of ['127.0.0.1', 'localhost', '::1', '127.0.0.2']) {
      expect(loadConfig({ NODE_ENV: 'development', HOST: host }).http.host).toBe(host);
    }
    // a mistyped HOST names the variable (it died on getaddrinfo ENOTFOUND)
    expect(named(problemsOf({ ...SECRETS, NODE_ENV: 'production', HOST: '0.0.0.O.' }))).toEqual([
      'HOST',
    ]);
    expect(named(problemsOf({ ...SECRETS, NODE_ENV: 'production', HOST: '127.0.0.l' }))).toEqual([
      'HOST',
    ]);
    expect(c.metricsPort).toBe(9465);
    expect(c.workerMetricsPort).toBe(9464);
    expect(c.reservationTtlSeconds).toBe(900);
    expect(c.rateLimitEnabled).toBe(true);
    expect(c.stripe.secretKey).toBeUndefined();
  });

  it('names the variable that is invalid', () => {
    const dev = { NODE_ENV: 'development' };
    expect(() => loadConfig({ ...dev, PORT: 'eighty' })).toThrow(/PORT/);
    expect(() => loadConfig({ ...dev, DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL/);
    expect(() => loadConfig({ ...dev, RATE_LIMIT_ENABLED: 'maybe' })).toThrow(/RATE_LIMIT_ENABLED/);
    expect(() => loadConfig({ ...dev, METRICS_PORT: '70000' })).toThrow(/METRICS_PORT/);
    expect(() => loadConfig({ ...dev, DOCS_ENABLED: 'yes' })).toThrow(/DOCS_ENABLED/);
  });

  it('refuses SMTP_URL options that undo the enforced STARTTLS outside development: ignoreTLS, tls.rejectUnauthorized=false (configuration review: the password went in clear)', () => {
    const prod = { ...SECRETS, NODE_ENV: 'production' };
    const at = (query: string) => `smtp://user:pw@mail.provider.in:587?${query}`;
    expect(problemsOf({ ...prod, SMTP_URL: at('ignoreTLS=true') })).toEqual([
      expect.stringMatching(/^SMTP_URL: ignoreTLS sends the password and every email in clear/),
    ]);
    expect(problemsOf({ ...prod, SMTP_URL: at('tls.rejectUnauthorized=false') })).toEqual([
      expect.stringMatching(
        /^SMTP_URL: tls.rejectUnauthorized=false takes any server's certificate/,
      ),
    ]);
    // read as nodemailer reads it: `relay\\@127.0.0.1` is the relay to it, loopback to the URL standard
    expect(
      problemsOf({ ...prod, SMTP_URL: 'smtp://mail.provider.in\\@127.0.0.1:587?ignoreTLS=true' }),
    ).toEqual([expect.stringMatching(/^SMTP_URL: ignoreTLS sends the password/)]);
    for (const fine of [
      'requireTLS=false',
      'ignoreTLS=false',
      'ignoreTLS=0',
      'ignoreTLS=',
      'pool=true',
      'tls.rejectUnauthorized=true',
    ])
      expect(loadConfig({ ...prod, SMTP_URL: at(fine) }).mail.smtpUrl).toBe(at(fine));
    // a local relay, and development, as for STARTTLS itself
    // (smtps: TLS from the first byte, STARTTLS never asked: ignoreTLS changes nothing there)
    const tls = 'smtps://user:pw@mail.provider.in:465?ignoreTLS=true';
    expect(loadConfig({ ...prod, SMTP_URL: tls }).mail.smtpUrl).toBe(tls);
    const local = 'smtp://127.0.0.1:1025?ignoreTLS=true&tls.rejectUnauthorized=false';
    expect(loadConfig({ ...prod, SMTP_URL: local }).mail.smtpUrl).toBe(local);
    expect(
      loadConfig({ NODE_ENV: 'development', SMTP_URL: at('ignoreTLS=true') }).mail.smtpUrl,
    ).toBe(at('ignoreTLS=true'));
  });

  it('refuses a URL whose user or password is not percent-encoded correctly, naming the variable, never quoting it (the driver died later: "URI malformed", exit 1)', () => {
    const bad = {
      DATABASE_URL: 'postgres://shop:S3cret%zzPW@db.internal:5432/shop?sslmode=verify-full',
      DATABASE_LOCK_URL: 'postgres://sh%op:pw@db.internal:5432/shop?sslmode=verify-full',
      REDIS_URL: 'rediss://:S3cret%@redis.internal:6380',
      SMTP_URL: 'smtp://user:S3cret%zz@mail.provider.in:587',
    };
    for (const [name, value] of Object.entries(bad)) {
      const problems = problemsOf({ ...SECRETS, NODE_ENV: 'production', [name]: value });
      expect(problems).toEqual([
        `${name}: its user or password is not percent-encoded correctly (a % must start %XX: a literal % is %25)`,
      ]);
      expect(problems.join()).not.toContain('S3cret');
    }
    expect(() =>
      loadDatabaseConfig({ NODE_ENV: 'production', DATABASE_URL: bad.DATABASE_URL }),
    ).toThrow(/DATABASE_URL: its user or password is not percent-encoded/);
    // %25 is a literal %
    expect(
      loadConfig({
        ...SECRETS,
        NODE_ENV: 'production',
        SMTP_URL: 'smtp://u:S3cret%25zz@mail.provider.in:587',
      }).mail.smtpUrl,
    ).toBe('smtp://u:S3cret%25zz@mail.provider.in:587');
  });

  it("takes orders from the payment provider's smallest charge: 50 with Stripe, 1 with the development gateway, or ORDER_MINIMUM_AMOUNT", () => {
    expect(loadConfig({ ...SECRETS, NODE_ENV: 'production' }).orderMinimumAmount).toBe(50);
    expect(loadConfig({ NODE_ENV: 'development' }).orderMinimumAmount).toBe(1);
    expect(
      loadConfig({ ...SECRETS, NODE_ENV: 'production', ORDER_MINIMUM_AMOUNT: '30' })
        .orderMinimumAmount,
    ).toBe(30);
    expect(named(problemsOf({ NODE_ENV: 'development', ORDER_MINIMUM_AMOUNT: '0' }))).toEqual([
      'ORDER_MINIMUM_AMOUNT',
    ]);
  });

  it("takes orders up to the payment provider's largest charge: Stripe's eight digits, or ORDER_MAXIMUM_AMOUNT (not below the minimum)", () => {
    expect(loadConfig({ ...SECRETS, NODE_ENV: 'production' }).orderMaximumAmount).toBe(99_999_999);
    expect(loadConfig({ NODE_ENV: 'development' }).orderMaximumAmount).toBe(99_999_999);
    expect(
      loadConfig({ NODE_ENV: 'development', ORDER_MAXIMUM_AMOUNT: '5000' }).orderMaximumAmount,
    ).toBe(5000);
    expect(named(problemsOf({ NODE_ENV: 'development', ORDER_MAXIMUM_AMOUNT: '0' }))).toEqual([
      'ORDER_MAXIMUM_AMOUNT',
    ]);
    // under the minimum given, or under Stripe's own when none is given: every checkout refused
    expect(
      named(
        problemsOf({
          NODE_ENV: 'development',
          ORDER_MINIMUM_AMOUNT: '100',
          ORDER_MAXIMUM_AMOUNT: '99',
        }),
      ),
    ).toEqual(['ORDER_MAXIMUM_AMOUNT']);
    expect(
      named(problemsOf({ ...SECRETS, NODE_ENV: 'production', ORDER_MAXIMUM_AMOUNT: '49' })),
    ).toEqual(['ORDER_MAXIMUM_AMOUNT']);
    // above Stripe's eight digits with a Stripe key: orders Stripe would refuse at payment (the
    // development gateway, without a key, charges them)
    for (const env of [
      { ...SECRETS, NODE_ENV: 'production' },
      { NODE_ENV: 'development', STRIPE_SECRET_KEY: 'sk_test_abc' },
    ]) {
      const refused = problemsOf({ ...env, ORDER_MAXIMUM_AMOUNT: '100000000' });
      expect(named(refused)).toEqual(['ORDER_MAXIMUM_AMOUNT']);
      expect(refused[0]).toMatch(/above Stripe's largest charge, 99999999/);
      expect(loadConfig({ ...env, ORDER_MAXIMUM_AMOUNT: '99999999' }).orderMaximumAmount).toBe(
        99_999_999,
      );
    }
    expect(
      loadConfig({ NODE_ENV: 'development', ORDER_MAXIMUM_AMOUNT: '100000000' }).orderMaximumAmount,
    ).toBe(100_000_000);
    // in a three-decimal currency with Stripe (multiples of 10 only): a range holding none
    const kwd = {
      NODE_ENV: 'development',
      STRIPE_SECRET_KEY: 'sk_test_abc',
      SHOP_CURRENCY: 'KWD',
      ORDER_MINIMUM_AMOUNT: '55',
    };
    expect(named(problemsOf({ ...kwd, ORDER_MAXIMUM_AMOUNT: '59' }))).toEqual([
      'ORDER_MAXIMUM_AMOUNT',
    ]);
    expect(loadConfig({ ...kwd, ORDER_MAXIMUM_AMOUNT: '60' }).amountStep).toBe(10);
    expect(
      loadConfig({ ...kwd, STRIPE_SECRET_KEY: '', ORDER_MAXIMUM_AMOUNT: '59' }).amountStep,
    ).toBe(1);
  });

  it('refuses a reservation shorter than 5 minutes outside development, saying the value is in seconds (development takes 10 s and up: tests)', () => {
    // an operator who meant 15 minutes: every payment would expire under its customer
    const refused = problemsOf({
      ...SECRETS,
      NODE_ENV: 'production',
      RESERVATION_TTL_SECONDS: '15',
    });
    expect(named(refused)).toEqual(['RESERVATION_TTL_SECONDS']);
    expect(refused[0]).toMatch(/in seconds, not minutes \(15 minutes is 900\)/);
    expect(named(problemsOf({ ...SECRETS, RESERVATION_TTL_SECONDS: '299' }))).toEqual([
      'RESERVATION_TTL_SECONDS',
    ]);
    expect(
      loadConfig({ ...SECRETS, NODE_ENV: 'production', RESERVATION_TTL_SECONDS: '300' })
        .reservationTtlSeconds,
    ).toBe(300);
    expect(
      loadConfig({ NODE_ENV: 'development', RESERVATION_TTL_SECONDS: '10' }).reservationTtlSeconds,
    ).toBe(10);
  });

  it("tells the secrets loadConfig leaves to the estimator and the deployment's words it tells it (what estimateAtOnce estimates at once)", () => {
    const env = {
      ...SECRETS,
      NODE_ENV: 'production',
      // a placeholder: refused by the cheap rules, never estimated
      JWT_SECRET: 'replace-with-a-long-random-secret',
      // judged trimmed, as loadConfig judges it
      STORAGE_WEBHOOK_TOKEN: ` ${SECRETS.STORAGE_WEBHOOK_TOKEN}\n`,
      JWT_ISSUER: 'acme-books',
    };
    const { secrets, words } = secretsToEstimate(env);
    // (the Stripe secret without its whsec_ prefix, as it is judged)
    expect([...secrets].sort()).toEqual(
      ['Rk7Tq2Wv9Xz4Mn8Pb3Ls6Jd1Hf5Gc0Ya', SECRETS.STORAGE_WEBHOOK_TOKEN].sort(),
    );
    expect(words).toEqual(expect.arrayContaining(['acme-books', 'acme', 'books', 'jwt', 'secret']));
    // what it names is what loadConfig asks: estimated at once beforehand, loading the
    // environment needs no child process (here none could start), as one not estimated does
    const fresh = () => ({
      ...SECRETS,
      NODE_ENV: 'production',
      JWT_ISSUER: 'acme-books',
      JWT_SECRET: randomBytes(32).toString('base64'),
    });
    const estimated = fresh();
    estimateAtOnce([estimated]);
    const execPath = process.execPath;
    process.execPath = '/nonexistent/node';
    try {
      expect(loadConfig(estimated).jwt.secret).toBe(estimated.JWT_SECRET);
      expect(problemsOf(fresh())).toEqual([
        expect.stringMatching(/: the secrets' strength could not be estimated/),
      ]);
    } finally {
      process.execPath = execPath;
    }
    // nothing in development, where no secret is judged
    expect(secretsToEstimate({ ...env, NODE_ENV: 'development' })).toEqual({
      secrets: [],
      words: [],
    });
  });

  it('treats empty strings as unset', () => {
    expect(
      loadConfig({ NODE_ENV: 'development', STRIPE_SECRET_KEY: '' }).stripe.secretKey,
    ).toBeUndefined();
  });

  it('configures S3-compatible storage: MinIO-style defaults, the public URL derived from endpoint and bucket', () => {
    const dev = loadConfig({ NODE_ENV: 'development' }).storage;
    expect(dev).toEqual({
      endpoint: 'http://localhost:9000',
      bucket: 'shop-images',
      region: 'us-east-1',
      forcePathStyle: true,
      accessKeyId: 'minioadmin',
      secretAccessKey: 'minioadmin',
      webhookToken: DEV_SECRETS.STORAGE_WEBHOOK_TOKEN,
      baseUrl: 'http://localhost:9000/shop-images',
    });
    const r2 = loadConfig({
      NODE_ENV: 'production',
      ...SECRETS,
      STORAGE_ENDPOINT: 'https://acc.r2.cloudflarestorage.com/',
      STORAGE_BUCKET: 'shop',
      STORAGE_REGION: 'auto',
      STORAGE_FORCE_PATH_STYLE: 'false',
    }).storage;
    expect([r2.endpoint, r2.region, r2.forcePathStyle, r2.baseUrl]).toEqual([
      'https://acc.r2.cloudflarestorage.com',
      'auto',
      false,
      'https://shop.acc.r2.cloudflarestorage.com',
    ]);
    expect(
      loadConfig({ NODE_ENV: 'development', STORAGE_BASE_URL: 'https://cdn.shop.example/img/' })
        .storage.baseUrl,
    ).toBe('https://cdn.shop.example/img');
    const dev2 = { NODE_ENV: 'development' };
    expect(() => loadConfig({ ...dev2, STORAGE_BUCKET: 'Not_A_Bucket' })).toThrow(/STORAGE_BUCKET/);
    expect(() => loadConfig({ ...dev2, STORAGE_ENDPOINT: 'ftp://x' })).toThrow(/STORAGE_ENDPOINT/);
    expect(() =>
      loadConfig({ ...dev2, STORAGE_WEBHOOK_TOKEN: 'has a space in it, too short?' }),
    ).toThrow(/STORAGE_WEBHOOK_TOKEN/);
  });

  it('keeps the failed sign-in limits on outside development (NODE_ENV unset included) even when RATE_LIMIT_ENABLED=false', () => {
    for (const nodeEnv of ['production', 'test', 'staging', undefined]) {
      const c = loadConfig({
        ...SECRETS,
        ...(nodeEnv ? { NODE_ENV: nodeEnv } : {}),
        RATE_LIMIT_ENABLED: 'false',
      });
      expect(c.rateLimitEnabled).toBe(false);
      expect(c.signIn.enabled).toBe(true);
    }
    expect(
      loadConfig({ NODE_ENV: 'development', RATE_LIMIT_ENABLED: 'false' }).signIn.enabled,
    ).toBe(false);
    expect(loadConfig({ NODE_ENV: 'development' }).signIn.enabled).toBe(true);
  });

  it('refuses an invalid value of every contract variable, naming it (API.md: invalid values stop the process at boot)', () => {
    for (const [name, value] of [
      ['PORT', 'abc'],
      ['METRICS_PORT', '70000'],
      ['WORKER_METRICS_PORT', '70000'],
      ['WORKER_METRICS_PORT', '-1'],
      ['RESERVATION_TTL_SECONDS', 'abc'],
      ['RESERVATION_TTL_SECONDS', '5'],
      ['RESERVATION_TTL_SECONDS', '1.5'],
      ['PURCHASE_LIMIT_UNITS_PER_PRODUCT', 'five'],
      ['PURCHASE_LIMIT_UNITS_PER_PRODUCT', '-1'],
      ['PURCHASE_LIMIT_OPEN_ORDERS', ' '],
      ['CANCELLATION_EMAILS_UNPROVEN_PER_DAY', '-1'],
      ['CANCELLATION_EMAILS_UNPROVEN_PER_DAY', 'many'],
      ['RATE_LIMIT_ENABLED', 'no'],
      ['DATABASE_URL', 'mysql://db/shop'],
      ['REDIS_URL', 'http://cache:6379'],
      ['STRIPE_API_URL', 'not a url'],
      ['SMTP_URL', 'mailto:x@y.z'],
    ]) {
      expect({
        name,
        value,
        refused: named(problemsOf({ NODE_ENV: 'development', [name]: value })),
      }).toEqual({ name, value, refused: [name] });
    }
  });

  it('CANCELLATION_EMAILS_UNPROVEN_PER_DAY: 100 a day unless set; 0 is none (not "off")', () => {
    const budget = (env: Record<string, string>) =>
      loadConfig({ NODE_ENV: 'development', ...env }).mail.cancellationsUnprovenPerDay;
    expect(budget({})).toBe(100);
    expect(budget({ CANCELLATION_EMAILS_UNPROVEN_PER_DAY: '0' })).toBe(0);
    expect(budget({ CANCELLATION_EMAILS_UNPROVEN_PER_DAY: '2500' })).toBe(2500);
  });

  it('RATE_LIMIT_STORE_TIMEOUT_MS: 500 ms unless set, 50 ms to 10 s, digits only', () => {
    const timeout = (env: Record<string, string>) =>
      loadConfig({ NODE_ENV: 'development', ...env }).rateLimitStoreTimeoutMs;
    expect(timeout({})).toBe(500);
    expect(timeout({ RATE_LIMIT_STORE_TIMEOUT_MS: '' })).toBe(500);
    expect(timeout({ RATE_LIMIT_STORE_TIMEOUT_MS: '2000' })).toBe(2000);
    for (const bad of ['0', '49', '10001', '1.5', '500ms', '-1'])
      expect(() => timeout({ RATE_LIMIT_STORE_TIMEOUT_MS: bad })).toThrow(
        /RATE_LIMIT_STORE_TIMEOUT_MS/,
      );
  });

  it('switches throttling off with RATE_LIMIT_ENABLED=false', () => {
    expect(
      loadConfig({ NODE_ENV: 'development', RATE_LIMIT_ENABLED: 'false' }).rateLimitEnabled,
    ).toBe(false);
  });

  describe('secure by default: only an explicit NODE_ENV=development gets development behaviour', () => {
    it('refuses an unset NODE_ENV without secrets, naming every missing one in one message', () => {
      expect(named(problemsOf({}))).toEqual([...ALL_SECRET_NAMES].sort());
      expect(() => loadConfig({})).toThrow(/NODE_ENV is not set[\s\S]*NODE_ENV=development/);
    });

    it('never points a deployment that says what it is (production, staging) at development mode to get past missing secrets', () => {
      for (const nodeEnv of ['production', 'staging']) {
        expect(() => loadConfig({ NODE_ENV: nodeEnv })).toThrow(ConfigError);
        expect(() => loadConfig({ NODE_ENV: nodeEnv })).not.toThrow(
          /NODE_ENV=development runs|for a local instance/,
        );
      }
    });

    it('refuses NODE_ENV=test without secrets, like any other non-development value', () => {
      expect(named(problemsOf({ NODE_ENV: 'test' }))).toEqual([...ALL_SECRET_NAMES].sort());
    });

    it('takes staging and test as not development: secrets required, none of its behaviour', () => {
      for (const nodeEnv of ['staging', 'test']) {
        expect(named(problemsOf({ NODE_ENV: nodeEnv }))).toEqual([...ALL_SECRET_NAMES].sort());
        const c = loadConfig({ ...SECRETS, NODE_ENV: nodeEnv });
        expect([c.env, c.isDevelopment, c.docsEnabled]).toEqual([nodeEnv, false, true]);
      }
    });

    it('refuses any other NODE_ENV, naming it: `Production` skipped every production-only check, `Development` was not development', () => {
      // (a store on loopback: refused with production, booted with `Production`)
      const local = { STORAGE_ENDPOINT: 'http://127.0.0.1:9000' };
      expect(named(problemsOf({ ...SECRETS, ...local, NODE_ENV: 'production' }))).toEqual([
        'STORAGE_ENDPOINT',
      ]);
      for (const nodeEnv of ['Production', 'PRODUCTION', 'prod', 'Development', 'dev', 'qa']) {
        expect(problemsOf({ ...SECRETS, ...local, NODE_ENV: nodeEnv })).toEqual([
          `NODE_ENV: "${nodeEnv}" is none of development, production, test, staging (written exactly so: lower case, no spaces)`,
        ]);
      }
      // the migration CLI's configuration alike (a deployment's migration step)
      expect(() =>
        loadDatabaseConfig({ NODE_ENV: 'Production', DATABASE_URL: SECRETS.DATABASE_URL }),
      ).toThrow(/^Invalid configuration:\n {2}- NODE_ENV: "Production" is none of/);
    });

    it('refuses production without any of the secrets, STRIPE_SECRET_KEY included', () => {
      expect(named(problemsOf({ NODE_ENV: 'production' }))).toEqual([...ALL_SECRET_NAMES].sort());
      for (const name of ALL_SECRET_NAMES) {
        const env: Record<string, string> = { NODE_ENV: 'production', ...SECRETS };
        delete env[name];
        expect(problemsOf(env)).toEqual([
          expect.stringMatching(new RegExp(`^${name}: required in production`)),
        ]);
      }
    });

    it('SHUTDOWN_DELAY_MS: 5 s outside development (a load balancer drains first), 0 in development, digits only, at most 2 min', () => {
      expect(loadConfig({ ...SECRETS, NODE_ENV: 'production' }).http.shutdownDelayMs).toBe(5000);
      expect(loadConfig({ NODE_ENV: 'development' }).http.shutdownDelayMs).toBe(0);
      expect(
        loadConfig({ ...SECRETS, NODE_ENV: 'production', SHUTDOWN_DELAY_MS: '0' }).http
          .shutdownDelayMs,
      ).toBe(0);
      expect(
        loadConfig({ ...SECRETS, NODE_ENV: 'production', SHUTDOWN_DELAY_MS: '' }).http
          .shutdownDelayMs,
      ).toBe(5000);
      expect(
        loadConfig({ ...SECRETS, NODE_ENV: 'production', SHUTDOWN_DELAY_MS: '0000000' }).http
          .shutdownDelayMs,
      ).toBe(0);
      expect(
        loadConfig({ ...SECRETS, NODE_ENV: 'production', SHUTDOWN_DELAY_MS: '120000' }).http
          .shutdownDelayMs,
      ).toBe(120_000);
      for (const value of ['5s', '-1', '120001', '999999']) {
        expect(
          problemsOf({ ...SECRETS, NODE_ENV: 'production', SHUTDOWN_DELAY_MS: value }),
        ).toEqual([expect.stringMatching(/^SHUTDOWN_DELAY_MS: /)]);
      }
    });

    it('PAYMENT_ORPHAN_SWEEP_INTERVAL_MS: 15 min unset (or empty), 0 turns the sweep off, else a minute to a day in milliseconds — digits only', () => {
      const sweepEvery = (value?: string) =>
        loadConfig({
          ...SECRETS,
          NODE_ENV: 'production',
          ...(value === undefined ? {} : { PAYMENT_ORPHAN_SWEEP_INTERVAL_MS: value }),
        }).paymentOrphanSweepIntervalMs;
      expect(sweepEvery()).toBe(900_000);
      expect(sweepEvery('')).toBe(900_000);
      expect(sweepEvery('0')).toBe(0);
      expect(sweepEvery('60000')).toBe(60_000);
      expect(sweepEvery('86400000')).toBe(86_400_000);
      // minutes or seconds meant (15, 900): a sweep paging through Stripe's lists without pause
      // (a lone space is refused as whitespace around a value, as for every variable)
      for (const value of ['15', '900', '59999', '86400001', '15m', '-1', '1.5', '1e6']) {
        expect({
          value,
          problems: problemsOf({
            ...SECRETS,
            NODE_ENV: 'production',
            PAYMENT_ORPHAN_SWEEP_INTERVAL_MS: value,
          }),
        }).toEqual({
          value,
          problems: [expect.stringMatching(/^PAYMENT_ORPHAN_SWEEP_INTERVAL_MS: must be /)],
        });
      }
      expect(
        problemsOf({ ...SECRETS, NODE_ENV: 'production', PAYMENT_ORPHAN_SWEEP_INTERVAL_MS: '15' }),
      ).toEqual([
        'PAYMENT_ORPHAN_SWEEP_INTERVAL_MS: must be 0 (off) or from 60000 (a minute) to 86400000 (a day), in milliseconds',
      ]);
    });

    it('refuses a mail server without MAIL_FROM (the placeholder sender would be refused or filed as spam)', () => {
      const { MAIL_FROM: _from, ...withoutFrom } = SECRETS;
      for (const nodeEnv of [undefined, 'test', 'production']) {
        const env = { ...withoutFrom, ...(nodeEnv ? { NODE_ENV: nodeEnv } : {}) };
        expect(problemsOf(env)).toEqual([
          expect.stringMatching(/^MAIL_FROM: required .*with SMTP_URL/),
        ]);
        expect(problemsOf({ ...env, MAIL_FROM: '' })).toEqual([
          expect.stringMatching(/^MAIL_FROM: required/),
        ]);
        // the placeholder of .env.example, copied to a server: refused as if not given
        for (const placeholder of ['Shop <orders@shop.example>', 'orders@SHOP.example']) {
          expect(problemsOf({ ...env, MAIL_FROM: placeholder })).toEqual([
            expect.stringMatching(/^MAIL_FROM: the placeholder sender/),
          ]);
        }
      }
      expect(
        loadConfig({ ...withoutFrom, NODE_ENV: 'development', DEVELOPMENT_REMOTE_SERVICES: 'true' })
          .mail.from,
      ).toBe('Shop <orders@shop.example>');
      // in production, any domain reserved for examples and tests (the hint's own shape copied, a
      // test setup's sender): no provider delivers from it
      for (const from of [
        'Shop <orders@your-shop.example>',
        'orders@example.com',
        'orders@mail.example.org',
        'orders@shop.test',
        'orders@mail.localhost',
        'orders@shop.invalid',
        'orders@shop.local',
        'orders@shop.internal',
        'orders@shop.home.arpa',
      ]) {
        expect(problemsOf({ ...SECRETS, NODE_ENV: 'production', MAIL_FROM: from })).toEqual([
          expect.stringMatching(/^MAIL_FROM: [a-z.-]+ is reserved for examples and tests/),
        ]);
        expect(() =>
          loadConfig({ ...SECRETS, NODE_ENV: 'staging', MAIL_FROM: from }),
        ).not.toThrow();
      }
      for (const from of ['orders@myexample.com', 'orders@testshop.in', 'Shop <a@shop.co.uk>'])
        expect(() =>
          loadConfig({ ...SECRETS, NODE_ENV: 'production', MAIL_FROM: from }),
        ).not.toThrow();
    });

    it('refuses a METRICS_HOST that is no address or host name, or a mistyped IPv4 address (it failed to listen, and the process ran without metrics)', () => {
      for (const host of [
        '127.0.0.l',
        '10.0.O.1',
        '192.168.110',
        '127.0.0.1.1',
        '9465',
        'metrics host',
        'metrics_host',
        // a flag or a number (a template's value, or another variable's): `yes` failed to resolve
        // and the process ran without metrics, a warning its only trace; hex is an IPv4 address
        // to the resolver (0x10: 0.0.0.16)
        'yes',
        'TRUE',
        'off',
        'NaN',
        'Infinity',
        'undefined',
        '1e3',
        '0x10',
        '0x7f.1',
      ]) {
        for (const name of ['METRICS_HOST', 'HOST']) {
          expect([host, problemsOf({ ...SECRETS, [name]: host })]).toEqual([
            host,
            [expect.stringMatching(new RegExp(`^${name}: must be an IP address`))],
          ]);
        }
      }
      expect(loadConfig({ ...SECRETS, METRICS_HOST: '' }).metricsHost).toBe('127.0.0.1'); // empty: unset
      for (const host of [
        '0.0.0.0',
        '::',
        '10.1.2.3',
        'localhost',
        'ip6-localhost',
        'metrics.internal',
        'fe80::1%eth0',
        // names that only begin like a flag or a number
        'on-prem-metrics',
        'yes.internal',
        '0xdeadbeef-metrics',
        'e10',
      ]) {
        expect(loadConfig({ ...SECRETS, METRICS_HOST: host }).metricsHost).toBe(host);
        expect(loadConfig({ ...SECRETS, HOST: host }).http.host).toBe(host);
      }
    });

    it('refuses a MAIL_FROM that is not an address (the mail server would refuse every email at MAIL FROM)', () => {
      for (const from of [
        'orders',
        'Shop <orders',
        'Shop <orders@my-shop.com',
        'a b@my-shop.com',
        'orders@',
      ]) {
        expect([from, problemsOf({ ...SECRETS, MAIL_FROM: from })]).toEqual([
          from,
          [expect.stringMatching(/^MAIL_FROM: must be an address/)],
        ]);
      }
      for (const from of [
        'orders@my-shop.com',
        'Shop <orders@my-shop.co.in>',
        '"Shop, Ltd" <orders@my-shop.com>',
      ]) {
        expect(loadConfig({ ...SECRETS, MAIL_FROM: from }).mail.from).toBe(from);
      }
      // a host without a dot: a local mail catcher's in development, refused for a real mail server
      for (const from of ['orders@myshop', 'Shop <orders@mailpit>']) {
        expect([from, problemsOf({ ...SECRETS, MAIL_FROM: from })]).toEqual([
          from,
          [expect.stringMatching(/^MAIL_FROM: the sender's domain must be a real one/)],
        ]);
        expect(
          loadConfig({
            NODE_ENV: 'development',
            SMTP_URL: 'smtp://127.0.0.1:1025',
            MAIL_FROM: from,
          }).mail.from,
        ).toBe(from);
      }
    });

    it('refuses a deployment without SMTP_URL unless MAIL_OUTBOX_DIR asks for mail as files', () => {
      const { SMTP_URL: _smtp, ...withoutSmtp } = SECRETS;
      for (const nodeEnv of [undefined, 'test', 'production']) {
        const env = { ...withoutSmtp, ...(nodeEnv ? { NODE_ENV: nodeEnv } : {}) };
        expect(problemsOf(env)).toEqual([
          expect.stringMatching(/^SMTP_URL: required .*MAIL_OUTBOX_DIR/),
        ]);
        expect(loadConfig({ ...env, MAIL_OUTBOX_DIR: '/var/spool/shop-mail' }).mail).toMatchObject({
          smtpUrl: undefined,
          outboxDir: '/var/spool/shop-mail',
        });
      }
      expect(loadConfig({ NODE_ENV: 'development' }).mail.outboxDir).toBe('var/mail');
      // a flag meant as "no file mail" is no folder: every email was written to ./false and
      // recorded as sent (configuration review)
      for (const flag of ['false', '0', 'off', 'no', 'None', '/dev/null']) {
        for (const env of [{ ...withoutSmtp, NODE_ENV: 'production' }, { NODE_ENV: 'development' }])
          expect(problemsOf({ ...env, MAIL_OUTBOX_DIR: flag })).toEqual([
            expect.stringMatching(/^MAIL_OUTBOX_DIR: a folder for the .eml files, not a flag/),
          ]);
        // with SMTP_URL the folder is not used: "file mail off" beside it boots (review)
        expect(
          loadConfig({ ...SECRETS, NODE_ENV: 'production', MAIL_OUTBOX_DIR: flag }).mail.smtpUrl,
        ).toBe(SECRETS.SMTP_URL);
      }
    });

    it('refuses a Stripe test key outside development (NODE_ENV unset or mistyped too) unless STRIPE_TEST_MODE says so', () => {
      const { STRIPE_TEST_MODE: _mode, ...live } = SECRETS;
      for (const key of ['sk_test_51abc', 'rk_test_51abc']) {
        for (const nodeEnv of ['production', 'staging', 'test', undefined]) {
          const env = nodeEnv === undefined ? { ...live } : { ...live, NODE_ENV: nodeEnv };
          expect(problemsOf({ ...env, STRIPE_SECRET_KEY: key })).toEqual([
            expect.stringMatching(/^STRIPE_SECRET_KEY: a test-mode key outside development/),
          ]);
          expect(
            loadConfig({ ...env, STRIPE_SECRET_KEY: key, STRIPE_TEST_MODE: 'true' }).stripe
              .secretKey,
          ).toBe(key);
        }
        expect(
          loadConfig({ NODE_ENV: 'development', STRIPE_SECRET_KEY: key }).stripe.secretKey,
        ).toBe(key);
      }
      expect(
        loadConfig({ ...live, NODE_ENV: 'production', STRIPE_SECRET_KEY: LIVE_KEY }).stripe
          .secretKey,
      ).toBe(LIVE_KEY);
    });

    it('refuses NODE_TLS_REJECT_UNAUTHORIZED=0 outside development: every certificate check off while the checks here count the connections as safe (configuration review)', () => {
      for (const nodeEnv of ['production', 'staging', undefined]) {
        const env = { ...SECRETS, ...(nodeEnv ? { NODE_ENV: nodeEnv } : {}) };
        expect(problemsOf({ ...env, NODE_TLS_REJECT_UNAUTHORIZED: '0' })).toEqual([
          expect.stringMatching(
            /^NODE_TLS_REJECT_UNAUTHORIZED: 0 turns off every TLS certificate check/,
          ),
        ]);
        expect(() => loadConfig({ ...env, NODE_TLS_REJECT_UNAUTHORIZED: '1' })).not.toThrow();
      }
      expect(() =>
        loadConfig({ NODE_ENV: 'development', NODE_TLS_REJECT_UNAUTHORIZED: '0' }),
      ).not.toThrow();
    });

    it('refuses a live Stripe key in development, with STRIPE_TEST_MODE, or as a placeholder (configuration review)', () => {
      const { STRIPE_TEST_MODE: _mode, ...live } = SECRETS;
      const prod = { ...live, NODE_ENV: 'production' };
      for (const key of [LIVE_KEY, LIVE_KEY.replace('sk_', 'rk_')]) {
        // a production env file run through `npm start` (development when NODE_ENV is unset)
        expect(problemsOf({ NODE_ENV: 'development', STRIPE_SECRET_KEY: key })).toEqual([
          expect.stringMatching(/^STRIPE_SECRET_KEY: a live key with NODE_ENV=development/),
        ]);
        // …and with a stub's address there: the key would go to it in clear
        expect(
          problemsOf({
            NODE_ENV: 'development',
            STRIPE_SECRET_KEY: key,
            STRIPE_API_URL: 'http://evil.example.net',
          }),
        ).toEqual(
          expect.arrayContaining([
            expect.stringMatching(/^STRIPE_API_URL: must use https/),
            expect.stringMatching(/^STRIPE_API_URL: evil.example.net is not Stripe's/),
          ]),
        );
        for (const flag of ['true', '1']) {
          expect(problemsOf({ ...prod, STRIPE_SECRET_KEY: key, STRIPE_TEST_MODE: flag })).toEqual([
            expect.stringMatching(/^STRIPE_TEST_MODE: set with a live key/),
          ]);
        }
        expect(loadConfig({ ...prod, STRIPE_SECRET_KEY: key }).stripe.secretKey).toBe(key);
      }
      for (const placeholder of [
        'sk_live_x',
        `sk_live_${'x'.repeat(40)}`,
        'rk_live_1234567890abcdef',
      ]) {
        expect(problemsOf({ ...prod, STRIPE_SECRET_KEY: placeholder })).toEqual([
          expect.stringMatching(/^STRIPE_SECRET_KEY: a placeholder, not a live key/),
        ]);
      }
      // a test key in development, as ever, and a remote http address refused there too
      expect(
        loadConfig({ NODE_ENV: 'development', STRIPE_SECRET_KEY: 'sk_test_51abc' }).stripe
          .secretKey,
      ).toBe('sk_test_51abc');
      expect(
        problemsOf({
          NODE_ENV: 'development',
          STRIPE_SECRET_KEY: 'sk_test_51abc',
          STRIPE_API_URL: 'http://evil.example.net',
        }),
      ).toEqual([expect.stringMatching(/^STRIPE_API_URL: must use https/)]);
    });

    it('refuses a webhook secret anyone could guess: a stub or the placeholder', () => {
      const stubEnv = (stub: string) => ({
        ...SECRETS,
        NODE_ENV: 'production',
        STRIPE_WEBHOOK_SECRET: stub,
      });
      const stubs = [
        'whsec_',
        'whsec_x',
        'whsec_…',
        'whsec_short12345',
        'whsec_ spaces in it here ok?',
        'wh_abcdefghijklmnopqrstuvwx',
        // sequences: enough different characters, no randomness
        'whsec_0123456789abcdef',
        'whsec_abcdefghijklmnopqrstuvwxyz012345',
      ];
      const real = 'whsec_' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6';
      const hexToken = {
        ...SECRETS,
        NODE_ENV: 'production',
        STORAGE_WEBHOOK_TOKEN: 'b3c1f08e9a7d2564',
      };
      estimateAtOnce([...[...stubs, real].map(stubEnv), hexToken]);
      for (const stub of stubs) {
        expect(problemsOf(stubEnv(stub))).toEqual([
          expect.stringMatching(/^STRIPE_WEBHOOK_SECRET: /),
        ]);
      }
      expect(loadConfig(stubEnv(real)).stripe.webhookSecret).toBe(real);
      // the shortest random token passes: 16 hex characters (openssl rand -hex 8), each of 50,
      // told the deployment's words (estimated at once: one child process; 0.74 per character at
      // the least of 50,000 draws, 0.78 of 3,000). Fixed draws (a hash of a counter), the same
      // each run: 50 new random ones a run drew one of 0.67 once (2026-12-07), a red suite — a
      // 16-character token that rare is refused at boot, naming its variable, and made again
      const tokens = Array.from({ length: 50 }, (_, i) =>
        createHash('sha256').update(`webhook-token-draw-${i}`).digest('hex').slice(0, 16),
      );
      const words = ['shop-orders', 'shop', 'orders', 'storage', 'webhook', 'token', '2026'];
      expect(Math.min(...guessesLog10(tokens, words)) / 16).toBeGreaterThanOrEqual(0.7);
      expect(loadConfig(hexToken).storage.webhookToken).toBe('b3c1f08e9a7d2564');
    });

    it("refuses the webhooks' secrets that are placeholders, words or the development value with something added", () => {
      const refused: [string, string][] = [
        ['STRIPE_WEBHOOK_SECRET', 'whsec_<your-signing-secret>'],
        ['STRIPE_WEBHOOK_SECRET', 'whsec_dummy_dummy_dummy_dummy'],
        ['STRIPE_WEBHOOK_SECRET', `${DEV_SECRETS.STRIPE_WEBHOOK_SECRET}_prod`],
        ['STORAGE_WEBHOOK_TOKEN', `${DEV_SECRETS.STORAGE_WEBHOOK_TOKEN}-2`],
        ['STORAGE_WEBHOOK_TOKEN', 'z'.repeat(32)],
        ['STORAGE_WEBHOOK_TOKEN', '<storage-webhook-token>'],
        // few different characters, as JWT_SECRET's rule says
        ['STRIPE_WEBHOOK_SECRET', 'whsec_' + 'a1'.repeat(16)],
        ['STORAGE_WEBHOOK_TOKEN', 'aaaaaaaaaaaaaaa1'],
        ['STORAGE_WEBHOOK_TOKEN', 'abcabcabcabcabc1'],
        // another secret of the deployment: whoever reads the store's key forges its events
        ['STORAGE_WEBHOOK_TOKEN', 'Kq3vN8xT2mW9pL5rZ7yB4cF6hJ1dG0sAe'],
        // this deployment's words and a year
        ['STORAGE_WEBHOOK_TOKEN', 'shop-orders-storage-webhook-2026'],
        ['STORAGE_WEBHOOK_TOKEN', 'ShopOrdersWebhookToken2026'],
        ['STRIPE_WEBHOOK_SECRET', 'whsec_ShopOrders-Stripe-Webhook-Production-2026'],
      ];
      const refusedEnv = (name: string, value: string) => ({
        ...SECRETS,
        NODE_ENV: 'production',
        STORAGE_SECRET_ACCESS_KEY: 'Kq3vN8xT2mW9pL5rZ7yB4cF6hJ1dG0sAe',
        [name]: value,
      });
      const accepted: [string, string][] = [
        [
          'STRIPE_WEBHOOK_SECRET',
          'whsec_225bd8ae681b83e7e78ae29d5758e869a37b42516c72e67de7a99450404fe3f4',
        ],
        ['STRIPE_WEBHOOK_SECRET', 'whsec_Zk9+Qm2/xT7pLw4RvN8sHc1J'],
        ['STORAGE_WEBHOOK_TOKEN', '5be1c0d9a2f84e67b3c2d1e0f9a8b7c6'],
        ['STORAGE_WEBHOOK_TOKEN', 'Kq3v>N8xT2mW9pL5rZ7y<B4cF6hJ1dG0sAe'],
        // `openssl rand -hex 8` that drew digits only (once in ~1,850): no words
        ['STORAGE_WEBHOOK_TOKEN', '4083917265510398'],
      ];
      const acceptedEnv = (name: string, value: string) => ({
        ...SECRETS,
        NODE_ENV: 'production',
        [name]: value,
      });
      estimateAtOnce([
        ...refused.map(([name, value]) => refusedEnv(name, value)),
        ...accepted.map(([name, value]) => acceptedEnv(name, value)),
      ]);
      for (const [name, value] of refused) {
        const problems = problemsOf(refusedEnv(name, value));
        expect([
          value,
          problems.length > 0 && problems.every((p) => p.startsWith(`${name}: `)),
        ]).toEqual([value, true]);
      }
      // Stripe's own (base64 from the dashboard, hex from its CLI) and openssl rand output boot
      for (const [name, value] of accepted) {
        expect(() => loadConfig(acceptedEnv(name, value))).not.toThrow();
      }
      // development takes anything the schema does
      expect(
        loadConfig({ NODE_ENV: 'development', STORAGE_WEBHOOK_TOKEN: 'z'.repeat(32) }).storage
          .webhookToken,
      ).toBe('z'.repeat(32));
    });

    it('refuses a guessable JWT_SECRET: long enough is not enough', () => {
      const weakEnv = (weak: string) => ({
        ...SECRETS,
        NODE_ENV: 'production',
        JWT_ISSUER: 'acme-books',
        JWT_AUDIENCE: 'acmebooks-api',
        JWT_SECRET: weak,
      });
      const weaks = [
        'a'.repeat(64),
        'changeme-changeme-changeme-changeme',
        '0101010101010101010101010101010101',
        // enough different characters and kinds, but a sequence: whoever tries patterns first
        // signs admin tokens with it
        'abcdefghijklmnopqrstuvwxyz012345',
        // this deployment's words, a year: ~10^25-29 guesses as zxcvbn estimated them alone, and
        // a cracker trying 17 words from one access token's own iss and aud found the
        // first in 3 s — told those words, about half what a random key of the length scores
        'shop-orders-jwt-secret-production-2026',
        'ProductionSecretKeyForShopOrders1',
        'Shop-Orders-JWT-Secret-2026-Production',
        // … however many of them: each word added adds far more to the estimate than to the work
        'production.orders.production.Signing.orders.Orders.Auth.access!',
        'Shop_2026_production_token_Token_Access_Production_auth_Token_live6!',
        // a deployment's own issuer and audience, whatever they are
        'Acme-Books-Api-Signing-Key-2026-acmebooks',
      ];
      const quoted = {
        ...SECRETS,
        NODE_ENV: 'production',
        JWT_SECRET: 'shop-orders-jwt-secret-production-2026',
      };
      estimateAtOnce([...weaks.map(weakEnv), quoted]);
      for (const weak of weaks) {
        expect([weak, problemsOf(weakEnv(weak))]).toEqual([
          weak,
          [expect.stringMatching(/^JWT_SECRET: too predictable/)],
        ]);
      }
      // named, never quoted; the way out said
      const [refusal] = problemsOf(quoted);
      expect(refusal).toMatch(/^JWT_SECRET: too predictable .* openssl rand -base64 48$/);
      expect(refusal).not.toMatch(/shop-orders-jwt|2026/);
      // … and more sequences, keyboard rows, a common password repeated (estimated at once)
      const patterned = [
        'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef',
        '0123456789abcdef0123456789abcdef',
        'qwertyuiop1234567890asdfghjklzxc',
        'Password1234567890Password123456',
      ];
      expect(Math.max(...guessesLog10(patterned))).toBeLessThan(20);
      // the estimates kept are forgotten past 1,024: one known before that is still answered
      const [weak] = patterned;
      guessesLog10(Array.from({ length: 1_030 }, (_, i) => `filler-${i}`));
      const [again] = guessesLog10([weak, 'one-more-0f3a9c']);
      expect(again).toBeLessThan(20);
      // what the usual generators give passes: openssl rand -hex 16 / -hex 32 / -base64 32 /
      // -base64 48, each of 15 draws, told the deployment's words (estimated at once: one child
      // process; -hex 16, the weakest, scored 0.83 per character at the least of 20,000 draws)
      // (fixed draws, a hash of a counter: the same each run, as for the webhook tokens above)
      const draws = Array.from({ length: 60 }, (_, i) =>
        createHash('sha512')
          .update(`jwt-secret-draw-${i}`)
          .digest()
          .subarray(0, [16, 32, 32, 48][i % 4])
          .toString(i % 4 < 2 ? 'hex' : 'base64'),
      );
      const words = ['shop-orders', 'shop-orders-api', 'shop', 'orders', 'jwt', 'secret', '2026'];
      const scores = guessesLog10(draws, words);
      expect(Math.min(...scores.map((g, i) => g / draws[i].length))).toBeGreaterThanOrEqual(0.8);
      const randomEnv = (random: string) => ({
        ...SECRETS,
        NODE_ENV: 'production',
        JWT_SECRET: random,
      });
      const hex64 = '3f9a0c1be27d4856a9c0f1e2d3b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f70';
      estimateAtOnce([...draws.slice(0, 4), hex64].map(randomEnv));
      for (const random of draws.slice(0, 4))
        expect(loadConfig(randomEnv(random)).jwt.secret).toBe(random);
      expect(loadConfig(randomEnv(hex64)).jwt.secret).toHaveLength(64);
    });

    it('refuses a JWT_SECRET that is a placeholder, words, the development secret dressed up, or another secret', () => {
      const prod = { ...SECRETS, NODE_ENV: 'production' };
      for (const placeholder of [
        '<at least 32 chars, 12 different: openssl rand -base64 48>',
        'replace-with-a-long-random-secret',
        'my jwt secret is long and has Many Words 42',
      ]) {
        expect(problemsOf({ ...prod, JWT_SECRET: placeholder })).toEqual([
          expect.stringMatching(/^JWT_SECRET: looks like a placeholder or words/),
        ]);
      }
      expect(problemsOf({ ...prod, JWT_SECRET: `${DEV_SECRETS.JWT_SECRET}-Prod-2026` })).toEqual([
        'JWT_SECRET: contains the public development secret',
      ]);
      const reused = 'Kq3vN8xT2mW9pL5rZ7yB4cF6hJ1dG0sAeUo';
      expect(
        problemsOf({ ...prod, JWT_SECRET: reused, STORAGE_SECRET_ACCESS_KEY: reused }),
      ).toEqual(['JWT_SECRET: the same value as STORAGE_SECRET_ACCESS_KEY']);
      // base64 and hex keys pass, and a password manager's with a lone < or >; in development anything long enough goes
      const randoms = [
        'Kq3v>N8xT2mW9pL5rZ7y<B4cF6hJ1dG0sAe',
        'Kq3v<N8xT2mW9pL5rZ7y>B4cF6hJ1dG0sAe',
      ];
      estimateAtOnce([reused, ...randoms].map((secret) => ({ ...prod, JWT_SECRET: secret })));
      expect(loadConfig({ ...prod, JWT_SECRET: reused }).jwt.secret).toBe(reused);
      for (const random of randoms) {
        expect(() => loadConfig({ ...prod, JWT_SECRET: random })).not.toThrow();
      }
      expect(problemsOf({ ...prod, JWT_SECRET: 'Kq3vN8xT2mW9pL5r<JWT_SECRET>Zy7B4cF6' })).toEqual([
        expect.stringMatching(/^JWT_SECRET: looks like a placeholder or words/),
      ]);
      expect(
        loadConfig({ NODE_ENV: 'development', JWT_SECRET: 'replace-with-a-long-random-secret' }).jwt
          .secret,
      ).toBe('replace-with-a-long-random-secret');
    });

    describe('an access-token key pair instead of JWT_SECRET (API.md: "or key pair variables")', () => {
      const pemPair = (type: 'ec' | 'rsa' | 'ed25519', opts: object) => {
        const k = generateKeyPairSync(type as 'ec', opts as { namedCurve: string });
        return {
          JWT_PRIVATE_KEY: k.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
          JWT_PUBLIC_KEY: k.publicKey.export({ type: 'spki', format: 'pem' }) as string,
        };
      };
      const p256 = pemPair('ec', { namedCurve: 'P-256' });
      const { JWT_SECRET: _secret, ...noSecret } = SECRETS;
      const prod = { ...noSecret, NODE_ENV: 'production' };

      it('boots in production with a pair and no JWT_SECRET, and picks the algorithm from the key', () => {
        const c = loadConfig({ ...prod, ...p256 });
        expect(c.jwt.secret).toBeUndefined();
        expect(c.jwt.keyPair?.algorithm).toBe('ES256');
        expect(
          loadConfig({ ...prod, ...pemPair('ec', { namedCurve: 'P-384' }) }).jwt.keyPair?.algorithm,
        ).toBe('ES384');
        expect(
          loadConfig({ ...prod, ...pemPair('rsa', { modulusLength: 2048 }) }).jwt.keyPair
            ?.algorithm,
        ).toBe('RS256');
        // one-line values with \n escapes, as .env files and secret stores carry PEMs
        const oneLine = Object.fromEntries(
          Object.entries(p256).map(([k, v]) => [k, v.replace(/\n/g, '\\n')]),
        );
        expect(oneLine.JWT_PRIVATE_KEY).not.toContain('\n');
        expect(loadConfig({ ...prod, ...oneLine }).jwt.keyPair?.publicKeyPem).toBe(
          p256.JWT_PUBLIC_KEY,
        );
      });

      it('still names JWT_SECRET (and the pair) when neither is set', () => {
        expect(problemsOf(prod)).toEqual([
          'JWT_SECRET: required in production (or the key pair JWT_PRIVATE_KEY and JWT_PUBLIC_KEY)',
        ]);
      });

      it('refuses half a pair, a pair with JWT_SECRET, a mismatched pair, weak or unsupported keys — never quoting a key', () => {
        const other = pemPair('ec', { namedCurve: 'P-256' });
        const cases: Array<[Record<string, string>, string]> = [
          [
            { JWT_PRIVATE_KEY: p256.JWT_PRIVATE_KEY },
            'JWT_PUBLIC_KEY: required with JWT_PRIVATE_KEY (the two halves of one key pair)',
          ],
          [
            { JWT_PUBLIC_KEY: p256.JWT_PUBLIC_KEY },
            'JWT_PRIVATE_KEY: required with JWT_PUBLIC_KEY (the two halves of one key pair)',
          ],
          [
            { ...p256, JWT_SECRET: SECRETS.JWT_SECRET },
            'JWT_SECRET: set together with JWT_PRIVATE_KEY/JWT_PUBLIC_KEY; set one or the other',
          ],
          [
            { ...p256, JWT_PUBLIC_KEY: other.JWT_PUBLIC_KEY },
            'JWT_PUBLIC_KEY: not the public half of JWT_PRIVATE_KEY',
          ],
          [
            { ...p256, JWT_PUBLIC_KEY: p256.JWT_PRIVATE_KEY },
            'JWT_PUBLIC_KEY: not a PEM public key',
          ],
          [{ ...p256, JWT_PRIVATE_KEY: 'not a key' }, 'JWT_PRIVATE_KEY: not a PEM private key'],
          [
            {
              ...p256,
              JWT_PRIVATE_KEY: generateKeyPairSync('ec', {
                namedCurve: 'P-256',
                privateKeyEncoding: {
                  type: 'pkcs8',
                  format: 'pem',
                  cipher: 'aes-256-cbc',
                  passphrase: 'pw',
                },
                publicKeyEncoding: { type: 'spki', format: 'pem' },
              }).privateKey,
            },
            'JWT_PRIVATE_KEY: an encrypted key (no passphrase is read: give it unencrypted, from a secret store)',
          ],
          [
            pemPair('rsa', { modulusLength: 1024 }),
            'JWT_PRIVATE_KEY: an RSA key of 1024 bits (at least 2048)',
          ],
          [
            pemPair('ec', { namedCurve: 'secp256k1' }),
            'JWT_PRIVATE_KEY: an EC key on secp256k1 (use P-256 or P-384)',
          ],
          [
            pemPair('ed25519', {}),
            'JWT_PRIVATE_KEY: key type ed25519 (use EC P-256, P-384 or RSA)',
          ],
        ];
        for (const [vars, problem] of cases) {
          const problems = problemsOf({ ...prod, ...vars });
          expect(problems).toEqual([problem]);
          expect(problems.join()).not.toMatch(/BEGIN|MII/);
        }
        // in development too: a broken pair is a boot error, not the built-in secret
        expect(
          problemsOf({ NODE_ENV: 'development', JWT_PRIVATE_KEY: p256.JWT_PRIVATE_KEY }),
        ).toHaveLength(1);
      });
    });

    it("refuses a live Stripe key with a STRIPE_API_URL that is not Stripe's (a test setup's stub, carried into production, would get the key and have payments succeed)", () => {
      const { STRIPE_TEST_MODE: _mode, ...secrets } = SECRETS;
      const live = { ...secrets, NODE_ENV: 'production', STRIPE_SECRET_KEY: LIVE_KEY };
      for (const url of [
        'http://127.0.0.1:12111',
        'https://stripe-proxy.attacker.example',
        'https://api.stripe.com.evil.example',
      ])
        expect(problemsOf({ ...live, STRIPE_API_URL: url })).toEqual([
          expect.stringMatching(/^STRIPE_API_URL: .* is not Stripe's/),
        ]);
      expect(() => loadConfig({ ...live, STRIPE_API_URL: 'https://api.stripe.com' })).not.toThrow();
      expect(() => loadConfig(live)).not.toThrow();
      // a test key may go to a stub (STRIPE_TEST_MODE: a staging instance)
      expect(() =>
        loadConfig({
          ...SECRETS,
          NODE_ENV: 'production',
          STRIPE_API_URL: 'http://127.0.0.1:12111',
        }),
      ).not.toThrow();
    });

    it('refuses a Stripe key that is not one, and a plain-http STRIPE_API_URL off this host, outside development', () => {
      const prod = { ...SECRETS, NODE_ENV: 'production' };
      for (const key of ['sk_live_\u2026', 'pk_live_abc', 'sk_live_abc def']) {
        expect(problemsOf({ ...prod, STRIPE_SECRET_KEY: key })).toEqual([
          expect.stringMatching(/^STRIPE_SECRET_KEY: not a Stripe secret or restricted key/),
        ]);
      }
      expect(problemsOf({ ...prod, STRIPE_API_URL: 'http://stripe-fake.internal:12111' })).toEqual([
        expect.stringMatching(/^STRIPE_API_URL: must use https/),
      ]);
      expect(loadConfig({ ...prod, STRIPE_API_URL: 'http://127.0.0.1:12111' }).stripe.apiUrl).toBe(
        'http://127.0.0.1:12111',
      );
      expect(
        loadConfig({ ...prod, STRIPE_API_URL: 'https://stripe-fake.internal' }).stripe.apiUrl,
      ).toBe('https://stripe-fake.internal');
    });

    it('refuses a shop currency Stripe counts in other units than ISO minor units (a receipt would not say what was charged)', () => {
      const prod = { ...SECRETS, NODE_ENV: 'production' };
      for (const currency of ['ISK', 'MGA', 'UGX']) {
        expect(problemsOf({ ...prod, SHOP_CURRENCY: currency })).toEqual([
          expect.stringMatching(/^SHOP_CURRENCY: Stripe counts/),
        ]);
      }
      expect(loadConfig({ ...prod, SHOP_CURRENCY: 'JPY' }).currency).toBe('JPY');
      expect(loadConfig({ NODE_ENV: 'development', SHOP_CURRENCY: 'ISK' }).currency).toBe('ISK'); // the simulated gateway
    });

    it('refuses a shop currency that is no ISO 4217 code (a typo booted, and every payment was refused)', () => {
      for (const currency of ['IRN', 'EUX', 'ABC']) {
        expect([currency, problemsOf({ ...SECRETS, SHOP_CURRENCY: currency })]).toEqual([
          currency,
          [expect.stringMatching(/^SHOP_CURRENCY: must be an ISO 4217 currency code/)],
        ]);
      }
      expect(loadConfig({ NODE_ENV: 'development', SHOP_CURRENCY: 'EUR' }).currency).toBe('EUR');
    });

    it('refuses a number made of spaces (it would coerce to 0 and switch a cap off)', () => {
      const prod = { ...SECRETS, NODE_ENV: 'production' };
      for (const blank of [' ', '\t', ' 3', '3.5', '-1', '1e3']) {
        expect(
          named(problemsOf({ ...prod, PURCHASE_LIMIT_OPEN_ORDERS: blank, PORT: blank })),
        ).toEqual(['PORT', 'PURCHASE_LIMIT_OPEN_ORDERS']);
      }
      expect(
        loadConfig({ ...prod, PURCHASE_LIMIT_OPEN_ORDERS: '0' }).purchaseLimits.openOrders,
      ).toBe(0);
    });

    it('names a URL that does not parse without quoting it (a password with / or # in it)', () => {
      const prod = { ...SECRETS, NODE_ENV: 'production' };
      for (const name of [
        'SMTP_URL',
        'DATABASE_URL',
        'REDIS_URL',
        'STRIPE_API_URL',
        'STORAGE_ENDPOINT',
      ]) {
        const problems = problemsOf({
          ...prod,
          [name]: 'smtps://AKIA:Bx/ab#c+d@email-smtp.example:465',
        });
        expect(named(problems)).toEqual([name]);
        expect(problems.join('\n')).not.toContain('Bx/ab');
      }
    });

    it('refuses TRUST_PROXY=true outside development, and anything that is not an address, a range or a hop count', () => {
      const prod = { ...SECRETS, NODE_ENV: 'production' };
      expect(problemsOf({ ...prod, TRUST_PROXY: 'true' })).toEqual([
        expect.stringMatching(/^TRUST_PROXY: "true" lets any client/),
      ]);
      // (development behind a proxy has a signing key of its own: developmentExposure)
      const dev = { NODE_ENV: 'development', JWT_SECRET: 'a-development-secret-of-its-own-0123' };
      expect(loadConfig({ ...dev, TRUST_PROXY: 'true' }).http.trustProxy).toBe(true);
      // "1" is a hop count here, never the address 0.0.0.1 (which would trust nobody real)
      expect(loadConfig({ ...prod, TRUST_PROXY: '1' }).http.trustProxy).toBe(1);
      expect(
        loadConfig({ ...prod, TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,fd00::/8,loopback' }).http
          .trustProxy,
      ).toBe('10.0.0.0/8,127.0.0.1,fd00::/8,loopback');
      expect(loadConfig({ ...prod, TRUST_PROXY: 'false' }).http.trustProxy).toBe(false);
      // ranges and hop counts that trust (nearly) everyone are "true" under another name
      for (const wide of [
        '0.0.0.0/0',
        '::/0',
        '10.0.0.0/8,0.0.0.0/1',
        '::ffff:0:0/96',
        '::ffff:0.0.0.0/100',
        '2000::/3',
        'f000::/4',
        '::/1',
        '0:0:0:0:0:ffff:0:0/96',
        '0::ffff:0:0/96',
        '::ffff:0:1/96',
        '::ffff:a00:0/96',
        '::FFFF:0:0/100',
      ]) {
        expect(problemsOf({ ...prod, TRUST_PROXY: wide })).toEqual([
          expect.stringMatching(/^TRUST_PROXY: ".*" covers \(nearly\) every address/),
        ]);
        expect(loadConfig({ ...dev, TRUST_PROXY: wide }).http.trustProxy).toBe(wide);
      }
      expect(problemsOf({ ...prod, TRUST_PROXY: '50' })).toEqual([
        expect.stringMatching(/^TRUST_PROXY: 50 hops trusts more proxies/),
      ]);
      expect(loadConfig({ ...prod, TRUST_PROXY: '5' }).http.trustProxy).toBe(5);
      expect(
        loadConfig({
          ...prod,
          TRUST_PROXY: '172.16.0.0/12,2001:db8::/32,::ffff:10.0.0.0/104,fc00::/7,fe80::/10',
        }).http.trustProxy,
      ).toBe('172.16.0.0/12,2001:db8::/32,::ffff:10.0.0.0/104,fc00::/7,fe80::/10');
      expect(loadConfig(prod).http.trustProxy).toBe(false);
      for (const bad of ['lb.internal', '10.0', '10.0.0.0/33', '10.0.0.1/8/8', 'yes']) {
        expect(problemsOf({ ...prod, TRUST_PROXY: bad })).toEqual([
          expect.stringMatching(/^TRUST_PROXY: ".*" is not an IP address/),
        ]);
      }
    });

    it('reports bad values and missing secrets together', () => {
      expect(named(problemsOf({ PORT: 'eighty' }))).toEqual(['PORT', ...ALL_SECRET_NAMES].sort());
    });

    it('refuses the built-in development secrets outside development, even when given explicitly', () => {
      for (const nodeEnv of [undefined, 'test', 'production']) {
        const env = { ...SECRETS, ...DEV_SECRETS, ...(nodeEnv ? { NODE_ENV: nodeEnv } : {}) };
        expect(named(problemsOf(env))).toEqual(Object.keys(DEV_SECRETS).sort());
      }
    });

    it('accepts any non-development environment once every secret is given: no dev behaviour; the documented /docs stays', () => {
      for (const nodeEnv of [undefined, 'test', 'production']) {
        const c = loadConfig({ ...SECRETS, ...(nodeEnv ? { NODE_ENV: nodeEnv } : {}) });
        expect(c.isDevelopment).toBe(false);
        expect(c.docsEnabled).toBe(true); // API.md: /docs and /docs-json are part of the surface
        expect(c.jwt.secret).toBe(SECRETS.JWT_SECRET);
        expect(c.stripe.secretKey).toBe(SECRETS.STRIPE_SECRET_KEY);
      }
    });

    it('gives NODE_ENV=development its built-in secrets, the simulated gateway and /docs', () => {
      const c = loadConfig({ NODE_ENV: 'development' });
      expect(c.isDevelopment).toBe(true);
      expect(c.docsEnabled).toBe(true);
      expect(c.jwt.secret).toBe(DEV_SECRETS.JWT_SECRET);
      expect(c.stripe.webhookSecret).toBe(DEV_SECRETS.STRIPE_WEBHOOK_SECRET);
      expect(c.storage.secretAccessKey).toBe(DEV_SECRETS.STORAGE_SECRET_ACCESS_KEY);
      expect(c.storage.webhookToken).toBe(DEV_SECRETS.STORAGE_WEBHOOK_TOKEN);
    });

    it('lets DOCS_ENABLED override the default either way', () => {
      expect(loadConfig({ NODE_ENV: 'development', DOCS_ENABLED: 'false' }).docsEnabled).toBe(
        false,
      );
      expect(
        loadConfig({ NODE_ENV: 'production', ...SECRETS, DOCS_ENABLED: 'false' }).docsEnabled,
      ).toBe(false);
    });

    it("keeps the pool's queue wait below the shutdown's drain: a request queued when the process stops is answered", () => {
      const dev = { NODE_ENV: 'development' };
      expect(loadConfig(dev).database.poolWaitMs).toBeLessThan(
        loadConfig(dev).http.shutdownTimeoutMs,
      );
      expect(() => loadConfig({ ...dev, DATABASE_POOL_WAIT_MS: '10000' })).toThrow(
        /DATABASE_POOL_WAIT_MS: must be below SHUTDOWN_TIMEOUT_MS/,
      );
      expect(
        loadConfig({ ...dev, DATABASE_POOL_WAIT_MS: '20000', SHUTDOWN_TIMEOUT_MS: '30000' })
          .database.poolWaitMs,
      ).toBe(20_000);
    });

    it('lets migration tools read the database settings without any secret', () => {
      expect(loadDatabaseConfig({ DATABASE_URL: 'postgres://a@b/c?sslmode=require' }).url).toBe(
        'postgres://a@b/c?sslmode=require',
      );
      // the lock sessions follow DATABASE_URL unless given their own (a PgBouncer in between)
      expect(loadDatabaseConfig({ DATABASE_URL: 'postgres://a@b/c?sslmode=require' }).lockUrl).toBe(
        'postgres://a@b/c?sslmode=require',
      );
      expect(
        loadDatabaseConfig({
          DATABASE_URL: 'postgres://a@bouncer/c?sslmode=require',
          DATABASE_LOCK_URL: 'postgres://a@b/c?sslmode=require',
        }).lockUrl,
      ).toBe('postgres://a@b/c?sslmode=require');
      expect(() => loadDatabaseConfig({ DATABASE_LOCK_URL: 'mysql://x' })).toThrow(
        /DATABASE_LOCK_URL/,
      );
      expect(() => loadDatabaseConfig({ DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL/);
      // a deployment's migration without it: refused, not the local default's database migrated
      expect(() => loadDatabaseConfig({ NODE_ENV: 'production' })).toThrow(
        /DATABASE_URL: required/,
      );
      expect(
        loadDatabaseConfig({
          NODE_ENV: 'production',
          DATABASE_URL: 'postgres://a@b/c?sslmode=require',
        }).url,
      ).toBe('postgres://a@b/c?sslmode=require');
      expect(loadDatabaseConfig({ NODE_ENV: 'development' }).url).toMatch(/127\.0\.0\.1/);
      // test is not development either (a staging deployment's migration, as its API and worker)
      expect(() => loadDatabaseConfig({ NODE_ENV: 'test' })).toThrow(
        /DATABASE_URL: required with NODE_ENV="test"/,
      );
      // NODE_ENV as loadConfig reads it, untrimmed: `development ` boots no API or worker, and
      // migrates no local default database either
      expect(() => loadDatabaseConfig({ NODE_ENV: 'development ' })).toThrow(
        /NODE_ENV: begins or ends with whitespace/,
      );
      expect(() => loadConfig({ NODE_ENV: 'development ' })).toThrow(
        /NODE_ENV: begins or ends with whitespace/,
      );
      // unset is not development: a deployment's migration step that forgot DATABASE_URL refuses
      expect(() => loadDatabaseConfig({})).toThrow(
        /DATABASE_URL: required with NODE_ENV=\(not set\)/,
      );
      expect(() => loadDatabaseConfig({ NODE_ENV: 'Test' })).toThrow(/NODE_ENV: "Test" is none of/);
    });
  });
});

describe("a verify-only key for a rotation's roll (JWT_VERIFY_ONLY_SECRET / JWT_VERIFY_ONLY_PUBLIC_KEY)", () => {
  const pemPair = (type: 'ec' | 'rsa' | 'ed25519', opts: object) => {
    const k = generateKeyPairSync(type as 'ec', opts as { namedCurve: string });
    return {
      JWT_PRIVATE_KEY: k.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      JWT_PUBLIC_KEY: k.publicKey.export({ type: 'spki', format: 'pem' }) as string,
    };
  };
  const prod = { ...SECRETS, NODE_ENV: 'production' };
  const { JWT_SECRET: _secret, ...prodWithoutSecret } = prod;
  const current = pemPair('ec', { namedCurve: 'P-256' });
  const next = pemPair('ec', { namedCurve: 'P-384' });
  const otherSecret = randomBytes(36).toString('base64');

  it('boots with a verify-only secret beside JWT_SECRET, a verify-only public key beside a pair, and either beside the other kind (a move between HS256 and a pair)', () => {
    expect(loadConfig({ ...prod, JWT_VERIFY_ONLY_SECRET: otherSecret }).jwt).toMatchObject({
      secret: SECRETS.JWT_SECRET,
      verifyOnly: { algorithm: 'HS256', secret: otherSecret },
    });
    const pair = loadConfig({
      ...prodWithoutSecret,
      ...current,
      JWT_VERIFY_ONLY_PUBLIC_KEY: next.JWT_PUBLIC_KEY.replace(/\n/g, '\\n'),
    }).jwt;
    expect(pair.keyPair?.algorithm).toBe('ES256');
    expect(pair.verifyOnly).toEqual({ algorithm: 'ES384', publicKeyPem: next.JWT_PUBLIC_KEY });
    expect(
      loadConfig({ ...prod, JWT_VERIFY_ONLY_PUBLIC_KEY: next.JWT_PUBLIC_KEY }).jwt.verifyOnly,
    ).toMatchObject({ algorithm: 'ES384' });
    expect(
      loadConfig({ ...prodWithoutSecret, ...current, JWT_VERIFY_ONLY_SECRET: otherSecret }).jwt
        .verifyOnly,
    ).toEqual({ algorithm: 'HS256', secret: otherSecret });
    // unset (or empty, as a template leaves it): none
    expect(loadConfig({ ...prod, JWT_VERIFY_ONLY_SECRET: '' }).jwt.verifyOnly).toBeUndefined();
  });

  it('refuses the signing key itself, both kinds at once, a PEM as a secret, and a public key JWT_PUBLIC_KEY would refuse — never quoting a key', () => {
    const cases: Array<[Record<string, string>, string]> = [
      [
        { ...prod, JWT_VERIFY_ONLY_SECRET: SECRETS.JWT_SECRET },
        'JWT_VERIFY_ONLY_SECRET: the same value as JWT_SECRET, which signs (and is accepted) already; give the next or the previous key',
      ],
      [
        { ...prodWithoutSecret, ...current, JWT_VERIFY_ONLY_PUBLIC_KEY: current.JWT_PUBLIC_KEY },
        'JWT_VERIFY_ONLY_PUBLIC_KEY: the same key as JWT_PUBLIC_KEY, which is accepted already; give the next or the previous key',
      ],
      [
        {
          ...prod,
          JWT_VERIFY_ONLY_SECRET: otherSecret,
          JWT_VERIFY_ONLY_PUBLIC_KEY: next.JWT_PUBLIC_KEY,
        },
        'JWT_VERIFY_ONLY_SECRET: set together with JWT_VERIFY_ONLY_PUBLIC_KEY; one key is accepted besides the signing one, set one or the other',
      ],
      [
        { ...prod, JWT_VERIFY_ONLY_PUBLIC_KEY: next.JWT_PRIVATE_KEY },
        'JWT_VERIFY_ONLY_PUBLIC_KEY: not a PEM public key',
      ],
      [
        { ...prod, JWT_VERIFY_ONLY_PUBLIC_KEY: 'not a key' },
        'JWT_VERIFY_ONLY_PUBLIC_KEY: not a PEM public key',
      ],
      [
        {
          ...prod,
          JWT_VERIFY_ONLY_PUBLIC_KEY: pemPair('rsa', { modulusLength: 1024 }).JWT_PUBLIC_KEY,
        },
        'JWT_VERIFY_ONLY_PUBLIC_KEY: an RSA key of 1024 bits (at least 2048)',
      ],
      [
        {
          ...prod,
          JWT_VERIFY_ONLY_PUBLIC_KEY: pemPair('ec', { namedCurve: 'secp256k1' }).JWT_PUBLIC_KEY,
        },
        'JWT_VERIFY_ONLY_PUBLIC_KEY: an EC key on secp256k1 (use P-256 or P-384)',
      ],
      [
        { ...prod, JWT_VERIFY_ONLY_PUBLIC_KEY: pemPair('ed25519', {}).JWT_PUBLIC_KEY },
        'JWT_VERIFY_ONLY_PUBLIC_KEY: key type ed25519 (use EC P-256, P-384 or RSA)',
      ],
    ];
    for (const [env, problem] of cases) {
      const problems = problemsOf(env);
      expect(problems).toEqual([problem]);
      expect(problems.join()).not.toMatch(/BEGIN|MII/);
    }
    // the current public key given as an HMAC secret (one line, as a secret store holds it):
    // anyone holding the public key would sign HS256 tokens accepted here
    // — in every form a secret store may hold it: the PEM, its body alone (one line or folded),
    // base64url, a JWK (diff review: the body and the JWK minted admin tokens), a private key too
    const body = current.JWT_PUBLIC_KEY.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
    const publicKey = createPublicKey(current.JWT_PUBLIC_KEY);
    const forms = [
      current.JWT_PUBLIC_KEY.replace(/\n/g, '\\n'),
      body,
      body.replace(/(.{64})/g, '$1\\n'),
      Buffer.from(body, 'base64').toString('base64url'),
      JSON.stringify(publicKey.export({ format: 'jwk' })),
      JSON.stringify({ keys: [publicKey.export({ format: 'jwk' })] }), // a JWKS
      Buffer.from(body, 'base64').toString('hex'), // `xxd -p` of the DER
      createPublicKey(pemPair('rsa', { modulusLength: 2048 }).JWT_PUBLIC_KEY)
        .export({ type: 'pkcs1', format: 'der' })
        .toString('base64'),
      current.JWT_PRIVATE_KEY.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''),
    ];
    const envs = [
      { ...prodWithoutSecret, ...current },
      { NODE_ENV: 'development', ...current },
    ];
    // a random secret in base64 or hex is no key
    const randoms = [randomBytes(48).toString('base64'), randomBytes(32).toString('hex')];
    // and as the signing secret itself (configuration review: an SPKI body or a JWK in
    // JWT_SECRET was taken — whoever holds that public key signed admin tokens)
    const signingEnvs = [prodWithoutSecret, { NODE_ENV: 'development' }];
    estimateAtOnce([
      ...envs.flatMap((env) => forms.map((form) => ({ ...env, JWT_VERIFY_ONLY_SECRET: form }))),
      ...randoms.map((random) => ({
        ...prodWithoutSecret,
        ...current,
        JWT_VERIFY_ONLY_SECRET: random,
      })),
      ...signingEnvs.flatMap((env) => forms.map((form) => ({ ...env, JWT_SECRET: form }))),
    ]);
    for (const env of signingEnvs) {
      for (const form of forms) {
        const problems = problemsOf({ ...env, JWT_SECRET: form });
        expect(problems).toContain(
          'JWT_SECRET: a key (PEM, JWK or base64 DER), not an HS256 secret (a public key taken as an HMAC secret lets anyone holding it sign tokens); give a public key as JWT_PUBLIC_KEY (with JWT_PRIVATE_KEY)',
        );
        expect(problems.join()).not.toMatch(/MII/);
      }
    }
    for (const env of envs) {
      for (const form of forms) {
        const problems = problemsOf({ ...env, JWT_VERIFY_ONLY_SECRET: form });
        expect(problems).toContain(
          'JWT_VERIFY_ONLY_SECRET: a key (PEM, JWK or base64 DER), not an HS256 secret (a public key taken as an HMAC secret lets anyone holding it sign tokens); give a public key as JWT_VERIFY_ONLY_PUBLIC_KEY',
        );
        expect(problems.join()).not.toMatch(/MII/);
      }
    }
    for (const random of randoms) {
      expect(
        loadConfig({ ...prodWithoutSecret, ...current, JWT_VERIFY_ONLY_SECRET: random }).jwt
          .verifyOnly,
      ).toEqual({ algorithm: 'HS256', secret: random });
    }
  });

  it('judges a verify-only secret as JWT_SECRET is: length, different characters, and outside development placeholders, patterns and the other secrets', () => {
    expect(problemsOf({ ...prod, JWT_VERIFY_ONLY_SECRET: 'Zq8rT3vW9xK2mP5nL' })).toEqual([
      expect.stringMatching(/^JWT_VERIFY_ONLY_SECRET: String must contain at least 32/),
    ]);
    expect(problemsOf({ ...prod, JWT_VERIFY_ONLY_SECRET: 'a'.repeat(40) })).toEqual([
      expect.stringMatching(/^JWT_VERIFY_ONLY_SECRET: too predictable: fewer than 12 different/),
    ]);
    const weaks = [
      ['abcdefghijklmnopqrstuvwxyz012345', /^JWT_VERIFY_ONLY_SECRET: too predictable — /],
      // words of this deployment (a token's own issuer and audience among them)
      ['Shop-Orders-JWT-Secret-2026-Production', /^JWT_VERIFY_ONLY_SECRET: too predictable — /],
      ['replace-with-a-long-random-secret', /^JWT_VERIFY_ONLY_SECRET: looks like a placeholder/],
      [`${DEV_SECRETS.JWT_SECRET}-2`, /^JWT_VERIFY_ONLY_SECRET: contains the public development/],
    ] as const;
    const reused = 'Zq8rT3vW9xK2mP5nLs6Jd1HfAb4Cd7Ef0Gh';
    estimateAtOnce([
      ...weaks.map(([weak]) => ({ ...prod, JWT_VERIFY_ONLY_SECRET: weak })),
      { ...prod, STORAGE_WEBHOOK_TOKEN: reused, JWT_VERIFY_ONLY_SECRET: reused },
    ]);
    for (const [weak, problem] of weaks) {
      expect(problemsOf({ ...prod, JWT_VERIFY_ONLY_SECRET: weak })).toEqual([
        expect.stringMatching(problem),
      ]);
    }
    expect(
      problemsOf({ ...prod, STORAGE_WEBHOOK_TOKEN: reused, JWT_VERIFY_ONLY_SECRET: reused }),
    ).toEqual(['JWT_VERIFY_ONLY_SECRET: the same value as STORAGE_WEBHOOK_TOKEN']);
    // the built-in development secret: public, refused in development too
    for (const env of [prod, { NODE_ENV: 'development', JWT_SECRET: otherSecret }]) {
      expect(problemsOf({ ...env, JWT_VERIFY_ONLY_SECRET: DEV_SECRETS.JWT_SECRET })).toEqual([
        'JWT_VERIFY_ONLY_SECRET: the built-in development secret (public: anyone could sign tokens accepted under it)',
      ]);
    }
    // in development, the built-in signing secret is the one compared with
    expect(
      loadConfig({ NODE_ENV: 'development', JWT_VERIFY_ONLY_SECRET: otherSecret }).jwt.verifyOnly,
    ).toEqual({ algorithm: 'HS256', secret: otherSecret });
  });
});

describe("a development instance on servers that are not this machine's", () => {
  it("is refused (a developer's .env with a deployment's URLs would seed demo data and run simulated payments on them) unless they are said to be development servers", () => {
    const remote = {
      NODE_ENV: 'development',
      DATABASE_URL: 'postgres://shop:pw@db.shop.example.com:5432/shop',
      DATABASE_LOCK_URL: 'postgres://shop:pw@10.0.0.5:5432/shop',
      REDIS_URL: 'redis://:pw@cache.shop.example.com:6379',
    };
    expect(named(problemsOf(remote))).toEqual(['DATABASE_LOCK_URL', 'DATABASE_URL', 'REDIS_URL']);
    expect(problemsOf(remote)[0]).toMatch(
      /db\.shop\.example\.com is not this machine.*DEVELOPMENT_REMOTE_SERVICES=true/,
    );
    expect(() => loadConfig({ ...remote, DEVELOPMENT_REMOTE_SERVICES: 'true' })).not.toThrow();
    // this machine, however spelt: loopback names and addresses, a socket directory, no host
    for (const url of [
      'postgres://shop@localhost/shop',
      'postgres://shop@127.0.0.1:5432/shop',
      'postgres://shop@[::1]:5432/shop',
      'postgres:///shop?host=/var/run/postgresql',
    ]) {
      expect(() => loadConfig({ NODE_ENV: 'development', DATABASE_URL: url })).not.toThrow();
    }
    // a deployment (not development) is not concerned: its servers are elsewhere by design
    expect(() =>
      loadConfig({
        ...SECRETS,
        NODE_ENV: 'production',
        DATABASE_URL: `${remote.DATABASE_URL}?sslmode=verify-full`,
        REDIS_URL: remote.REDIS_URL.replace('redis:', 'rediss:'),
      }),
    ).not.toThrow();
  });

  it("judges the host node-postgres connects to (`?host=` over the URL's, then PGHOST), and the migrations refuse as the API does", () => {
    for (const env of [
      { DATABASE_URL: 'postgres://shop@localhost:5432/shop?host=db.shop.example.com', PGHOST: '' },
      { DATABASE_URL: 'postgres:///shop', PGHOST: 'db.shop.example.com' },
      { DATABASE_URL: 'postgresql:///shop?sslmode=disable', PGHOST: '192.0.2.2' },
      // a URL the parser refuses once its CA is taken out (node-postgres reads it whole, and
      // connects): still that host, not this machine
      {
        DATABASE_URL:
          'postgres://u:p@prod.db.example.com/shop?uselibpqcompat=true&sslmode=verify-ca&sslrootcert=/etc/hostname',
        PGHOST: '',
      },
    ]) {
      const dev = { NODE_ENV: 'development', ...env };
      expect(named(problemsOf(dev))).toEqual(['DATABASE_URL']);
      // `npm start` migrates before the seed and the API refuse: the migrations refuse too
      expect(() => loadDatabaseConfig(dev)).toThrow(/DATABASE_URL: .* is not this machine/);
      expect(() =>
        loadDatabaseConfig({ ...dev, DEVELOPMENT_REMOTE_SERVICES: 'true' }),
      ).not.toThrow();
    }
    // a socket directory in PGHOST or `?host=` is this machine; Redis is no migration's concern
    expect(() =>
      loadDatabaseConfig({
        NODE_ENV: 'development',
        DATABASE_URL: 'postgres:///shop',
        PGHOST: '/var/run/postgresql',
        REDIS_URL: 'redis://cache.shop.example.com:6379',
      }),
    ).not.toThrow();
    expect(() =>
      loadDatabaseConfig({
        NODE_ENV: 'development',
        DATABASE_URL: 'postgres://shop@db.shop.example.com/shop?host=/var/run/postgresql',
      }),
    ).not.toThrow();
  });
});

describe('a database or Redis on another machine outside development', () => {
  const prod = { ...SECRETS, NODE_ENV: 'production' };

  it('is refused in plain text (its password and every order readable on the way), by the API, the worker and the migrations', () => {
    const plain = {
      ...prod,
      DATABASE_URL: 'postgres://shop:pw@db.shop.example.com:5432/shop',
      DATABASE_LOCK_URL: 'postgres://shop:pw@10.0.0.5:5432/shop',
      REDIS_URL: 'redis://:pw@cache.shop.example.com:6379',
    };
    expect(named(problemsOf(plain))).toEqual(['DATABASE_LOCK_URL', 'DATABASE_URL', 'REDIS_URL']);
    expect(problemsOf(plain).join('\n')).toMatch(
      /DATABASE_URL: db\.shop\.example\.com is another machine, reached in plain text.*sslmode=verify-full.*name db\.shop\.example\.com in SERVICES_PRIVATE_NETWORK/,
    );
    expect(problemsOf(plain).join('\n')).toMatch(/REDIS_URL: .*use rediss:\/\//);
    expect(() => loadDatabaseConfig(plain)).toThrow(/DATABASE_URL: .* plain text/);
    // NODE_ENV unset or `test` is no development either
    const { NODE_ENV: _unset, ...unset } = plain;
    expect(named(problemsOf(unset))).toEqual(['DATABASE_LOCK_URL', 'DATABASE_URL', 'REDIS_URL']);
    expect(named(problemsOf({ ...plain, NODE_ENV: 'test' }))).toHaveLength(3);
    // the host node-postgres connects to: `?host=` over the URL's, then PGHOST
    for (const env of [
      { DATABASE_URL: 'postgres://shop@localhost/shop?host=db.shop.example.com' },
      { DATABASE_URL: 'postgres:///shop', PGHOST: 'db.shop.example.com' },
      // as node-postgres reads a URL: the last of a repeated parameter, an empty one as absent
      { DATABASE_URL: 'postgres://shop@localhost/shop?host=localhost&host=db.shop.example.com' },
      { DATABASE_URL: 'postgres://shop@db.shop.example.com/shop?sslmode=' },
      { DATABASE_URL: 'postgres://shop@db.shop.example.com/shop?sslrootcert=' },
      {
        DATABASE_URL:
          'postgres://shop@db.shop.example.com/shop?sslmode=require&sslmode=disable&sslmode=',
      },
      { DATABASE_URL: 'postgres://shop@db.shop.example.com/shop?ssl=true&ssl=0' },
      // PGSSLMODE as given (node-postgres does not trim it)
      { DATABASE_URL: 'postgres://shop@db.shop.example.com/shop', PGSSLMODE: 'require ' },
    ] as Record<string, string>[]) {
      expect({ env, problems: named(problemsOf({ ...prod, ...env })) }).toEqual({
        env,
        problems: ['DATABASE_URL'],
      });
    }
  });

  it('boots with TLS asked for as node-postgres reads it, with plain text said in the URL, or on a private network', () => {
    for (const DATABASE_URL of [
      'postgres://shop:pw@db.shop.example.com/shop?sslmode=verify-full',
      'postgres://shop:pw@db.shop.example.com/shop?sslmode=require',
      'postgres://shop:pw@db.shop.example.com/shop?ssl=true',
      'postgres://shop:pw@db.shop.example.com/shop?ssl=no-verify',
      'postgres://shop:pw@db.shop.example.com/shop?sslnegotiation=direct',
      'postgres://shop:pw@db.shop.example.com/shop?sslrootcert=/etc/ssl/db-ca.pem',
      'postgres://shop:pw@db.shop.example.com/shop?sslmode=disable&sslmode=verify-full',
      // plain text meant, and said: not a forgotten setting
      'postgres://shop:pw@db.shop.example.com/shop?sslmode=disable',
    ]) {
      expect(() => loadConfig({ ...prod, DATABASE_URL })).not.toThrow();
      expect(() => loadDatabaseConfig({ ...prod, DATABASE_URL })).not.toThrow();
    }
    const remote = 'postgres://shop:pw@db.shop.example.com/shop';
    expect(() =>
      loadConfig({ ...prod, DATABASE_URL: remote, PGSSLMODE: 'verify-full' }),
    ).not.toThrow();
    // as node-postgres: `ssl=0` and a PGSSLMODE of disable are plain text
    expect(named(problemsOf({ ...prod, DATABASE_URL: `${remote}?ssl=0` }))).toEqual([
      'DATABASE_URL',
    ]);
    expect(named(problemsOf({ ...prod, DATABASE_URL: remote, PGSSLMODE: 'disable' }))).toEqual([
      'DATABASE_URL',
    ]);
    // this machine, however spelt, in plain text: nothing crosses a network
    for (const DATABASE_URL of [
      'postgres://shop@127.0.0.1:5432/shop',
      'postgres://shop@localhost./shop',
      'postgres://shop@[::1]:5432/shop',
      'postgres:///shop?host=/var/run/postgresql',
      // a socket directory as node-postgres takes it in the host
      'postgres://shop@%2Fvar%2Frun%2Fpostgresql/shop',
    ]) {
      expect(() =>
        loadConfig({ ...prod, DATABASE_URL, REDIS_URL: 'redis://127.0.0.1:6379' }),
      ).not.toThrow();
    }
    // the compose stack: servers on its own network, which publishes neither
    const plain = {
      ...prod,
      DATABASE_URL: 'postgres://shop:pw@postgres:5432/shop',
      REDIS_URL: 'redis://:pw@redis:6379',
    };
    expect(named(problemsOf(plain))).toEqual(['DATABASE_URL', 'REDIS_URL']);
    const stack = { ...plain, SERVICES_PRIVATE_NETWORK: 'postgres, Redis' };
    expect(() => loadConfig(stack)).not.toThrow();
    expect(() => loadDatabaseConfig(stack)).not.toThrow();
    // only the hosts it names: a PgBouncer elsewhere given through the stack is not waved through
    expect(
      named(
        problemsOf({ ...stack, DATABASE_LOCK_URL: 'postgres://shop:pw@bouncer.example.com/shop' }),
      ),
    ).toEqual(['DATABASE_LOCK_URL']);
    expect(named(problemsOf({ ...plain, SERVICES_PRIVATE_NETWORK: 'postgres' }))).toEqual([
      'REDIS_URL',
    ]);
    // hosts, not a switch
    expect(problemsOf({ ...plain, SERVICES_PRIVATE_NETWORK: 'true' })[0]).toMatch(
      /^SERVICES_PRIVATE_NETWORK: names the hosts .* not true/,
    );
    // development is the remote-services check's (DEVELOPMENT_REMOTE_SERVICES), not this one's
    expect(() =>
      loadConfig({ ...plain, NODE_ENV: 'development', DEVELOPMENT_REMOTE_SERVICES: 'true' }),
    ).not.toThrow();
  });
});

describe("the object store's addresses outside development", () => {
  it('are https unless on this host: browsers upload to the endpoint and load images from the base URL', () => {
    const prod = { ...SECRETS, NODE_ENV: 'production' };
    expect(problemsOf({ ...prod, STORAGE_ENDPOINT: 'http://minio.example.com:9000' })).toEqual([
      expect.stringMatching(/^STORAGE_ENDPOINT: must use https/),
    ]);
    expect(problemsOf({ ...prod, STORAGE_BASE_URL: 'http://cdn.example.com' })).toEqual([
      expect.stringMatching(/^STORAGE_BASE_URL: must use https/),
    ]);
    for (const ok of [
      {
        STORAGE_ENDPOINT: 'https://minio.example.com',
        STORAGE_BASE_URL: 'https://cdn.example.com',
      },
    ])
      expect(() => loadConfig({ ...prod, ...ok })).not.toThrow();
    // on this machine: plain http is no risk, but in production customers' browsers would be sent
    // to their own machines (a staging or test instance may keep its store there)
    const local = {
      STORAGE_ENDPOINT: 'http://127.0.0.1:9000',
      STORAGE_BASE_URL: 'http://localhost:9000/i',
    };
    expect(problemsOf({ ...prod, ...local })).toEqual([
      expect.stringMatching(/^STORAGE_ENDPOINT: on this machine \(127\.0\.0\.1\)/),
      expect.stringMatching(/^STORAGE_BASE_URL: on this machine \(localhost\)/),
    ]);
    // in any spelling of this machine
    for (const endpoint of [
      'https://localhost.:9000',
      'https://minio.localhost',
      'https://[::ffff:127.0.0.1]',
      'https://[::ffff:7f00:1]',
      'https://0.0.0.0:9000',
      'https://[::]:9000',
      'https://[::ffff:0.0.0.0]',
      'https://127.1.2.3',
    ])
      expect(problemsOf({ ...prod, STORAGE_ENDPOINT: endpoint })).toEqual([
        expect.stringMatching(/^STORAGE_ENDPOINT: on this machine/),
      ]);
    expect(() => loadConfig({ ...prod, ...local, NODE_ENV: 'staging' })).not.toThrow();
    expect(() =>
      loadConfig({ NODE_ENV: 'development', STORAGE_ENDPOINT: 'http://minio.lan:9000' }),
    ).not.toThrow();
  });
});

describe("the object store's URLs as they are used", () => {
  it('refuses a STORAGE_BASE_URL with a user, a password, a query or a fragment (each public image URL begins with it), and a STORAGE_ENDPOINT with a user or password (ignored) — never quoting them', () => {
    for (const nodeEnv of ['production', 'development']) {
      const env =
        nodeEnv === 'production' ? { ...SECRETS, NODE_ENV: nodeEnv } : { NODE_ENV: nodeEnv };
      for (const [name, value, problem] of [
        [
          'STORAGE_BASE_URL',
          'https://cdn-user:Cdn-Pw-0123@cdn.shop.example.com',
          /takes no user or password: it begins every public image URL/,
        ],
        [
          'STORAGE_BASE_URL',
          'https://cdn-user@cdn.shop.example.com/img',
          /takes no user or password/,
        ],
        [
          'STORAGE_BASE_URL',
          'https://cdn.shop.example.com/img?v=1',
          /takes no query string or fragment/,
        ],
        [
          'STORAGE_BASE_URL',
          'https://cdn.shop.example.com/img?',
          /takes no query string or fragment/,
        ],
        [
          'STORAGE_BASE_URL',
          'https://cdn.shop.example.com/img#top',
          /takes no query string or fragment/,
        ],
        [
          'STORAGE_ENDPOINT',
          'https://writer:Store-Pw-0123@storage.shop.example.com',
          /takes no user or password \(they would be ignored/,
        ],
      ] as const) {
        const problems = problemsOf({ ...env, [name]: value });
        expect([nodeEnv, value, problems]).toEqual([
          nodeEnv,
          value,
          [expect.stringMatching(new RegExp(`^${name}: ${problem.source}`))],
        ]);
        expect(problems.join('\n')).not.toMatch(/Pw-0123|cdn-user|writer/);
      }
    }
    // a path is a prefix as any other: kept
    expect(
      loadConfig({
        ...SECRETS,
        NODE_ENV: 'production',
        STORAGE_BASE_URL: 'https://cdn.shop.example.com/img/',
      }).storage.baseUrl,
    ).toBe('https://cdn.shop.example.com/img');
  });
});

describe('a development instance on the built-in JWT_SECRET', () => {
  it('refuses a proxy in front (TRUST_PROXY), as it refuses a HOST beyond loopback: anyone reaching it could sign an admin token', () => {
    for (const proxy of ['127.0.0.1', '1', 'loopback', 'true']) {
      expect(problemsOf({ NODE_ENV: 'development', TRUST_PROXY: proxy })).toEqual([
        expect.stringMatching(
          /^TRUST_PROXY: a proxy in front makes this development instance reachable/,
        ),
      ]);
      expect(() =>
        loadConfig({
          NODE_ENV: 'development',
          TRUST_PROXY: proxy,
          JWT_SECRET: DEV_SECRETS.JWT_SECRET,
        }),
      ).toThrow(/TRUST_PROXY: a proxy in front/);
    }
    expect(() => loadConfig({ NODE_ENV: 'development', TRUST_PROXY: 'false' })).not.toThrow();
    // no hop is no proxy: `false`, which the local-only gate and the demo passwords read
    for (const none of ['0', '00'])
      expect(loadConfig({ NODE_ENV: 'development', TRUST_PROXY: none }).http.trustProxy).toBe(
        false,
      );
    expect(() =>
      loadConfig({
        NODE_ENV: 'development',
        TRUST_PROXY: '127.0.0.1',
        JWT_SECRET: 'a-development-secret-of-its-own-0123',
      }),
    ).not.toThrow();
  });
});

describe('values a deployment templated or copied wrong', () => {
  const prod = { ...SECRETS, NODE_ENV: 'production' };

  it('refuses a REDIS_URL with a query, a fragment or a path that is no database number: the Redis clients would each read it their own way', () => {
    // (no TLS asked for here: that is plainTextServiceProblems', told apart by this)
    const prod = { ...SECRETS, NODE_ENV: 'production', SERVICES_PRIVATE_NETWORK: 'cache,fd00::5' };
    // ioredis (readiness, the queue board, depth metrics) reads ?db= / ?password= / ?family= as
    // options that BullMQ's connections and the catalog store ignore: the board would show
    // another database than the queues use, or the queues alone would fail to authenticate
    const query =
      'REDIS_URL: takes no query string or fragment (a database number goes in the path: redis://host:6379/2; a password before the host: redis://:password@host:6379)';
    const path = 'REDIS_URL: its path is a database number (redis://host:6379/2) or nothing';
    for (const [value, problems] of [
      ['redis://cache:6379?db=11', [query]],
      ['redis://cache:6379/?password=s3cret', [query]],
      ['rediss://cache:6380?family=6', [query]],
      ['redis://cache:6379/2#x', [query]],
      ['redis://cache:6379/abc', [path]],
      ['redis://cache:6379/2/3', [path]],
      ['redis://?host=/run/redis', ['REDIS_URL: must name a host', query]],
    ] as const) {
      expect({ value, problems: problemsOf({ ...prod, REDIS_URL: value }) }).toEqual({
        value,
        problems,
      });
    }
    for (const value of [
      'redis://cache:6379',
      'redis://cache:6379/',
      'redis://cache:6379/15',
      'rediss://user:p%40ss@cache:6380/2',
      'redis://[fd00::5]:6379',
    ]) {
      expect(loadConfig({ ...prod, REDIS_URL: value }).redis.url).toBe(value);
    }
  });

  it('refuses a URL without a host (a template whose variable was unset): it would quietly reach this machine', () => {
    for (const [name, value] of [
      ['REDIS_URL', 'redis://'],
      ['SMTP_URL', 'smtp://'],
    ]) {
      const problems = problemsOf({ ...prod, [name]: value });
      expect({ name, problems }).toEqual({
        name,
        problems: [`${name}: must name a host`],
      });
    }
    expect(problemsOf({ ...prod, DATABASE_URL: 'postgres:///shop' })).toEqual([
      'DATABASE_URL: must name a host (for a Unix socket: ?host=/path/to/socket-directory; or set PGHOST)',
    ]);
    // a Unix socket is named by ?host=, or libpq's PGHOST names the host
    expect(
      loadConfig({ ...prod, DATABASE_URL: 'postgres:///shop?host=/var/run/postgresql' }).database
        .url,
    ).toBe('postgres:///shop?host=/var/run/postgresql');
    expect(
      loadConfig({ ...prod, DATABASE_URL: 'postgres:///shop', PGHOST: '/var/run/postgresql' })
        .database.url,
    ).toBe('postgres:///shop');
    expect(() => loadDatabaseConfig({ DATABASE_URL: 'postgres:///shop' })).toThrow(
      /DATABASE_URL: must name a host/,
    );
    expect(
      loadDatabaseConfig({
        DATABASE_URL: 'postgres:///shop',
        PGHOST: 'db.internal',
        PGSSLMODE: 'verify-full',
      }).url,
    ).toBe('postgres:///shop');
  });

  it('refuses PORT=0 (a random port, said nowhere) unless NODE_ENV is development or test', () => {
    for (const nodeEnv of ['production', 'staging', undefined]) {
      const env = nodeEnv ? { ...prod, NODE_ENV: nodeEnv } : { ...SECRETS };
      expect([nodeEnv, problemsOf({ ...env, PORT: '0' })]).toEqual([
        nodeEnv,
        [
          'PORT: 0 (a random port, said nowhere) only with NODE_ENV=development or test; give the port to listen on',
        ],
      ]);
      expect(loadConfig({ ...env, PORT: '1' }).http.port).toBe(1);
    }
    // the tests' and a development instance's own
    expect(loadConfig({ ...prod, NODE_ENV: 'test', PORT: '0' }).http.port).toBe(0);
    expect(loadConfig({ NODE_ENV: 'development', PORT: '0' }).http.port).toBe(0);
  });

  it("refuses storage credentials with spaces or line breaks (a secret file's trailing newline)", () => {
    expect(
      named(problemsOf({ ...prod, STORAGE_SECRET_ACCESS_KEY: `${'y'.repeat(40)}\n` })),
    ).toEqual(['STORAGE_SECRET_ACCESS_KEY']);
    expect(named(problemsOf({ ...prod, STORAGE_ACCESS_KEY_ID: 'shop writer' }))).toEqual([
      'STORAGE_ACCESS_KEY_ID',
    ]);
    expect(
      loadConfig({ ...prod, STORAGE_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' })
        .storage.secretAccessKey,
    ).toBe('wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY');
  });

  it('refuses METRICS_PORT equal to PORT (the API died on EADDRINUSE, naming no variable); 0 is none', () => {
    const refused = [
      'METRICS_PORT: must differ from PORT (or be 0: no metrics listener) when HOST and METRICS_HOST may be the same address',
    ];
    expect(problemsOf({ ...prod, PORT: '3000', METRICS_PORT: '3000' })).toEqual(refused); // HOST 0.0.0.0
    expect(problemsOf({ ...prod, PORT: '8080', METRICS_PORT: '8080', HOST: '127.0.0.1' })).toEqual(
      refused,
    );
    expect(
      problemsOf({ ...prod, PORT: '8080', METRICS_PORT: '8080', HOST: 'api.internal' }),
    ).toEqual(refused);
    expect(loadConfig({ ...prod, NODE_ENV: 'test', PORT: '0', METRICS_PORT: '0' }).http.port).toBe(
      0,
    );
    // two distinct addresses can share a port (a pod's IP for the API, loopback for metrics)
    expect(
      loadConfig({ ...prod, PORT: '8080', METRICS_PORT: '8080', HOST: '10.0.0.5' }).http.port,
    ).toBe(8080);
  });

  it('refuses a session idle limit or lifetime not a minute longer than an access token lives (every session over after one access token)', () => {
    const lifetimes = (access: string, idle: string, ttl = '2592000') =>
      named(
        problemsOf({
          ...prod,
          JWT_ACCESS_TTL_SECONDS: access,
          REFRESH_TOKEN_IDLE_SECONDS: idle,
          REFRESH_TOKEN_TTL_SECONDS: ttl,
        }),
      );
    expect(lifetimes('900', '600')).toEqual(['REFRESH_TOKEN_IDLE_SECONDS']);
    // equal: the refresh token's idle clock starts first, so it ends first
    expect(lifetimes('600', '600')).toEqual(['REFRESH_TOKEN_IDLE_SECONDS']);
    expect(lifetimes('86400', '90000', '3600')).toEqual(['REFRESH_TOKEN_TTL_SECONDS']);
    const boots = (access: string, idle: string) =>
      loadConfig({ ...prod, JWT_ACCESS_TTL_SECONDS: access, REFRESH_TOKEN_IDLE_SECONDS: idle }).jwt
        .refreshIdleSeconds;
    expect(boots('600', '660')).toBe(660);
    expect(boots('900', '604800')).toBe(604800); // the defaults
  });
});

describe("a value with whitespace around it (a quoted .env value, a secret file's last newline)", () => {
  const prod = { ...SECRETS, NODE_ENV: 'production', SERVICES_PRIVATE_NETWORK: 'db.internal' };
  /** A value each variable takes (SECRETS', else one of its own). */
  const SAMPLES: Record<string, string> = {
    ...prod,
    DATABASE_LOCK_URL: 'postgres://shop:lock-pw-0123@db.internal:5432/shop?sslmode=verify-full',
    JWT_VERIFY_ONLY_SECRET: 'Kq3vN8xT2mW9pL5rZ7yB4cF6hJ1dG0sAeUoQx2Lp',
    STORAGE_BASE_URL: 'https://cdn.shop.example.com',
    STRIPE_API_URL: 'https://api.stripe.com',
    HOST: '10.0.0.5',
    CORS_ORIGINS: 'https://shop.example.com',
    TRUST_PROXY: '10.0.0.0/8',
  };

  it('is refused for every variable but the PEM keys, naming it and never quoting the value — the checks and the clients read it apart', () => {
    const pem = ['JWT_PRIVATE_KEY', 'JWT_PUBLIC_KEY', 'JWT_VERIFY_ONLY_PUBLIC_KEY'];
    for (const name of CONFIG_VARIABLES.filter((n) => !pem.includes(n))) {
      const value = SAMPLES[name] ?? 'x1';
      for (const spaced of [` ${value}`, `${value}\n`, `\t${value} `]) {
        const problems = problemsOf({ ...prod, [name]: spaced });
        expect([
          name,
          problems.filter((p) => p.startsWith(`${name}: begins or ends with whitespace`)),
        ]).toEqual([name, [expect.stringMatching(/remove it$/)]]);
        // (the value is never quoted: a URL's password, a secret)
        if (value.length > 4)
          expect([name, problems.filter((p) => p.includes(value))]).toEqual([name, []]);
      }
    }
  });

  it('DATABASE_URL, DATABASE_LOCK_URL, REDIS_URL: refused, their passwords never said (node-postgres read ` postgres://…` as the host `base`, ioredis quoted the password)', () => {
    for (const [name, value] of [
      ['DATABASE_URL', 'postgres://shop:Db-Pw-0123@db.internal:5432/shop?sslmode=verify-full'],
      ['DATABASE_LOCK_URL', 'postgres://shop:Db-Pw-0123@db.internal:5432/shop?sslmode=verify-full'],
      ['REDIS_URL', 'rediss://:Redis-Pw-0123@cache.internal:6379'],
    ]) {
      const problems = problemsOf({ ...prod, [name]: ` ${value}` });
      expect(problems).toEqual([
        `${name}: begins or ends with whitespace (a space, a tab or a line break: a quoted .env value, a secret file's last newline); remove it`,
      ]);
    }
    // the migration CLI's configuration alike
    expect(() =>
      loadDatabaseConfig({ ...prod, DATABASE_LOCK_URL: ` ${SECRETS.DATABASE_URL}` }),
    ).toThrow(
      /^Invalid configuration:\n {2}- DATABASE_LOCK_URL: begins or ends with whitespace[^\n]*$/,
    );
    // a PEM key's last line break is its format's
    const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const { JWT_SECRET: _secret, ...noSecret } = prod;
    expect(
      loadConfig({
        ...noSecret,
        JWT_PRIVATE_KEY: `${k.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string}\n`,
        JWT_PUBLIC_KEY: k.publicKey.export({ type: 'spki', format: 'pem' }) as string,
      }).jwt.keyPair?.algorithm,
    ).toBe('ES256');
  });
});
