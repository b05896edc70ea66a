import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { PrivatePostgres } from '../support/private-postgres';

/** What scripts/ensure-services.sh did: its exit code and what it said. */
interface Run {
  code: number;
  out: string;
}

/**
 * scripts/ensure-services.sh against a PostgreSQL of its own whose roles sign in with passwords
 * (scram), as a shared server's do; only `postgres` over TCP is trusted (the script's superuser
 * path). It creates what DATABASE_URL names when it is missing, gives an existing role what the app
 * needs — and never replaces a role's password, nor changes a superuser, when the URL's password
 * is wrong (a typo would otherwise rewrite another service's password).
 */
describe('scripts/ensure-services.sh (PostgreSQL with password sign-in)', () => {
  let pg: PrivatePostgres;

  beforeAll(async () => {
    pg = await PrivatePostgres.start();
    // instead of initdb's "trust all": passwords for every role but postgres over TCP
    writeFileSync(
      join(pg.dataDir, 'pg_hba.conf'),
      [
        'local all all trust',
        'host all postgres 127.0.0.1/32 trust',
        'host all all 127.0.0.1/32 scram-sha-256',
        'host all all ::1/128 scram-sha-256',
        '',
      ].join('\n'),
    );
    await admin(`SELECT pg_reload_conf()`);
  }, 60_000);
  afterAll(async () => {
    await pg?.destroy();
  });

  async function admin(sql: string): Promise<Record<string, unknown>[]> {
    const c = new Client({ connectionString: pg.url() });
    await c.connect();
    try {
      return (await c.query(sql)).rows;
    } finally {
      await c.end();
    }
  }

  const url = (user: string, password: string, db: string) =>
    `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${pg.port}/${db}`;

  /** Whether `user` signs in with `password`. */
  async function signsIn(user: string, password: string): Promise<boolean> {
    const c = new Client({ connectionString: url(user, password, 'postgres') });
    try {
      await c.connect();
      return true;
    } catch {
      return false;
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  function ensure(databaseUrl: string, extra: Record<string, string> = {}): Promise<Run> {
    return new Promise((resolve) => {
      execFile(
        'bash',
        ['scripts/ensure-services.sh'],
        {
          cwd: join(__dirname, '..', '..'),
          // Redis: the one the tests use (answers, so nothing is started)
          env: {
            ...process.env,
            DATABASE_URL: databaseUrl,
            REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
            ...extra,
          },
          timeout: 60_000,
        },
        (err, stdout, stderr) =>
          resolve({
            code: err ? ((err as { code?: number }).code ?? 1) : 0,
            out: `${stdout}${stderr}`,
          }),
      );
    });
  }

  it('creates the role (with the URL password) and its database, then has nothing to do', async () => {
    const first = await ensure(url('shop_app', 'first secret', 'shop_app_db'));
    expect(first).toMatchObject({ code: 0 });
    expect(first.out).toContain("creating role 'shop_app'");
    expect(first.out).toContain("creating database 'shop_app_db' owned by 'shop_app'");
    expect(first.out).not.toContain('first secret');
    expect(await signsIn('shop_app', 'first secret')).toBe(true);
    expect(
      await admin(`SELECT rolcreatedb, rolsuper FROM pg_roles WHERE rolname = 'shop_app'`),
    ).toEqual([{ rolcreatedb: true, rolsuper: false }]);
    const again = await ensure(url('shop_app', 'first secret', 'shop_app_db'));
    expect(again).toEqual({ code: 0, out: '' });
  }, 60_000);

  it("takes the role and database libpq takes for a URL that names none (PGUSER, PGDATABASE), as the app's connection does", async () => {
    const run = await ensure('postgres:///', {
      PGHOST: '127.0.0.1',
      PGPORT: String(pg.port),
      PGUSER: 'env_role',
      PGPASSWORD: 'env secret',
      PGDATABASE: 'env_db',
    });
    expect(run).toMatchObject({ code: 0 });
    expect(run.out).toContain("creating database 'env_db' owned by 'env_role'");
    expect(await signsIn('env_role', 'env secret')).toBe(true);
  }, 60_000);

  it("refuses a wrong password for a role that has one, and leaves the role's password as it was", async () => {
    await admin(`CREATE ROLE other_service LOGIN PASSWORD 'theirs'`);
    const run = await ensure(url('other_service', 'a typo', 'other_db'));
    expect(run.code).toBe(1);
    expect(run.out).toContain(
      'the role has a password of its own, which this script does not replace',
    );
    expect(run.out).not.toContain('a typo');
    expect(await signsIn('other_service', 'theirs')).toBe(true);
    expect(await signsIn('other_service', 'a typo')).toBe(false);
    expect(await admin(`SELECT 1 FROM pg_database WHERE datname = 'other_db'`)).toEqual([]);
  }, 60_000);

  it('never changes a superuser, whatever the URL says', async () => {
    await admin(`CREATE ROLE boss SUPERUSER LOGIN PASSWORD 'boss secret'`);
    const run = await ensure(url('boss', 'guess', 'boss_db'));
    expect(run.code).toBe(1);
    expect(run.out).toContain('it is a superuser, which this script does not change');
    expect(await signsIn('boss', 'boss secret')).toBe(true);
    expect(await admin(`SELECT rolsuper FROM pg_roles WHERE rolname = 'boss'`)).toEqual([
      { rolsuper: true },
    ]);
  }, 60_000);

  it('gives an existing role without a password what the app needs, and the URL password as its first', async () => {
    await admin(`CREATE ROLE bare NOLOGIN`);
    const run = await ensure(url('bare', 'its first', 'bare_db'));
    expect(run).toMatchObject({ code: 0 });
    expect(run.out).toContain(
      "updating role 'bare' (LOGIN CREATEDB, its first password: the one in DATABASE_URL)",
    );
    expect(await signsIn('bare', 'its first')).toBe(true);
    expect(await admin(`SELECT rolcreatedb FROM pg_roles WHERE rolname = 'bare'`)).toEqual([
      { rolcreatedb: true },
    ]);
  }, 60_000);

  it('changes nothing on a server that is not on this machine (only checks it); CREATEDB is asked for the tests only', async () => {
    // this machine's own non-loopback address stands for "elsewhere", where a DBA's superuser
    // answers (trust here, ~/.pgpass there)
    const elsewhere = Object.values(networkInterfaces())
      .flat()
      .find((i) => i?.family === 'IPv4' && !i.internal)?.address;
    expect(elsewhere).toBeDefined();
    writeFileSync(
      join(pg.dataDir, 'pg_hba.conf'),
      [
        'local all all trust',
        'host all postgres 127.0.0.1/32 trust',
        `host all postgres ${elsewhere}/32 trust`,
        'host all all 127.0.0.1/32 scram-sha-256',
        `host all all ${elsewhere}/32 scram-sha-256`,
        '',
      ].join('\n'),
    );
    pg.listenAddresses = `127.0.0.1,${elsewhere}`;
    await pg.restart('fast');
    await admin(`CREATE ROLE least LOGIN PASSWORD 'least secret'`);
    await admin(`CREATE DATABASE least_db OWNER least`);
    const remote = (db: string) =>
      `postgres://least:${encodeURIComponent('least secret')}@${elsewhere}:${pg.port}/${db}`;
    const roleNow = () =>
      admin(`SELECT rolcreatedb, rolconfig FROM pg_roles WHERE rolname = 'least'`);

    // the app's least-privileged role: usable as it is (npm start), nothing changed
    const usable = await ensure(remote('least_db'));
    expect(usable.code).toBe(0);
    expect(usable.out).not.toMatch(/updating role|creating/);
    // a misspelt database: refused, never created there
    const typo = await ensure(remote('least_dbb'));
    expect(typo.code).toBe(1);
    expect(typo.out).toContain('is not on this machine: this script changes nothing there');
    expect(await admin(`SELECT 1 FROM pg_database WHERE datname = 'least_dbb'`)).toEqual([]);
    // a URL without a host reaches libpq's PGHOST (as the app's does): elsewhere too, not this
    // machine — it was taken for 127.0.0.1, and its superuser methods were sent to PGHOST
    const viaPgHost = await ensure('postgres:///least_dbc', {
      PGHOST: elsewhere!,
      PGUSER: 'least',
      PGPORT: String(pg.port),
      PGPASSWORD: 'least secret',
    });
    expect(viaPgHost.code).toBe(1);
    expect(viaPgHost.out).toContain(`PostgreSQL at ${elsewhere} is not on this machine`);
    expect(await admin(`SELECT 1 FROM pg_database WHERE datname = 'least_dbc'`)).toEqual([]);
    // the tests clone databases: there, a role without CREATEDB is refused — and not given it
    const forTests = await ensure(remote('least_db'), { SERVICES_FOR_TESTS: '1' });
    expect(forTests.code).toBe(1);
    expect(forTests.out).toContain('CREATEDB');
    expect(await roleNow()).toEqual([{ rolcreatedb: false, rolconfig: null }]);
  }, 60_000);
});

/**
 * `npm start` outside development sets nothing up: a deployment that forgot DATABASE_URL ran
 * ensure-services on the defaults first — as root on a fresh server, PostgreSQL installed, a role
 * `shop` with the password `shop`, a Redis without one — and refused only at its migrations.
 */
describe('scripts/start.sh outside development', () => {
  it('sets up no local service, and refuses at the migrations when DATABASE_URL is missing', async () => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !/^(DATABASE_URL|REDIS_URL|PG[A-Z]+)$/.test(k)) env[k] = v;
    // the checkout seen through links: node_modules a link (start.sh never installs through one,
    // so a stale lockfile cannot empty it under the running suite), and no .env (a developer's
    // DATABASE_URL there would be migrated); ENV_FILE= reads none either
    const root = join(__dirname, '..', '..');
    const checkout = mkdtempSync(join(tmpdir(), 'start-outside-development-'));
    for (const name of readdirSync(root))
      if (name !== '.env') symlinkSync(join(root, name), join(checkout, name));
    const run = await new Promise<Run>((resolve) =>
      execFile(
        'bash',
        ['scripts/start.sh'],
        {
          cwd: checkout,
          env: { ...env, NODE_ENV: 'production', ENV_FILE: '' },
          timeout: 60_000,
        },
        (err, stdout, stderr) =>
          resolve({
            code: err ? ((err as { code?: number }).code ?? 1) : 0,
            out: `${stdout}${stderr}`,
          }),
      ),
    );
    expect(run.code).not.toBe(0);
    expect(run.out).toContain('no local services set up');
    expect(run.out).not.toContain('[services]');
    expect(run.out).toMatch(/DATABASE_URL: required with NODE_ENV="production"/);
    expect(run.out).not.toContain('[start] seeding');
    expect(run.out).not.toContain('npm ci');
    rmSync(checkout, { recursive: true, force: true });
  }, 90_000);
});
