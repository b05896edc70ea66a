import { Logger } from '@nestjs/common';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { EXIT_CONFIG } from '../../src/config/exit-codes';
import { BOOT_CONNECT_ATTEMPTS } from '../../src/database/connection-refusal';
import { insertProduct, newKey } from '../support/fixtures';
import { buyers, placeOrder } from '../support/orders';
import { PrivatePostgres } from '../support/private-postgres';
import { freePort } from '../support/ports';
import { runScript } from '../support/processes';
import { waitFor } from '../support/wait-for';
import { TestApp, bootTestApp } from '../support/test-app';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/** The password of the URLs below: never in a line the processes write. */
const PASSWORD = 'rotated-away-7f3c';

/** `url` signing in as `role` with PASSWORD. */
function as(url: string, role: string): string {
  const signed = new URL(url);
  signed.username = role;
  signed.password = PASSWORD;
  return signed.toString();
}

/**
 * A database URL whose server refuses the sign-in — a password left stale by a rotation, a role or
 * database that does not exist (the local server trusts every role it has: a role it has not
 * stands in for a rotated password, SQLSTATE 28000 where a password check says 28P01). A stale
 * DATABASE_LOCK_URL was taken for a database that did not answer: the API and the worker booted,
 * readiness said 200, and every keyed payment, refund and email delivery failed for want of its
 * lock, with no cause in any log line (secret-rotation review).
 */
describe('a database URL whose server refuses the sign-in', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  /** The API and the worker run with `env`: their exit codes and output, each bounded. */
  async function boots(env: Record<string, string>) {
    const runs = [runScript('src/main.ts', env), runScript('src/worker.ts', env)];
    try {
      return await Promise.all(
        runs.map(async (p) => {
          const still = new Promise<string>((resolve) =>
            setTimeout(() => resolve('still running'), 45_000).unref(),
          );
          return { code: await Promise.race([p.exited, still]), output: p.output() };
        }),
      );
    } finally {
      for (const p of runs) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    }
  }

  it('DATABASE_LOCK_URL: the API and the worker refuse to boot (exit code EXIT_CONFIG), naming it, the SQLSTATE and the reason, not the password', async () => {
    const stale = as(db.url, 'stale_role');
    for (const { code, output } of await boots({
      DATABASE_URL: db.url,
      DATABASE_LOCK_URL: stale,
    })) {
      expect({ code, refusal: output.includes('"level":60') }).toEqual({
        code: EXIT_CONFIG,
        refusal: true,
      });
      expect(output).toContain(
        'DATABASE_LOCK_URL: the database refused the connection (SQLSTATE 28000: role \\"stale_role\\" does not exist)',
      );
      expect(output).not.toContain('did not answer');
      expect(output).not.toContain(PASSWORD);
    }
  }, 90_000);

  it('DATABASE_URL: refused the same way (exit code EXIT_CONFIG, not 1), after the pool’s attempts', async () => {
    const missing = new URL(db.url);
    missing.pathname = `/${db.name}_gone`;
    for (const url of [as(db.url, 'stale_role'), missing.toString()]) {
      for (const { code, output } of await boots({ DATABASE_URL: url })) {
        expect(code).toBe(EXIT_CONFIG);
        expect(output).toMatch(
          /DATABASE_URL: the database refused the connection \(SQLSTATE (28000: role \\"stale_role\\"|3D000: database \\"[^"\\]+_gone\\") does not exist\)/,
        );
        expect(output.match(/Unable to connect to the database\. Retrying/g)).toHaveLength(
          BOOT_CONNECT_ATTEMPTS,
        );
        expect(output).not.toContain(PASSWORD);
      }
    }
  }, 180_000);
});

/**
 * The lock URL's password rotated while the process runs, the old one still in DATABASE_LOCK_URL:
 * each new lock session is refused (28P01). A keyed payment answers 503 as ever; the log now says
 * why, once per 10 s and not per request. On a private PostgreSQL, which checks this role's
 * password (scram-sha-256; trust for the rest).
 */
describe('a DATABASE_LOCK_URL whose password rotated after the boot', () => {
  const role = 'shop_locks';
  let pg: PrivatePostgres;
  let admin: Client;
  let t: TestApp;
  beforeAll(async () => {
    pg = await PrivatePostgres.start();
    const db = await pg.migratedDatabase();
    const hba = join(pg.dataDir, 'pg_hba.conf');
    writeFileSync(hba, `host all ${role} 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, 'utf8')}`);
    admin = new Client({ connectionString: pg.url() });
    await admin.connect();
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${PASSWORD}'`);
    await admin.query(`SELECT pg_reload_conf()`);
    t = await bootTestApp({ db, env: { DATABASE_LOCK_URL: as(db.url, role) } });
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await t?.db.drop();
    await admin?.end();
    await pg?.destroy();
  });
  afterEach(() => jest.restoreAllMocks());

  it("a keyed payment answers 503, and an error line names DATABASE_LOCK_URL, the SQLSTATE and the server's reason — once per window, not per request", async () => {
    const [alice] = await buyers(t.http, 1);
    const productId = await insertProduct(t.db.pool, { stock: 5 });
    const orders = [
      await placeOrder(t.http, alice, [{ productId, quantity: 1 }]),
      await placeOrder(t.http, alice, [{ productId, quantity: 1 }]),
    ];
    const errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    await admin.query(`ALTER ROLE ${role} PASSWORD 'the-new-one-after-rotation'`);
    for (const order of orders) {
      const pay = await t.http.post(
        `/v1/orders/${order.body.id}/payment`,
        {},
        { token: alice.token, idempotencyKey: newKey() },
      );
      expect([pay.status, pay.body.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
    }
    const lines = errors.mock.calls.map(([m]) => String(m));
    expect(lines).toEqual([
      `the shop-orders-key-locks lock session could not connect over DATABASE_LOCK_URL (refused: SQLSTATE 28P01: password authentication failed for user "${role}"); its locks are unavailable`,
    ]);
    expect(lines.join('\n')).not.toContain(PASSWORD);
  });

  it('a process booted with the old password now is refused (28P01), naming DATABASE_LOCK_URL', async () => {
    const booting = bootTestApp({ db: t.db, env: { DATABASE_LOCK_URL: as(t.db.url, role) } });
    await expect(booting).rejects.toMatchObject({
      exitCode: EXIT_CONFIG,
      message: expect.stringContaining(
        `DATABASE_LOCK_URL: the database refused the connection (SQLSTATE 28P01: password authentication failed for user "${role}")`,
      ),
    });
  });

  /**
   * Another role's password rotated on the server while an API cluster (API_PROCESSES=2) on it
   * serves, its URL not yet changed: the running processes keep their signed-in connections, and
   * a replacement of one that died is refused (exit code EXIT_CONFIG) — on which the primary
   * stopped the whole fleet, every request failing from then on (diff review). It now replaces the
   * refused one after its backoff while the other serves, and stops only when none does.
   */
  it('an API cluster keeps serving from the processes that run when the server refuses a replacement, and replaces it once the server takes it again', async () => {
    // NOLOGIN stands in for a password the server no longer takes (this role signs in by trust)
    const cluster = `${role}_cluster`;
    await admin.query(`CREATE ROLE ${cluster} LOGIN SUPERUSER`);
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const api = runScript(
      'src/main.ts',
      {
        DATABASE_URL: as(t.db.url, cluster),
        PORT: String(port),
        HOST: '127.0.0.1',
        API_PROCESSES: '2',
      },
      'info', // the primary's "API process serving" lines
    );
    // both listening, not only forked: a refusal with no sibling serving stops the cluster (a
    // slow machine answered ready from one process while the other still booted)
    const serving = () => api.output().split('"msg":"API process serving"').length - 1;
    try {
      const children = () =>
        readFileSync(`/proc/${api.proc.pid}/task/${api.proc.pid}/children`, 'utf8')
          .trim()
          .split(/\s+/)
          .filter(Boolean)
          .map(Number);
      await waitFor(
        'both API processes serving',
        async () =>
          (await fetch(`${base}/health/ready`)).status === 200 &&
          children().length === 2 &&
          serving() >= 2,
        { retryErrors: true, timeoutMs: 60_000, context: api.output },
      );
      await admin.query(`ALTER ROLE ${cluster} NOLOGIN`);
      process.kill(children()[0], 'SIGKILL');
      await waitFor('the replacement refused', async () => api.output(), {
        until: (out) => out.includes('while others serve; starting another'),
        timeoutMs: 60_000,
      });
      // the fleet still serves, on the survivor's open connections
      expect(api.proc.exitCode).toBeNull();
      expect((await fetch(`${base}/v1/categories`)).status).toBe(200);
      expect(api.output()).not.toContain('refused by its configuration; stopping');
      // the server takes the role again: a replacement boots, and the fleet is whole
      await admin.query(`ALTER ROLE ${cluster} LOGIN`);
      await waitFor(
        'two API processes again',
        async () => (await fetch(`${base}/health/ready`)).status === 200 && children().length === 2,
        { retryErrors: true, timeoutMs: 90_000, context: api.output },
      );
      expect(api.output()).not.toContain(PASSWORD);
    } finally {
      api.proc.kill('SIGTERM');
      await api.exited;
    }
  }, 180_000);
});
