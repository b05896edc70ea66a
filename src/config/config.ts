import { z } from 'zod';

/** Injection token for the parsed, immutable configuration. */
export const APP_CONFIG = Symbol('APP_CONFIG');

const DEV_JWT_SECRET = 'dev-only-insecure-jwt-secret-change-me';
const DEV_WEBHOOK_SECRET = 'whsec_dev_only_insecure_webhook_secret';

const bool = (def: boolean) =>
  z
    .enum(['true', 'false', '1', '0'])
    .default(def ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1');

const int = (def: number, min: number, max: number) =>
  z.coerce.number().int().min(min).max(max).default(def);

const url = (protocols: string[]) =>
  z
    .string()
    .url()
    .refine((v) => protocols.includes(new URL(v).protocol), {
      message: `must use ${protocols.join(' or ')}`,
    });

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  PORT: int(3000, 0, 65535),
  WORKER_METRICS_PORT: int(9464, 0, 65535),
  HOST: z.string().default('0.0.0.0'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATABASE_URL: url(['postgres:', 'postgresql:']).default('postgres://shop:shop@127.0.0.1:5432/shop'),
  DATABASE_POOL_SIZE: int(20, 1, 500),
  DB_BREAKER_FAILURES: int(5, 1, 1000),
  DB_BREAKER_HALF_OPEN_MS: int(5000, 100, 600_000),
  REDIS_URL: url(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
  REDIS_KEY_PREFIX: z.string().regex(/^[a-z0-9_-]{1,32}$/i).default('shop'),
  JWT_SECRET: z.string().min(32).optional(),
  JWT_ISSUER: z.string().default('shop-orders'),
  JWT_AUDIENCE: z.string().default('shop-orders-api'),
  JWT_ACCESS_TTL_SECONDS: int(900, 30, 86_400),
  REFRESH_TOKEN_TTL_SECONDS: int(30 * 86_400, 3600, 365 * 86_400),
  REFRESH_TOKEN_IDLE_SECONDS: int(7 * 86_400, 600, 365 * 86_400),
  STRIPE_SECRET_KEY: z.string().min(1).optional(),
  STRIPE_WEBHOOK_SECRET: z.string().startsWith('whsec_').optional(),
  STRIPE_API_URL: url(['http:', 'https:']).optional(),
  SMTP_URL: url(['smtp:', 'smtps:']).optional(),
  MAIL_FROM: z.string().default('Shop <orders@shop.example>'),
  MAIL_OUTBOX_DIR: z.string().default('var/mail'),
  RESERVATION_TTL_SECONDS: int(900, 10, 86_400),
  SHOP_CURRENCY: z.string().regex(/^[A-Z]{3}$/).default('INR'),
  RATE_LIMIT_ENABLED: bool(true),
  CATALOG_CACHE_ENABLED: bool(true),
  TRUST_PROXY: z.string().default('false'),
  SHUTDOWN_TIMEOUT_MS: int(10_000, 100, 120_000),
  STORAGE_BASE_URL: url(['http:', 'https:']).default('http://localhost:9000/shop-images'),
  STORAGE_SIGNING_SECRET: z.string().min(16).optional(),
});

export type Env = z.input<typeof envSchema>;

export interface AppConfig {
  env: 'development' | 'test' | 'production';
  isProduction: boolean;
  http: { port: number; host: string; trustProxy: boolean | string; shutdownTimeoutMs: number };
  /** The worker's own /metrics and /health/live listener (0 = none). */
  workerMetricsPort: number;
  logLevel: string;
  database: {
    url: string;
    poolSize: number;
    /** Circuit breaker: opens after `failures` consecutive connection failures, probes after `halfOpenAfterMs`. */
    breaker: { failures: number; halfOpenAfterMs: number };
  };
  redis: { url: string; keyPrefix: string };
  jwt: {
    secret: string;
    issuer: string;
    audience: string;
    accessTtlSeconds: number;
    refreshTtlSeconds: number;
    refreshIdleSeconds: number;
  };
  stripe: { secretKey?: string; webhookSecret: string; apiUrl?: string };
  mail: { smtpUrl?: string; from: string; outboxDir: string };
  reservationTtlSeconds: number;
  /** Object storage for product images: uploads go there directly with signed URLs. */
  storage: { baseUrl: string; signingSecret: string };
  /** The one ISO 4217 currency the shop sells in. */
  currency: string;
  rateLimitEnabled: boolean;
  catalogCacheEnabled: boolean;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

function parseTrustProxy(value: string): boolean | string {
  if (value === 'true') return true;
  if (value === 'false' || value === '') return false;
  return value; // comma-separated addresses / CIDRs, handed to Fastify
}

/** Parses and validates the environment once. Throws ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): AppConfig {
  const cleaned = Object.fromEntries(
    Object.entries(env).filter(([, v]) => v !== undefined && v !== ''),
  );
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
    );
  }
  const e = parsed.data;
  const isProduction = e.NODE_ENV === 'production';
  const problems: string[] = [];
  if (isProduction && !e.JWT_SECRET) problems.push('JWT_SECRET: required in production');
  if (isProduction && !e.STORAGE_SIGNING_SECRET) {
    problems.push('STORAGE_SIGNING_SECRET: required in production');
  }
  if (isProduction && !e.STRIPE_WEBHOOK_SECRET && e.STRIPE_SECRET_KEY) {
    problems.push('STRIPE_WEBHOOK_SECRET: required when STRIPE_SECRET_KEY is set in production');
  }
  if (problems.length) throw new ConfigError(problems);

  return Object.freeze({
    env: e.NODE_ENV,
    isProduction,
    http: {
      port: e.PORT,
      host: e.HOST,
      trustProxy: parseTrustProxy(e.TRUST_PROXY),
      shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    },
    workerMetricsPort: e.WORKER_METRICS_PORT,
    logLevel: e.LOG_LEVEL,
    database: {
      url: e.DATABASE_URL,
      poolSize: e.DATABASE_POOL_SIZE,
      breaker: { failures: e.DB_BREAKER_FAILURES, halfOpenAfterMs: e.DB_BREAKER_HALF_OPEN_MS },
    },
    redis: { url: e.REDIS_URL, keyPrefix: e.REDIS_KEY_PREFIX },
    jwt: {
      secret: e.JWT_SECRET ?? DEV_JWT_SECRET,
      issuer: e.JWT_ISSUER,
      audience: e.JWT_AUDIENCE,
      accessTtlSeconds: e.JWT_ACCESS_TTL_SECONDS,
      refreshTtlSeconds: e.REFRESH_TOKEN_TTL_SECONDS,
      refreshIdleSeconds: e.REFRESH_TOKEN_IDLE_SECONDS,
    },
    stripe: {
      secretKey: e.STRIPE_SECRET_KEY,
      webhookSecret: e.STRIPE_WEBHOOK_SECRET ?? DEV_WEBHOOK_SECRET,
      apiUrl: e.STRIPE_API_URL,
    },
    mail: { smtpUrl: e.SMTP_URL, from: e.MAIL_FROM, outboxDir: e.MAIL_OUTBOX_DIR },
    reservationTtlSeconds: e.RESERVATION_TTL_SECONDS,
    storage: {
      baseUrl: e.STORAGE_BASE_URL.replace(/\/$/, ''),
      signingSecret: e.STORAGE_SIGNING_SECRET ?? 'dev-only-storage-signing-secret',
    },
    currency: e.SHOP_CURRENCY,
    rateLimitEnabled: e.RATE_LIMIT_ENABLED,
    catalogCacheEnabled: e.CATALOG_CACHE_ENABLED,
  });
}
