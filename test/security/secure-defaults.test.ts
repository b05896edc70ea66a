/**
 * Issue 10, findings 3 and 8: secure by default.
 *
 * 3 — development behaviour (built-in secrets, the simulated gateway, dev-only routes, /docs)
 *     only with NODE_ENV=development set explicitly; anything else, unset included, refuses to
 *     boot without its secrets.
 * 8 — operational endpoints are not public: /metrics only on METRICS_PORT, a readiness 503
 *     that names the failing dependency and nothing else, /docs switchable off.
 *
 * Each refusal test reports what an instance that booted anyway would have allowed, so on the
 * code before the fix it fails with the attack's outcome (e.g. "forged admin token → 200").
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { Logger } from '@nestjs/common';
import { AccountService } from '../../src/auth/account.service';
import { DEMO_ADMIN, DEMO_CUSTOMER } from '../../src/auth/demo-credentials';
import { EXIT_CONFIG } from '../../src/config/exit-codes';
import { MetricsListener } from '../../src/metrics/metrics-listener';
import { DemoSeeder } from '../../src/seed/demo.seeder';
import { createAdmin } from '../support/auth';
import { deploymentSecrets } from '../support/deployment-secrets';
import { forgeToken, forgedAdminClaims } from '../support/forged-tokens';
import { withAdminClient } from '../support/databases';
import { HttpResponse } from '../support/http';
import { runScript } from '../support/processes';
import { freePort } from '../support/ports';
import { TestApp, bootTestApp } from '../support/test-app';
import { createTestDatabase } from '../support/test-database';
import { waitFor } from '../support/wait-for';

/** The development secrets that were built into the source (public, hence never trusted). */
const BUILT_IN = {
  JWT_SECRET: 'dev-only-insecure-jwt-secret-change-me',
  STRIPE_WEBHOOK_SECRET: 'whsec_dev_only_insecure_webhook_secret',
  STORAGE_ACCESS_KEY_ID: 'minioadmin',
  STORAGE_SECRET_ACCESS_KEY: 'minioadmin',
  STORAGE_WEBHOOK_TOKEN: 'dev-only-storage-webhook-token',
};

/** Real secrets for a non-development instance. Stripe is a placeholder no test reaches. */
const SECRETS = { JWT_SECRET: randomBytes(32).toString('hex'), ...deploymentSecrets() };
const NO_SECRETS = {
  JWT_SECRET: '',
  STORAGE_ENDPOINT: '',
  STORAGE_ACCESS_KEY_ID: '',
  STORAGE_SECRET_ACCESS_KEY: '',
  STORAGE_WEBHOOK_TOKEN: '',
  STRIPE_SECRET_KEY: '',
  STRIPE_WEBHOOK_SECRET: '',
};
const SECRET_NAMES = Object.keys(NO_SECRETS);

/** NODE_ENV values that are not development: '' is unset (empty counts as unset). */
const NOT_DEVELOPMENT = ['', 'test', 'production'];

/** An HS256 access token claiming `role: admin`, signed with `secret`. */
function adminToken(t: TestApp, secret: string): string {
  return forgeToken('HS256', forgedAdminClaims(t.config), (body) =>
    createHmac('sha256', secret).update(body).digest(),
  );
}

const line = (what: string, res: HttpResponse) =>
  `${what} → ${res.status}${res.body?.code ? ` ${res.body.code}` : ''}`;

/** What an attacker gets from an instance that trusts the built-in secrets and dev routes. */
async function attacks(t: TestApp): Promise<string> {
  const forged = await t.http.get('/v1/admin/orders', {
    token: adminToken(t, BUILT_IN.JWT_SECRET),
  });
  const event = JSON.stringify({
    id: `evt_forged_${randomUUID()}`,
    object: 'event',
    type: 'payment_intent.succeeded',
    created: Math.floor(Date.now() / 1000),
    data: {
      object: { id: 'pi_forged', object: 'payment_intent', status: 'succeeded', metadata: {} },
    },
  });
  const ts = Math.floor(Date.now() / 1000);
  const v1 = createHmac('sha256', BUILT_IN.STRIPE_WEBHOOK_SECRET)
    .update(`${ts}.${event}`)
    .digest('hex');
  const stripe = await t.http.request('POST', '/v1/webhooks/stripe', undefined, {
    raw: event,
    headers: { 'stripe-signature': `t=${ts},v1=${v1}` },
  });
  const note = JSON.stringify({
    Records: [
      {
        eventName: 's3:ObjectCreated:Put',
        s3: {
          bucket: { name: t.config.storage.bucket },
          object: { key: `products/${randomUUID()}/${randomUUID()}` },
        },
      },
    ],
  });
  const storage = await t.http.request('POST', '/v1/webhooks/storage', undefined, {
    raw: note,
    headers: { authorization: `Bearer ${BUILT_IN.STORAGE_WEBHOOK_TOKEN}` },
  });
  const dev = await t.http.post(`/v1/dev/payment-intents/pi_sim_x/confirm`, {
    outcome: 'succeeded',
  });
  return [
    line('forged admin token', forged),
    line('Stripe event signed with the built-in secret', stripe),
    line('storage notification with the built-in token', storage),
    line('dev confirm route', dev),
  ].join('; ');
}

/** "refused: <message>" when the app does not boot, else "booted; <what the probe saw>". */
async function bootOutcome(env: Record<string, string>, probe = attacks): Promise<string> {
  let t: TestApp;
  try {
    t = await bootTestApp({ env });
  } catch (err) {
    return `refused: ${err instanceof Error ? err.message : String(err)}`;
  }
  try {
    return `booted; ${await probe(t)}`;
  } finally {
    await t.close();
  }
}

describe('security: secure defaults (issue 10 finding 3)', () => {
  it.each(NOT_DEVELOPMENT)(
    'NODE_ENV=%j without secrets refuses to boot, naming every missing secret (no built-in ones)',
    async (nodeEnv) => {
      const outcome = await bootOutcome({ NODE_ENV: nodeEnv, ...NO_SECRETS });
      expect(outcome).toMatch(/^refused: /);
      for (const name of SECRET_NAMES) expect(outcome).toContain(`${name}: required`);
    },
  );

  it('production without STRIPE_SECRET_KEY refuses to boot instead of simulating payments', async () => {
    const outcome = await bootOutcome({
      NODE_ENV: 'production',
      ...SECRETS,
      STRIPE_SECRET_KEY: '',
    });
    expect(outcome).toMatch(/^refused: [\s\S]*STRIPE_SECRET_KEY: required in production/);
  });

  it('refuses the built-in development secrets outside development even when set explicitly', async () => {
    const outcome = await bootOutcome({ NODE_ENV: 'production', ...SECRETS, ...BUILT_IN });
    expect(outcome).toMatch(/^refused: /);
    for (const name of Object.keys(BUILT_IN)) {
      expect(outcome).toContain(`${name}: the built-in development value is refused`);
    }
  });

  it('an instance with NODE_ENV unset and every secret given has no development surface', async () => {
    const t = await bootTestApp({ env: { NODE_ENV: '', ...SECRETS } });
    try {
      expect(await attacks(t)).toBe(
        [
          'forged admin token → 401 TOKEN_INVALID',
          'Stripe event signed with the built-in secret → 400 WEBHOOK_SIGNATURE_INVALID',
          'storage notification with the built-in token → 400 WEBHOOK_SIGNATURE_INVALID',
          'dev confirm route → 404 ROUTE_NOT_FOUND',
        ].join('; '),
      );
      // /docs and /docs-json are part of API.md's surface everywhere (clients generate from the
      // document, admins use Swagger UI); the document describes no development-only route
      expect((await t.http.get('/docs')).status).toBe(200);
      const doc = await t.http.get('/docs-json');
      expect(doc.status).toBe(200);
      expect(Object.keys(doc.body.paths as object).length).toBeGreaterThan(20);
      expect(Object.keys(doc.body.paths as object).filter((p) => p.includes('/dev/'))).toEqual([]);
      // built once, the same bytes every time; no YAML dump per request (not in API.md)
      expect((await t.http.get('/docs-json')).text).toBe(doc.text);
      expect((await t.http.get('/docs-yaml')).status).toBe(404);
      // Swagger UI keeps no pasted token across visits (a shared counter computer), and asks
      // validator.swagger.io for nothing
      const init = (await t.http.get('/docs/swagger-ui-init.js')).text;
      expect(init).toMatch(/"persistAuthorization": false/);
      expect(init).toMatch(/"validatorUrl": null/);
      // control: the configured secret works, so the 401 above is the signature, not the setup
      const admin = await createAdmin(t);
      expect((await t.http.get('/v1/admin/orders', { token: admin.accessToken })).status).toBe(200);
    } finally {
      await t.close();
    }
  });

  it('demo accounts seeded into a non-development database never sign in with their published passwords', async () => {
    // `npm start` (development) run once against the wrong DATABASE_URL seeds them there
    const dev = await bootTestApp();
    const prod = await bootTestApp({ db: dev.db, env: { NODE_ENV: 'production', ...SECRETS } });
    try {
      await dev.app.get(DemoSeeder).run();
      const basic = (email: string, password: string) => ({
        headers: {
          authorization: `Basic ${Buffer.from(`${email}:${password}`).toString('base64')}`,
        },
      });
      const outcomes: string[] = [];
      for (const demo of [DEMO_ADMIN, DEMO_CUSTOMER]) {
        outcomes.push(
          line(`production login ${demo.email}`, await prod.http.post('/v1/auth/login', demo)),
        );
      }
      outcomes.push(
        line(
          'production queue board',
          await prod.http.get('/admin/queues', basic(DEMO_ADMIN.email, DEMO_ADMIN.password)),
        ),
      );
      // the same password in full-width letters is the same password once normalized (NFKC):
      // it must not get past the demo check either
      const wide = [...DEMO_ADMIN.password]
        .map((c) => String.fromCodePoint(c.codePointAt(0)! + 0xfee0))
        .join('');
      expect(wide.normalize('NFKC')).toBe(DEMO_ADMIN.password);
      outcomes.push(
        line(
          'production login, full-width',
          await prod.http.post('/v1/auth/login', { email: DEMO_ADMIN.email, password: wide }),
        ),
      );
      expect(outcomes).toEqual([
        `production login ${DEMO_ADMIN.email} → 401 INVALID_CREDENTIALS`,
        `production login ${DEMO_CUSTOMER.email} → 401 INVALID_CREDENTIALS`,
        'production queue board → 401 INVALID_CREDENTIALS',
        'production login, full-width → 401 INVALID_CREDENTIALS',
      ]);
      // control: the same accounts sign in on the development instance, and in production once an
      // operator has given the account a password of its own
      expect((await dev.http.post('/v1/auth/login', DEMO_ADMIN)).status).toBe(200);
      await prod.app
        .get(AccountService)
        .ensureAccount(DEMO_ADMIN.email, 'an-operator-chosen-password', 'admin', 'Ops');
      expect(
        (
          await prod.http.post('/v1/auth/login', {
            email: DEMO_ADMIN.email,
            password: 'an-operator-chosen-password',
          })
        ).status,
      ).toBe(200);
    } finally {
      await prod.close();
      await dev.close();
    }
  });

  it('a spawned API or worker with no NODE_ENV and no secrets exits EXIT_CONFIG naming every missing variable', async () => {
    const db = await createTestDatabase();
    try {
      const run = async (script: string) => {
        const port = await freePort();
        const p = runScript(
          script,
          {
            NODE_ENV: '',
            ...NO_SECRETS,
            DATABASE_URL: db.url,
            HOST: '127.0.0.1',
            PORT: String(port),
            WORKER_METRICS_PORT: String(port),
          },
          'warn',
        );
        // Either it exits, or (the bug) it comes up and serves: never wait out a timer.
        const serving = waitFor(
          'the process to exit or to serve',
          async () => {
            if (p.proc.exitCode !== null) return 'exited';
            const ok = await fetch(`http://127.0.0.1:${port}/health/live`).then(
              (r) => r.ok,
              () => false,
            );
            return ok ? 'still serving' : undefined;
          },
          { timeoutMs: 110_000, intervalMs: 250 }, // the test's own limit is 120 s
        );
        const first = await Promise.race([p.exited.then((code) => `exit ${code}`), serving]);
        if (first === 'still serving') {
          p.proc.kill('SIGKILL');
          await p.exited;
        }
        return { first, output: p.output() };
      };
      const [api, worker] = await Promise.all([run('src/main.ts'), run('src/worker.ts')]);
      for (const r of [api, worker]) {
        // (78, as README promises: a supervisor tells a refused configuration from an outage)
        expect(r.first).toBe(`exit ${EXIT_CONFIG}`);
        for (const name of SECRET_NAMES) {
          expect(r.output).toContain(
            `${name}: required unless NODE_ENV=development (NODE_ENV is not set)`,
          );
        }
      }
    } finally {
      await db.drop();
    }
  }, 120_000);
});

describe('security: operational endpoints are not public (issue 10 finding 8)', () => {
  describe('/metrics', () => {
    let t: TestApp;
    let metricsPort: number;
    beforeAll(async () => {
      metricsPort = await freePort();
      t = await bootTestApp({ env: { METRICS_PORT: String(metricsPort) } });
    });
    afterAll(async () => {
      await t?.close();
    });

    it('is a 404 problem+json on the public port', async () => {
      const res = await t.http.get('/metrics');
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.body.code).toBe('ROUTE_NOT_FOUND');
    });

    it('is served on METRICS_PORT, which serves nothing of the API', async () => {
      await t.http.get('/health/live');
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(await res.text()).toMatch(
        /http_request_duration_seconds_bucket\{le="[^"]+",method="GET",route="\/health\/live",status="200"\}/,
      );
      expect((await fetch(`http://127.0.0.1:${metricsPort}/v1/categories`)).status).toBe(404);
    });
  });

  it('a busy METRICS_PORT does not stop the API', async () => {
    const blocker = createServer();
    const port = await new Promise<number>((resolve) =>
      blocker.listen(0, '0.0.0.0', () => resolve((blocker.address() as { port: number }).port)),
    );
    try {
      const t = await bootTestApp({ env: { METRICS_PORT: String(port) } });
      try {
        expect(t.app.get(MetricsListener).port).toBeUndefined();
        expect((await t.http.get('/health/live')).status).toBe(200);
      } finally {
        await t.close();
      }
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });

  it('/docs and /docs-json are 404 with DOCS_ENABLED=false, even in development', async () => {
    const t = await bootTestApp({ env: { DOCS_ENABLED: 'false' } });
    try {
      for (const path of ['/docs', '/docs-json']) {
        const res = await t.http.get(path);
        expect([path, res.status, res.body?.code]).toEqual([path, 404, 'ROUTE_NOT_FOUND']);
      }
    } finally {
      await t.close();
    }
  });

  /** Nothing but names, up/down and the breaker state: no driver messages, hosts, ports or database names. */
  const expectBareReadiness = (
    res: HttpResponse,
    details: Record<string, { status: string; breaker?: string }>,
    internals: string[],
  ) => {
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.body.details).toEqual(details);
    expect(Object.keys(res.body).sort()).toEqual(
      ['code', 'detail', 'details', 'requestId', 'status', 'title', 'type'].sort(),
    );
    const text = JSON.stringify({ ...res.body, requestId: undefined });
    for (const s of [
      '127.0.0.1',
      'localhost',
      'ECONNREFUSED',
      'timeout',
      'message',
      ...internals,
    ]) {
      expect(text).not.toContain(s);
    }
  };

  it('readiness with Redis down names redis as down and says nothing else', async () => {
    const redisPort = await freePort(); // nothing listens there: Redis is "down" for this app
    const t = await bootTestApp({ env: { REDIS_URL: `redis://127.0.0.1:${redisPort}` } });
    try {
      expectBareReadiness(
        await t.http.get('/health/ready'),
        { database: { status: 'up', breaker: 'closed' }, redis: { status: 'down' } },
        [String(redisPort)],
      );
    } finally {
      await t.close();
    }
  });

  it('readiness with PostgreSQL refusing connections names the database as down and says nothing else', async () => {
    const t = await bootTestApp();
    const name = t.db.name;
    try {
      await withAdminClient(async (c) => {
        await c.query(`ALTER DATABASE "${name}" WITH ALLOW_CONNECTIONS false`);
        await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, [
          name,
        ]);
      });
      expectBareReadiness(
        await t.http.get('/health/ready'),
        { database: { status: 'down', breaker: 'closed' }, redis: { status: 'up' } },
        [name, String(new URL(t.db.url).port || 5432)],
      );
    } finally {
      await withAdminClient((c) => c.query(`ALTER DATABASE "${name}" WITH ALLOW_CONNECTIONS true`));
      await t.close();
    }
  });
});

describe('an instance taking test payments outside development', () => {
  it('says so at warn at every boot (a staging .env copied to production booted silently); development and live keys do not', async () => {
    const warns = jest.spyOn(Logger.prototype, 'warn');
    const testMode = () =>
      warns.mock.calls.map(([m]) => String(m)).filter((m) => /Stripe is in test mode/.test(m));
    try {
      const staging = await bootTestApp({ env: { NODE_ENV: 'production', ...SECRETS } });
      await staging.close();
      expect(testMode()).toHaveLength(1);
      warns.mockClear();
      const dev = await bootTestApp();
      await dev.close();
      expect(testMode()).toEqual([]);
    } finally {
      warns.mockRestore();
    }
  });
});
