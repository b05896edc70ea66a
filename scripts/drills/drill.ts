/**
 * `npm run test:drills [-- --seed N]` — the project's own randomized failure drill.
 *
 * Starts a private PostgreSQL (initdb in a temp folder) and redis-server, the fake Stripe and a
 * capturing SMTP server in this process, two API and two worker processes (TypeScript entry
 * points, as `npm start` runs them); drives a seeded workload over HTTP while it kill -9s workers
 * and APIs, restarts Redis and `pg_ctl restart -m immediate`s PostgreSQL; waits for the system
 * to converge; then checks the invariants on the database, the provider and the mail server.
 * Ends with `N passed, M failed`; exit code 0 iff nothing failed. Logs are kept under
 * var/drills/seed-<seed>/; every process and temp folder is removed on exit (also on Ctrl-C).
 *
 * Environment: DRILL_SEED (or --seed), DRILL_DURATION_S (70), DRILL_FLOWS (170),
 * DRILL_CONVERGE_S (120). `--sabotage` checks the checker: after convergence it corrupts a
 * stock counter, leaves a key in progress, sets a settled refund back to pending and sends one
 * email again under a new Message-ID (and once more under its own, which is only reported as a
 * redelivery); the run must then report exactly those invariants as failed.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createTransport } from 'nodemailer';
import { Client } from 'pg';
import { startFakeStripe } from '../../test/support/fake-stripe';
import { MailSink, SinkMessage } from './mail-sink';
import { bullPrefix } from '../../src/queue/redis-connection';
import { Cluster } from './cluster';
import { Recorder } from './http';
import { Check, GRACE_MS, Inspector } from './invariants';
import { makePlan, planDigest } from './plan';
import { Workload } from './workload';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const secs = (ms: number) => (ms / 1000).toFixed(1);
const log = (msg: string) =>
  console.log(`[drill ${new Date().toISOString().slice(11, 19)}] ${msg}`);

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [
    line(headers),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.map(line),
  ].join('\n');
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { seed: { type: 'string' }, sabotage: { type: 'boolean' } },
    allowPositionals: true,
  });
  const seed = Number(
    values.seed ?? process.env.DRILL_SEED ?? Math.floor(Math.random() * 1_000_000),
  );
  if (!Number.isInteger(seed) || seed < 0) throw new Error('--seed must be a non-negative integer');
  const durationMs = Number(process.env.DRILL_DURATION_S ?? 70) * 1000;
  const flowCount = Number(process.env.DRILL_FLOWS ?? 170);
  const convergeMs = Number(process.env.DRILL_CONVERGE_S ?? 120) * 1000;
  const plan = makePlan(seed, durationMs, flowCount);
  log(
    `seed ${seed} (rerun: npm run test:drills -- --seed ${seed}); plan ${planDigest(plan)}: ` +
      `${plan.flows.length} flows, ${plan.adjustments.length} stock adjustments, ${plan.faults.length} faults, ${durationMs / 1000} s`,
  );

  const cluster = new Cluster();
  // kept installed (not once): Ctrl-C under npm arrives twice (the terminal's, then npm's), and
  // the second one, meeting no handler, killed the drill in the middle of its cleanup
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: cleaning up`);
    cluster.cleanup();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.once('exit', () => cluster.cleanup());
  // A process killed mid-conversation resets its sockets to our fake Stripe or mail server; a
  // reset the servers do not handle themselves must not end the drill.
  process.on('uncaughtException', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE')
      return log(`ignored socket ${err.code} from a killed peer`);
    console.error(err);
    cluster.cleanup();
    process.exit(1);
  });

  const fake = await startFakeStripe();
  const smtp = await MailSink.start();
  let inspector: Inspector | undefined;
  let db: Client | undefined;
  try {
    await Promise.all([cluster.startPostgres(), cluster.startRedis()]);
    log(`postgres on ${cluster.pgPort}, redis on ${cluster.redisPort} (${cluster.tmp})`);
    const keyPrefix = 'drill';
    const env = (): Record<string, string> => ({
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/root',
      // (a developer's .env must not reach the drill's processes: they read it from the repo root)
      ENV_FILE: '',
      NODE_ENV: 'development',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      DATABASE_URL: cluster.databaseUrl,
      DATABASE_POOL_SIZE: '10',
      REDIS_URL: cluster.redisUrl,
      REDIS_KEY_PREFIX: keyPrefix,
      JWT_SECRET: 'drill-only-jwt-secret-0123456789abcdef0123456789',
      JWT_PRIVATE_KEY: '',
      JWT_PUBLIC_KEY: '',
      STORAGE_ACCESS_KEY_ID: 'drill-access-key',
      STORAGE_SECRET_ACCESS_KEY: 'drill-only-storage-secret-0123456789',
      STORAGE_WEBHOOK_TOKEN: 'drill-only-storage-webhook-token-2026',
      STRIPE_SECRET_KEY: fake.secretKey,
      STRIPE_API_URL: fake.url,
      STRIPE_WEBHOOK_SECRET: fake.webhookSecret,
      SMTP_URL: smtp.url,
      MAIL_OUTBOX_DIR: join(cluster.tmp, 'mail'),
      RESERVATION_TTL_SECONDS: '20',
      RATE_LIMIT_ENABLED: 'false',
      PURCHASE_LIMIT_OPEN_ORDERS: '0',
      PURCHASE_LIMIT_UNITS_PER_PRODUCT: '0',
      PURCHASE_LIMIT_ABANDONED_PER_DAY: '0',
    });
    log('migrating');
    cluster.migrate(env());
    await cluster.addApps(env);
    for (const p of [...cluster.apis, ...cluster.workers]) p.start();
    await Promise.all([...cluster.apis, ...cluster.workers].map((p) => p.ready(180_000)));
    log(`up: ${[...cluster.apis, ...cluster.workers].map((p) => `${p.name}:${p.port}`).join(' ')}`);

    const rec = new Recorder(() => cluster.apis.map((a) => a.url));
    const work = new Workload(plan, cluster, rec, fake);
    await work.setup();
    log(
      `setup done: ${work.customers.length} customers, admin, ${work.products.length} products; workload starts`,
    );
    const workStart = rec.now();
    await work.run();
    const retried = await work.retryUnresolvedOrders();
    log(
      `workload done in ${secs(rec.now() - workStart)} s: ${rec.exchanges.length} requests; ${retried} unresolved order keys retried`,
    );

    db = new Client({ connectionString: cluster.databaseUrl });
    await db.connect();
    inspector = new Inspector(
      db,
      { host: '127.0.0.1', port: cluster.redisPort },
      bullPrefix(keyPrefix),
    );
    const convStart = Date.now();
    let left: string[] = [];
    let shown = '';
    // converged: two probes in a row, 2 s apart, find nothing left (one probe reads the database
    // and each queue one after another, not one snapshot: work can pass between them unseen)
    let clean = 0;
    for (;;) {
      left = await inspector.unsettled();
      clean = left.length === 0 ? clean + 1 : 0;
      if (clean >= 2 || Date.now() - convStart > convergeMs) break;
      // what it is still waiting for, whenever that changes (evidence for a slow convergence)
      if (left.join('; ') !== shown)
        log(`converging, ${secs(Date.now() - convStart)} s: ${(shown = left.join('; '))}`);
      await sleep(2000);
    }
    const convergence = { ok: left.length === 0, ms: Date.now() - convStart, left };
    log(
      convergence.ok
        ? `converged in ${secs(convergence.ms)} s`
        : `NOT converged after ${secs(convergence.ms)} s: ${left.join('; ')}`,
    );

    const sabotaged = values.sabotage
      ? await sabotage(db, work.products[0].id, smtp.url, smtp.messages[0])
      : [];
    const checks: Check[] = await inspector.checks(work, fake, smtp, convergence);

    // ---- report
    const counts = new Map<string, number>();
    for (const e of rec.exchanges) {
      const k = `${e.label} ${e.status || e.error}${e.code ? ` ${e.code}` : ''}`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    console.log('\nResponses (label, status, code → count):');
    console.log(
      table(
        ['response', 'count'],
        [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([k, c]) => [k, String(c)]),
      ),
    );
    console.log(
      `\nFaults (seconds since the drill's t0; API-affecting windows excuse errors ± ${GRACE_MS / 1000} s):`,
    );
    console.log(
      table(
        ['#', 'fault', 'start s', 'end s', 'took s', 'excuses API errors'],
        work.faults.map((f, i) => [
          String(i + 1),
          f.name,
          secs(f.start),
          secs(f.end),
          secs(f.end - f.start),
          f.affectsApi ? 'yes' : 'no',
        ]),
      ),
    );
    console.log('\nInvariants:');
    console.log(
      table(
        ['#', 'invariant', 'result', 'detail'],
        checks.map((c, i) => [
          String(i + 1),
          c.name,
          c.info ? 'INFO' : c.ok ? 'PASS' : 'FAIL',
          c.detail,
        ]),
      ),
    );
    if (work.notes.length) console.log(`\nNotes:\n- ${work.notes.join('\n- ')}`);
    const failed = checks.filter((c) => !c.ok).length;
    const passed = checks.filter((c) => c.ok && !c.info).length;
    const kept = cluster.keepLogs(`seed-${seed}`);
    writeFileSync(
      join(kept, 'report.json'),
      JSON.stringify(
        {
          seed,
          plan: planDigest(plan),
          faults: work.faults,
          checks,
          notes: work.notes,
          // every exchange; bodies only where they are evidence (errors and refusals)
          exchanges: rec.exchanges.map((e) =>
            e.status === 0 || e.status >= 400 ? e : { ...e, body: undefined },
          ),
        },
        null,
        1,
      ),
    );
    if (values.sabotage) {
      const missed = sabotaged.filter(
        (name) => !checks.some((c) => !c.ok && c.name.startsWith(name)),
      );
      console.log(
        `\nsabotage: ${sabotaged.length - missed.length}/${sabotaged.length} planted faults detected${missed.length ? `; MISSED: ${missed.join(', ')}` : ''}`,
      );
    }
    console.log(`\nseed ${seed}; logs and report: ${kept}`);
    console.log(`${passed} passed, ${failed} failed`);
    return failed === 0 ? 0 : 1;
  } finally {
    await inspector?.close();
    await db?.end().catch(() => undefined);
    await Promise.all([...cluster.apis, ...cluster.workers].map((p) => p.stop()));
    await fake.close().catch(() => undefined);
    await smtp.stop().catch(() => undefined);
    cluster.cleanup();
  }
}

/** Plants known violations; returns the (prefixes of the) invariants that must catch them. */
async function sabotage(
  db: Client,
  productId: string,
  smtpUrl: string,
  mail?: SinkMessage,
): Promise<string[]> {
  await db.query(`UPDATE inventory_items SET on_hand = on_hand + 1 WHERE product_id = $1`, [
    productId,
  ]);
  await db.query(
    `INSERT INTO idempotency_keys (principal, key, method, route, fingerprint, state, created_at, expires_at)
     VALUES ('user:sabotage', 'sabotage', 'POST', '/v1/orders/:id/payment', 'x', 'in_progress', now(), now() + interval '2 minutes')`,
  );
  const planted = ['stock HOT', 'stock counters agree', 'no idempotency key stuck'];
  const { rowCount } = await db.query(
    `UPDATE refunds SET status = 'pending' WHERE id = (SELECT id FROM refunds WHERE status = 'succeeded' LIMIT 1)`,
  );
  if (rowCount) planted.push('refunds ≤ captured', 'no refund left pending');
  if (mail) {
    // the same email again under its own Message-ID (a redelivery: informational, not a failure)
    // and under a new one (a second email: the failure)
    const t = createTransport(smtpUrl);
    const again = {
      from: 'x@drill.test',
      to: 'y@drill.test',
      subject: mail.subject,
      text: mail.text,
    };
    await t.sendMail({ ...again, messageId: mail.messageId });
    await t.sendMail({ ...again, messageId: mail.messageId.replace(/^</, '<sabotage.') });
    t.close();
    planted.push('at most one email');
  }
  return planted;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack : err);
    console.log('0 passed, 1 failed');
    process.exit(1);
  },
);
