import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Redis from 'ioredis';
import type { DynamicModule } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { createApp } from '../../src/app.setup';
import { AppConfig, loadConfig } from '../../src/config/config';
import { MetricsService } from '../../src/metrics/metrics.service';
import { HttpClient } from './http';
import { TestDatabase, createTestDatabase } from './test-database';

export interface TestApp {
  app: NestFastifyApplication;
  config: AppConfig;
  db: TestDatabase;
  http: HttpClient;
  baseUrl: string;
  /** This app's Prometheus text, read in-process (tests run the listener only when they ask). */
  metrics(): Promise<string>;
  close(): Promise<void>;
}

export interface TestAppOptions {
  env?: Record<string, string>;
  /** Wrap or replace the root module (e.g. to add a test-only controller). */
  module?: (config: AppConfig) => DynamicModule;
  /** Reuse an existing database instead of creating one (e.g. a second instance). */
  db?: TestDatabase;
}

/** A unique Redis key prefix per test file keeps parallel jest workers apart. */
function testRedisPrefix(): string {
  return `t${process.env.JEST_WORKER_ID ?? '0'}${randomBytes(3).toString('hex')}`;
}

function testConfig(db: TestDatabase, env: Record<string, string> = {}): AppConfig {
  return loadConfig({
    ...process.env,
    DATABASE_URL: db.url,
    DATABASE_POOL_SIZE: '10',
    REDIS_KEY_PREFIX: testRedisPrefix(),
    // without SMTP_URL, emails are written as files: keep them out of the working tree
    MAIL_OUTBOX_DIR: join(tmpdir(), `shop-test-mail-${process.pid}`),
    // many apps and in-process workers run at once: no metrics listeners unless asked for
    METRICS_PORT: '0',
    WORKER_METRICS_PORT: '0',
    // a development instance behind a proxy has a signing key of its own (loadConfig refuses the
    // built-in one with TRUST_PROXY)
    ...(env.TRUST_PROXY ? { JWT_SECRET: TEST_PROXIED_JWT_SECRET } : {}),
    ...env,
  });
}

/** The signing key of a test app behind a proxy (TRUST_PROXY). */
const TEST_PROXIED_JWT_SECRET = 'test-app-behind-a-proxy-0123456789-abcdefgh';

/**
 * Boots the real application (same module, pipes, filters and hooks as production) on a
 * private database, listening on a random loopback port so tests talk real HTTP.
 */
export async function bootTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const db = options.db ?? (await createTestDatabase());
  let app: NestFastifyApplication;
  let config: AppConfig;
  try {
    config = testConfig(db, options.env);
    app = await createApp(config, options.module?.(config));
    await app.listen({ port: 0, host: '127.0.0.1' });
  } catch (err) {
    // refused configuration (or a failed boot): leave no database behind
    if (!options.db) await db.drop();
    throw err;
  }
  const address = app.getHttpServer().address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    app,
    config,
    db,
    http: new HttpClient(baseUrl),
    baseUrl,
    metrics: () => app.get(MetricsService).render(),
    close: async () => {
      await app.close();
      if (!options.db) await db.drop();
      // the file's keys (its own prefix): nothing of a passing run stays in the shared Redis
      if (!options.env?.REDIS_KEY_PREFIX)
        await deleteRedisKeys(config.redis.url, config.redis.keyPrefix);
    },
  };
}

/** Deletes every key under `prefix:` (best effort: a Redis that is away keeps them). */
async function deleteRedisKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 1_000,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== '0');
  } catch {
    // (a suite that stopped Redis on purpose, or a Redis gone: nothing to clean)
  } finally {
    redis.disconnect();
  }
}
