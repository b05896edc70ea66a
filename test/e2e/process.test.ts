import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { EXIT_CONFIG, EXIT_NOT_SEEDED } from '../../src/config/exit-codes';
import { dataSourceOptions } from '../../src/database/data-source-options';
import { ROOT, redisPrefixFor, runScript as run } from '../support/processes';
import { freePort } from '../support/ports';
import { PrivateRedis } from '../support/private-redis';
import { deploymentSecrets } from '../support/deployment-secrets';
import { createTestDatabase, TestDatabase } from '../support/test-database';
import { waitFor } from '../support/wait-for';

describe('process lifecycle (real node processes)', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('refuses to boot in production without JWT_SECRET, naming the variable (exit code EXIT_CONFIG)', async () => {
    // (a bad variable in development, PORT, is a case of the next test: named at error or fatal)
    const prod = run('src/main.ts', {
      DATABASE_URL: db.url,
      NODE_ENV: 'production',
      JWT_SECRET: '',
    });
    expect(await prod.exited).toBe(EXIT_CONFIG);
    expect(prod.output()).toMatch(/JWT_SECRET: required in production/);
  }, 60_000);

  it('a boot that fails (the database down, a folder it cannot write, a bad variable) is logged as JSON lines, as every other line — one at error or fatal saying why — and exits 1, or EXIT_CONFIG when its configuration is refused', async () => {
    // nothing listens on port 1: the connection's retries fail, then the module's creation (1: an
    // outage, worth another try); and failures past it — a mail folder the worker cannot write
    // (found in its boot), a bad variable (the API's cluster primary's too) — the same, with
    // EXIT_CONFIG: the same configuration is refused again, however often it is restarted
    const cases: [string, Record<string, string>, number][] = [
      ['src/main.ts', { DATABASE_URL: db.url.replace(/:\d+\//, ':1/') }, 1],
      ['src/worker.ts', { DATABASE_URL: db.url.replace(/:\d+\//, ':1/') }, 1],
      [
        'src/worker.ts',
        { DATABASE_URL: db.url, MAIL_OUTBOX_DIR: '/proc/version/mail' },
        EXIT_CONFIG,
      ],
      ['src/main.ts', { DATABASE_URL: db.url, PORT: 'not-a-port' }, EXIT_CONFIG],
      [
        'src/main.ts',
        { DATABASE_URL: db.url, PORT: 'not-a-port', API_PROCESSES: '2' },
        EXIT_CONFIG,
      ],
    ];
    for (const [script, env, code] of cases) {
      const p = run(script, env);
      expect([script, env, await p.exited]).toEqual([script, env, code]);
      const lines = p
        .output()
        .split('\n')
        .filter((l) => l.trim() !== '');
      const notJson = lines.filter((l) => {
        try {
          return typeof JSON.parse(l) !== 'object';
        } catch {
          return true;
        }
      });
      expect([script, notJson]).toEqual([script, []]);
      // a line at error or fatal says why
      const why = env.PORT ? /PORT/ : env.MAIL_OUTBOX_DIR ? /MAIL_OUTBOX_DIR/ : /ECONNREFUSED/;
      const saying = lines.filter(
        (l) => (JSON.parse(l) as { level: number }).level >= 50 && why.test(l),
      );
      expect([script, saying.length > 0, lines.slice(-3)]).toEqual([script, true, lines.slice(-3)]);
    }
  }, 60_000);

  it('a URL with whitespace around it (DATABASE_URL, DATABASE_LOCK_URL, REDIS_URL) refuses the boot of the API and the worker (exit code EXIT_CONFIG), naming it, never its password', async () => {
    // the checks read ` postgres://…` as new URL() does (the space dropped), node-postgres as the
    // host `base`: a DATABASE_LOCK_URL booted, readiness 200, every payment 503; ioredis refused
    // ` redis://…` as an Invalid URL quoting the password twice and naming no variable
    const password = 'spaced-out-7f3c';
    const signed = (url: string) => {
      const u = new URL(url);
      u.password = password;
      return u.toString();
    };
    const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    const cases: [string, Record<string, string>][] = [
      ['DATABASE_URL', { DATABASE_URL: ` ${signed(db.url)}` }],
      ['DATABASE_LOCK_URL', { DATABASE_URL: db.url, DATABASE_LOCK_URL: ` ${signed(db.url)}` }],
      ['REDIS_URL', { DATABASE_URL: db.url, REDIS_URL: `${signed(redisUrl)}\n` }],
    ];
    const runs = cases.flatMap(([name, env]) =>
      ['src/main.ts', 'src/worker.ts'].map((script) => ({ name, script, p: run(script, env) })),
    );
    try {
      const outcomes = await Promise.all(
        runs.map(async ({ name, script, p }) => {
          // (one that boots is the bug: stopped below, never waited out)
          const still = new Promise<string>((resolve) =>
            setTimeout(() => resolve('still running'), 40_000).unref(),
          );
          const code = await Promise.race([p.exited, still]);
          return { name, script, code, output: p.output() };
        }),
      );
      for (const { name, script, code, output } of outcomes) {
        expect({ name, script, code }).toEqual({ name, script, code: EXIT_CONFIG });
        expect([name, script, output]).toEqual([
          name,
          script,
          expect.stringContaining(`${name}: begins or ends with whitespace`),
        ]);
        expect([name, script, output.includes(password)]).toEqual([name, script, false]);
      }
    } finally {
      for (const { p } of runs) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    }
  }, 90_000);

  it('serves, then on SIGTERM leaves the load balancer time to take it out (readiness 503 while it still serves), then exits 0 with its pools closed', async () => {
    const port = await freePort();
    const p = run('src/main.ts', {
      DATABASE_URL: db.url,
      PORT: String(port),
      HOST: '127.0.0.1',
      SHUTDOWN_DELAY_MS: '3000',
    });
    await waitFor(
      'the API to be ready',
      () =>
        fetch(`http://127.0.0.1:${port}/health/ready`).then(
          (r) => r.status,
          () => 0,
        ),
      {
        until: (status) => status === 200,
        timeoutMs: 30_000,
        context: () => p.output().slice(-3000),
      },
    );

    // Structured JSON logs carry the request id; credentials never reach them.
    const me = await fetch(`http://127.0.0.1:${port}/v1/me`, {
      headers: { 'x-request-id': 'log-check-0001', authorization: 'Bearer secret-token-xyz' },
    });
    expect(me.status).toBe(401);
    const lines = await waitFor(
      'the request log line',
      () =>
        p
          .output()
          .split('\n')
          .filter((l) => l.includes('log-check-0001')),
      {
        until: (found) => found.length > 0,
      },
    );
    for (const line of lines)
      expect(JSON.parse(line)).toMatchObject({ requestId: 'log-check-0001' });
    expect(p.output()).not.toContain('secret-token-xyz');
    // (That an in-flight request completes during shutdown is proven with a slow route in
    // foundation.test.ts, through the same app.close() path SIGTERM takes.)
    p.proc.kill('SIGTERM');
    // the delay: out of rotation, still serving — a request the balancer sends meanwhile is answered
    const ready = await waitFor(
      'readiness to answer 503 after SIGTERM',
      () => fetch(`http://127.0.0.1:${port}/health/ready`),
      {
        until: (r) => r.status === 503,
      },
    );
    expect(await ready.json()).toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
      details: { shutdown: { status: 'down' } },
    });
    expect((await fetch(`http://127.0.0.1:${port}/health/live`)).status).toBe(200);
    const served = await fetch(`http://127.0.0.1:${port}/v1/products?limit=1`);
    expect(served.status).toBe(200);
    // and its keep-alive clients are told to go elsewhere before the sockets close under them
    expect(served.headers.get('connection')).toBe('close');
    expect(await p.exited).toBe(0);
    await expect(fetch(`http://127.0.0.1:${port}/health/live`)).rejects.toThrow();
  }, 60_000);

  it('a worker whose Redis is down at boot still finishes booting (its logs out, its signals handled) and exits on SIGTERM', async () => {
    // nothing listens there: Redis is down for this worker
    const p = run('src/worker.ts', { DATABASE_URL: db.url, REDIS_URL: 'redis://127.0.0.1:6390' });
    await waitFor('the worker to have booted', () => p.output(), {
      until: (o) => o.includes('worker started'),
      timeoutMs: 30_000,
      context: () => p.output().slice(-3000),
    });
    p.proc.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  }, 60_000);
});

describe('shutdown signals', () => {
  it('a second SIGTERM (or a SIGINT) while draining is ignored: the drain finishes and the process exits 0', async () => {
    // both at once (each its own process)
    const drained = async (second: 'SIGTERM' | 'SIGINT') => {
      const p = run('test/support/slow-close.ts', {});
      await waitFor('the process to be up', () => p.output(), {
        until: (o) => o.includes('ready'),
        timeoutMs: 20_000,
      });
      p.proc.kill('SIGTERM');
      await waitFor('its drain to start', () => p.output(), {
        until: (o) => o.includes('closing'),
      });
      p.proc.kill(second); // a supervisor signalling the whole group, an impatient operator
      return { second, code: await p.exited, closed: p.output().includes('closed') };
    };
    expect(await Promise.all([drained('SIGTERM'), drained('SIGINT')])).toEqual([
      { second: 'SIGTERM', code: 0, closed: true },
      { second: 'SIGINT', code: 0, closed: true },
    ]);
  }, 60_000);
});

describe('API_PROCESSES: several API processes on one port (node:cluster)', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  const childrenOf = (pid: number): number[] =>
    readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);

  it('serves from every process, sums their metrics, replaces one that dies, and exits 0 on SIGTERM', async () => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const p = run('src/main.ts', {
      DATABASE_URL: db.url,
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      HOST: '127.0.0.1',
      API_PROCESSES: '2',
    });
    const base = `http://127.0.0.1:${port}`;
    const ready = async () => {
      for (let i = 0; i < 600; i++) {
        if (
          (await fetch(`${base}/health/ready`).then(
            (r) => r.status,
            () => 0,
          )) === 200 &&
          childrenOf(p.proc.pid!).length === 2
        )
          return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`not ready:\n${p.output()}`);
    };
    await ready();
    const workers = childrenOf(p.proc.pid!);
    expect(workers).toHaveLength(2);

    // the primary's /metrics is every process's, summed
    for (let i = 0; i < 10; i++) expect((await fetch(`${base}/v1/categories`)).status).toBe(200);
    const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text());
    const servedIn = (t: string) =>
      Number(
        /^http_request_duration_seconds_count\{method="GET",route="\/v1\/categories",status="200"\} (\d+)$/m.exec(
          t,
        )?.[1],
      );
    expect(servedIn(text)).toBe(10);
    expect(text).toMatch(/^cluster_metrics_missing_processes 0$/m);
    expect(text).toMatch(/^api_processes_configured 2$/m);
    expect(text).toMatch(/^api_process_deaths_total 0$/m);

    // a process that does not answer (frozen) is summed as it last answered (a counter that went
    // down would be taken for a reset); the scrape still answers
    await waitFor(
      'both processes in the scrape',
      () => fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text()),
      {
        until: (t) => /^cluster_metrics_processes 2$/m.test(t),
      },
    );
    process.kill(workers[1], 'SIGSTOP');
    try {
      const partial = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(partial.status).toBe(200);
      const partialText = await partial.text();
      expect(partialText).toMatch(/^cluster_metrics_missing_processes 1$/m);
      expect(partialText).toMatch(/^cluster_metrics_processes 1$/m);
      expect(servedIn(partialText)).toBe(10);
    } finally {
      process.kill(workers[1], 'SIGCONT');
    }

    // a process that dies is replaced; the other one serves meanwhile
    process.kill(workers[0], 'SIGKILL');
    for (
      let i = 0;
      i < 600 &&
      !(childrenOf(p.proc.pid!).length === 2 && !childrenOf(p.proc.pid!).includes(workers[0]));
      i++
    ) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(childrenOf(p.proc.pid!)).toHaveLength(2);
    expect(childrenOf(p.proc.pid!)).not.toContain(workers[0]);
    // the replacement answers the primary's scrape while it is still booting (else: 500 after 5 s)
    const afterDeath = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(afterDeath.status).toBe(200);
    // and the dead process's counters are still in the sums; the death is counted (a crash loop shows)
    const afterDeathText = await afterDeath.text();
    expect(servedIn(afterDeathText)).toBe(10);
    expect(afterDeathText).toMatch(/^api_process_deaths_total 1$/m);
    expect((await fetch(`${base}/v1/categories`)).status).toBe(200);
    expect(p.output()).toMatch(/API process died; starting another/);

    p.proc.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    await expect(fetch(`${base}/health/live`)).rejects.toThrow();
  }, 180_000);

  it('exits 1 when an API process that served does not stop cleanly during its SIGTERM (killed mid-drain)', async () => {
    const port = await freePort();
    const p = run('src/main.ts', {
      DATABASE_URL: db.url,
      PORT: String(port),
      HOST: '127.0.0.1',
      API_PROCESSES: '2',
    });
    // both serving (the primary logs each one's first listen): a process still booting has nothing to lose
    const serving = () =>
      childrenOf(p.proc.pid!).filter((pid) =>
        p.output().includes(`"workerPid":${pid},"msg":"API process serving"`),
      );
    for (let i = 0; i < 600 && serving().length < 2; i++)
      await new Promise((r) => setTimeout(r, 100));
    const [frozen, other] = serving();
    // frozen, it cannot drain: the primary's SIGTERM waits for it; it dies by SIGKILL once the
    // other one has drained and exited
    process.kill(frozen, 'SIGSTOP');
    p.proc.kill('SIGTERM');
    for (let i = 0; i < 600 && childrenOf(p.proc.pid!).includes(other); i++)
      await new Promise((r) => setTimeout(r, 50));
    process.kill(frozen, 'SIGKILL');
    expect(await p.exited).toBe(1);
    expect(p.output()).toMatch(/API processes did not stop cleanly/);
  }, 180_000);

  it('exits 1 when its processes die before serving (the port is taken)', async () => {
    const taken = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', () => resolve()));
    try {
      const p = run('src/main.ts', {
        DATABASE_URL: db.url,
        PORT: String(port),
        HOST: '127.0.0.1',
        API_PROCESSES: '2',
      });
      expect(await p.exited).toBe(1);
      expect(p.output()).toMatch(/API process died before serving; stopping/);
    } finally {
      taken.close();
    }
  }, 180_000);
});

describe('operational commands', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  const cli = (args: string[], opts: { env?: Record<string, string>; input?: string } = {}) => {
    const p = spawn(process.execPath, ['-r', './scripts/ts-register.js', ...args], {
      cwd: ROOT,
      env: {
        ...process.env,
        DATABASE_URL: db.url,
        REDIS_KEY_PREFIX: redisPrefixFor(db.url),
        LOG_LEVEL: 'error',
        ...opts.env,
      },
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (opts.input !== undefined) p.stdin!.end(opts.input);
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    return new Promise<{ code: number | null; out: string }>((resolve) =>
      p.on('exit', (code) => resolve({ code, out })),
    );
  };

  it('npm run seed loads demo data only with NODE_ENV=development: unset or production, it refuses and writes nothing', async () => {
    const count = async () =>
      (
        await db.pool.query(
          `SELECT (SELECT count(*) FROM users)::int + (SELECT count(*) FROM products)::int + (SELECT count(*) FROM categories)::int AS n`,
        )
      ).rows[0].n as number;
    const before = await count();
    for (const nodeEnv of ['', 'production']) {
      const r = await cli(['scripts/seed.ts'], { env: { NODE_ENV: nodeEnv } });
      expect({ nodeEnv, code: r.code }).toEqual({ nodeEnv, code: 1 });
      expect(r.out).toMatch(/runs only with NODE_ENV=development/);
    }
    expect(await count()).toBe(before);
  }, 60_000);

  it("npm run seed on a database holding data it did not create (a shop's admin) refuses in one line (exit 65: npm start goes on), writing nothing", async () => {
    // its own database: the admin:create cases below share `db`
    const shop = await createTestDatabase();
    try {
      await shop.pool.query(
        `INSERT INTO users (email, name, role, password_hash, password_epoch) VALUES ('owner@shop.test', 'Owner', 'admin', 'x', 'epoch-of-a-test-user-1')`,
      );
      const r = await cli(['scripts/seed.ts'], {
        env: {
          NODE_ENV: 'development',
          DATABASE_URL: shop.url,
          REDIS_KEY_PREFIX: redisPrefixFor(shop.url),
        },
      });
      expect(r.code).toBe(EXIT_NOT_SEEDED);
      // one line, its last (Node's own process warnings may come before it), no stack trace
      expect(r.out.trim().split('\n').at(-1)).toMatch(
        /^demo data not loaded: this database holds data the seed did not create \(1 account\);/,
      );
      expect(r.out).not.toMatch(/\n\s+at /);
      const rows = await shop.pool.query(
        `SELECT (SELECT count(*) FROM users)::int AS users, (SELECT count(*) FROM products)::int AS products, (SELECT count(*) FROM categories)::int AS categories`,
      );
      expect(rows.rows).toEqual([{ users: 1, products: 0, categories: 0 }]);
    } finally {
      await shop.drop();
    }
  }, 60_000);

  it('admin:create creates an admin or promotes a customer (idempotently), takes the password from ADMIN_PASSWORD or stdin (out of ps and npm logs), warns on --password, holds it to the API rules', async () => {
    const script = 'scripts/admin-create.ts';
    // a customer the --password start promotes (its address typed in another case); then the
    // same account and password from ADMIN_PASSWORD: already an admin with that password, it
    // changes nothing (a password it had not taken from there would be refused, or hashed anew)
    await db.pool.query(
      `INSERT INTO users (email, name, role, password_hash, password_epoch) VALUES ('boss@shop.test', 'Boss', 'customer', 'x', 'epoch-of-a-test-user-1')`,
    );
    const boss = async () =>
      (
        await db.pool.query(
          `SELECT role, password_hash, password_epoch FROM users WHERE email = 'boss@shop.test'`,
        )
      ).rows;
    // the starts side by side, each its own address (the three that create or promote an admin
    // load the application, ~2.5 s of CPU each, ADMIN_PASSWORD's after the promotion; a refusal
    // answers before loading it)
    const emoji = '\u{1F600}';
    const [[onArgv, promoted, fromEnv], fromStdin, both, ...refused] = await Promise.all([
      cli([script, '--email', 'Boss@Shop.test', '--password', 'boss-Kq7-password-Zt2']).then(
        async (first) =>
          [
            first,
            await boss(),
            await cli([script, '--email', 'Boss@Shop.test'], {
              env: { ADMIN_PASSWORD: 'boss-Kq7-password-Zt2' },
            }),
          ] as const,
      ),
      // 100 characters (200 UTF-16 units: more than the 128 allowed, were they counted), of 80
      // different emoji in no order (one repeated is a guessable password: refused)
      cli([script, '--email', 'stdin-admin@shop.test', '--password-stdin'], {
        input: `${Array.from({ length: 100 }, (_, i) => String.fromCodePoint(0x1f600 + ((i * 37) % 80))).join('')}\n`,
      }),
      cli([script, '--email', 'b@shop.test', '--password', 'x-password-12'], {
        env: { ADMIN_PASSWORD: 'y-password-12' },
      }),
      // no password at all
      cli([script, '--email', 'x@y.z']),
      // the API's rules: code points, not UTF-16 units; control characters refused; a name on one line
      cli([script, '--email', 'a@shop.test', '--password', emoji.repeat(4)]), // 8 units, 4 characters: too short
      cli([script, '--email', 'a@shop.test', '--password', 'e\u0301'.repeat(4)]), // 8 characters typed, `éééé` (4) as hashed
      cli([script, '--email', 'a@shop.test', '--password', 'ok-password-12\u0007']),
      cli([
        script,
        '--email',
        'a@shop.test',
        '--password',
        'ok-password-12',
        '--name',
        'Boss\nYour payment failed',
      ]),
      cli([script, '--email', 'weak@shop.test', '--password', 'password1234']),
      cli([script, '--email', 'Admin@shop.local', '--password', 'admin-demo-password']),
      cli([script, '--email', 'a@shop.test', '--password', 'ok-password-12', '--bogus']),
      cli([
        script,
        '--email',
        'wide@shop.test',
        '--password',
        '\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44\uff11\uff12\uff13\uff14\uff15',
      ]),
    ]);
    expect(onArgv.code).toBe(0);
    expect(onArgv.out).toMatch(/warning: a password given with --password is visible/);
    // the takeover of an existing account said, and warned of (review of the CLIs: a mistyped
    // email promoted a colleague's account with the same line as a new admin)
    expect(onArgv.out).toMatch(
      /admin ready: boss@shop.test \([0-9a-f-]+\): a customer account promoted to admin, its password set anew, its sessions ended/,
    );
    expect(onArgv.out).toMatch(
      /warning: boss@shop.test existed already: a customer account promoted/,
    );
    // promoted: the one account (its address as typed matched it), an admin, its password set
    expect(promoted).toHaveLength(1);
    expect(promoted[0].role).toBe('admin');
    expect(promoted[0].password_hash).toMatch(/^\$argon2id\$/);
    // run again: nothing changed (the hash, the sessions' epoch)
    expect(fromEnv).toMatchObject({ code: 0 });
    expect(fromEnv.out).toMatch(
      /admin ready: boss@shop.test \([0-9a-f-]+\): already an admin with this password, nothing changed/,
    );
    expect(fromEnv.out).not.toMatch(/warning: a password/);
    expect(await boss()).toEqual(promoted);
    expect(fromStdin).toMatchObject({ code: 0 });
    expect(fromStdin.out).toMatch(/admin ready: stdin-admin@shop.test \([0-9a-f-]+\): created/);
    expect(refused.map((r) => r.code)).toEqual([2, 2, 2, 2, 2, 2, 2, 2, 2]);
    // judged as it is hashed (NFKC): full-width `password12345` is `password12345` (second review)
    expect(refused[8].out).toMatch(/the password is too guessable for an admin/);
    // a guessable password, the demo one, an unknown option: usage errors, no stack trace
    expect(refused[5].out).toMatch(/the password is too guessable for an admin/);
    expect(refused[6].out).toMatch(/a published demo password/);
    expect(refused[7].out).toMatch(/Unknown option '--bogus'/);
    expect(refused.map((r) => r.out).join('')).not.toMatch(/\n\s+at /);
    expect(both.code).toBe(2);
    const { rows } = await db.pool.query(
      `SELECT email FROM users WHERE role = 'admin' AND email LIKE '%@shop.test' ORDER BY email`,
    );
    expect(rows.map((r) => r.email)).toEqual(['boss@shop.test', 'stdin-admin@shop.test']);
  }, 180_000); // nine starts of the command, three loading the application: over 90 s once in a loaded full run (one by one)

  const migrationCount = async () =>
    (
      await db.pool.query(
        `SELECT count(*)::int AS n, count(DISTINCT name)::int AS names FROM schema_migrations`,
      )
    ).rows[0] as { n: number; names: number };
  it('admin:create refused by the running system (a Redis that evicts keys) says why without a stack trace, with its exit code, and writes nothing', async () => {
    const redis = await PrivateRedis.start();
    try {
      const admin = new Redis(redis.url);
      await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
      admin.disconnect();
      const env = {
        ...deploymentSecrets(),
        NODE_ENV: 'production',
        JWT_SECRET: randomBytes(32).toString('hex'),
        REDIS_URL: redis.url,
        ADMIN_PASSWORD: 'evicted-admin-1',
      };
      const created = await cli(['scripts/admin-create.ts', '--email', 'evicted@shop.test'], {
        env,
      });
      expect(created.code).toBe(EXIT_CONFIG);
      expect(created.out).toContain("Redis's maxmemory-policy is allkeys-lru");
      expect(created.out).not.toMatch(/\n\s+at /); // no stack trace
      const users = await db.pool.query(`SELECT 1 FROM users WHERE email = 'evicted@shop.test'`);
      expect(users.rowCount).toBe(0);
    } finally {
      await redis.down();
    }
  });

  const migrationFiles = () =>
    readdirSync(join(ROOT, 'migrations')).filter((f) => f.endsWith('.ts')).length;
  const runMigrations = () =>
    cli(['node_modules/typeorm/cli.js', 'migration:run', '-d', 'ormconfig.ts']);

  it('every migration can be reverted, then re-applied by two runs at once that take turns: both succeed, each migration applied and recorded once', async () => {
    const typeorm = ['node_modules/typeorm/cli.js'];
    const count = async () =>
      (await db.pool.query(`SELECT count(*)::int AS n FROM schema_migrations`)).rows[0].n as number;
    const applied = await count();
    // the newest through the real CLI; the others in this process (one CLI start each cost ~2 s)
    expect((await cli([...typeorm, 'migration:revert', '-d', 'ormconfig.ts'])).code).toBe(0);
    expect(await count()).toBe(applied - 1);
    const source = new DataSource(
      dataSourceOptions(db.url, { withMigrations: true, rootDir: ROOT }),
    );
    await source.initialize();
    try {
      for (let i = 1; i < applied; i++) await source.undoLastMigration();
    } finally {
      await source.destroy();
    }
    expect(await count()).toBe(0);
    const tables = await db.pool.query(
      // TypeORM's own tables: its migrations table and typeorm_metadata, which its migration runner
      // creates (empty) whenever an entity has a generated column (migrations/1763800010000-…)
      `SELECT count(*)::int AS n FROM pg_tables
        WHERE schemaname = 'public' AND tablename NOT IN ('schema_migrations', 'typeorm_metadata')`,
    );
    expect(tables.rows[0].n).toBe(0);
    // nor functions (raise_insufficient_stock, place_order, reserve_stock, …; an extension's are its own)
    const functions = await db.pool.query(
      `SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')`,
    );
    expect(functions.rows).toEqual([]);
    // re-applied: two runs at once (two hosts' `npm start`)
    const [first, second] = await Promise.all([runMigrations(), runMigrations()]);
    expect([first.code, second.code]).toEqual([0, 0]);
    expect(await migrationCount()).toEqual({ n: migrationFiles(), names: migrationFiles() });
  }, 120_000);

  it('a migration that cannot have its table lock gives up after 5 s (no queue of requests behind it), and runs once the table is free', async () => {
    // back to before the index on email_deliveries (it takes a SHARE lock), with the migrations
    // after it: that one is the first to run again
    const indexMigration = 'EmailDeliveriesInboxSending1763800027000';
    const applied = async (name: string) =>
      (await db.pool.query(`SELECT 1 FROM schema_migrations WHERE name = $1`, [name])).rowCount ===
      1;
    const source = new DataSource(
      dataSourceOptions(db.url, { withMigrations: true, rootDir: ROOT }),
    );
    await source.initialize();
    try {
      while (await applied(indexMigration)) await source.undoLastMigration();
    } finally {
      await source.destroy();
    }
    const before = (await migrationCount()).n;
    const writer = await db.pool.connect(); // a transaction that wrote to the table, still open
    try {
      await writer.query('BEGIN');
      await writer.query('LOCK TABLE email_deliveries IN ROW EXCLUSIVE MODE');
      const started = Date.now();
      const blocked = await runMigrations();
      expect(blocked.code).not.toBe(0);
      expect(blocked.out).toMatch(/lock timeout/);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect((await migrationCount()).n).toBe(before);
    } finally {
      await writer.query('COMMIT');
      writer.release();
    }
    expect((await runMigrations()).code).toBe(0);
    expect((await migrationCount()).n).toBe(migrationFiles());
    expect(await applied(indexMigration)).toBe(true);
  }, 120_000);
});
