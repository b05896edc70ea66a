import { execFile, spawn } from 'node:child_process';
import {
  copyFileSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ConfigError, loadConfig } from '../../src/config/config';
import { loadEnvFile } from '../../src/config/env-file';
import { EXIT_CONFIG } from '../../src/config/exit-codes';
import { ROOT } from '../support/processes';
import { freePort } from '../support/ports';
import { waitFor } from '../support/wait-for';
import { createTestDatabase } from '../support/test-database';

const run = promisify(execFile);

/** What `node --env-file=<path>` (Node's own loader) puts in a child's otherwise empty environment. */
async function nodeEnvFile(path: string): Promise<Record<string, string>> {
  const { stdout } = await run(
    process.execPath,
    [`--env-file=${path}`, '-e', 'process.stdout.write(JSON.stringify(process.env))'],
    { env: {} },
  );
  return JSON.parse(stdout);
}

/** The .env entries the shell scripts export (scripts/dotenv.js), as a bash loop reads them. */
async function shellEnvFile(
  dir: string,
  env: Record<string, string> = {},
): Promise<Record<string, string>> {
  const script = `while IFS= read -r -d '' k && IFS= read -r -d '' v; do export "$k=$v"; done < <(node ${JSON.stringify(
    join(ROOT, 'scripts', 'dotenv.js'),
  )}); node -e 'process.stdout.write(JSON.stringify(process.env))'`;
  const { stdout } = await run('bash', ['-c', script], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', ...env },
  });
  return JSON.parse(stdout);
}

/**
 * The environment the entry points run with: this one without the harness's ENV_FILE= (.env read
 * as in production) nor the variables the tests' .env sets, and services that answer nothing
 * (should one boot, it reaches nothing shared).
 */
function entryPointEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  delete env.SHOP_CURRENCY;
  delete env.DATABASE_POOL_SIZE;
  delete env.ENV_FILE; // the harness switches .env off (test/support/env.ts): .env as in production
  return Object.assign(env, {
    PORT: '0',
    METRICS_PORT: '0',
    WORKER_METRICS_PORT: '0',
    LOG_LEVEL: 'silent',
    DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
    REDIS_URL: 'redis://127.0.0.1:1',
    REDIS_KEY_PREFIX: 'envfiletest',
  });
}

/**
 * Every entry point that reads .env — the API, the worker, the migration CLI, seed and
 * admin:create — run from sources in `cwd` with `env`, each to its exit (killed after 60 s: one
 * that boots is a failure either way).
 */
function runEntryPoints(
  cwd: string,
  env: Record<string, string>,
): Promise<{ name: string; code: number | null; output: string }[]> {
  const register = join(ROOT, 'scripts', 'ts-register.js');
  const entryPoints: Record<string, string[]> = {
    api: [join(ROOT, 'src', 'main.ts')],
    worker: [join(ROOT, 'src', 'worker.ts')],
    migrations: [
      join(ROOT, 'node_modules', 'typeorm', 'cli.js'),
      '-d',
      join(ROOT, 'ormconfig.ts'),
      'migration:show',
    ],
    seed: [join(ROOT, 'scripts', 'seed.ts')],
    'admin:create': [
      join(ROOT, 'scripts', 'admin-create.ts'),
      '--email',
      'a@shop.example',
      '--password',
      'long-enough-pw',
    ],
  };
  return Promise.all(
    Object.entries(entryPoints).map(
      ([name, args]) =>
        new Promise<{ name: string; code: number | null; output: string }>((resolve) => {
          const proc = spawn(process.execPath, ['-r', register, ...args], {
            cwd,
            env,
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let output = '';
          proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
          proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
          // a process that ignored .env would boot: stop it, it is a failure either way
          const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
          proc.on('exit', (code) => {
            clearTimeout(timer);
            resolve({ name, code, output });
          });
        }),
    ),
  );
}

describe('.env: read by a real parser, by every process, the real environment winning', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shop-env-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('.env.example copied as is parses exactly as node --env-file reads it, and loadConfig accepts it', async () => {
    const path = join(dir, '.env');
    copyFileSync(join(ROOT, '.env.example'), path);
    const env: Record<string, string | undefined> = {};
    const applied = loadEnvFile(path, env);
    expect(applied.length).toBeGreaterThan(30);
    // the placeholder sender is left commented out: a copy on a server names its own (and the
    // placeholder, given, is refused outside development)
    expect(env.MAIL_FROM).toBeUndefined();
    // a copied .env.example never switches development on by itself (public built-in secrets,
    // simulated payments, dev-only routes): without NODE_ENV the process refuses to boot
    expect(env.NODE_ENV).toBeUndefined();
    expect(() => loadConfig(env)).toThrow(/JWT_SECRET/);
    // nor does it name the local checkout's database and Redis for a deployment: outside
    // development they must be given, or the process refuses to boot
    expect([env.DATABASE_URL, env.REDIS_URL]).toEqual([undefined, undefined]);
    expect(() => loadConfig(env)).toThrow(/DATABASE_URL[\s\S]*REDIS_URL/);
    env.NODE_ENV = 'development'; // as npm start exports it
    expect(env.JWT_SECRET).toBe(''); // empty: unset for loadConfig

    const byNode = await nodeEnvFile(path);
    for (const name of applied) expect([name, byNode[name]]).toEqual([name, env[name]]);
    // the shell scripts see the same values (Node's parser, no `source`)
    const byShell = await shellEnvFile(dir);
    for (const name of applied) expect([name, byShell[name]]).toEqual([name, env[name]]);

    const config = loadConfig(env);
    expect(config.mail.from).toBe('Shop <orders@shop.example>');
    expect(config.isDevelopment).toBe(true);
    expect(config.http.port).toBe(3000);
    expect(config.corsOrigins).toBe('*');
    expect(config.database.url).toBe('postgres://shop:shop@127.0.0.1:5432/shop'); // the dev default
  });

  it('a value in .env reaches loadConfig; one in the real environment wins over it', async () => {
    const path = join(dir, '.env');
    writeFileSync(
      path,
      [
        '# a comment',
        'export PORT=4321',
        'MAIL_FROM="Dot Env <from@dotenv.example>" # quoted, then a comment',
        "SHOP_CURRENCY='EUR'",
        'RESERVATION_TTL_SECONDS=120',
        'EVIL=$(touch ' + join(dir, 'pwned') + ')',
      ].join('\n'),
    );
    const env: Record<string, string | undefined> = {
      NODE_ENV: 'development',
      RESERVATION_TTL_SECONDS: '60',
    };
    loadEnvFile(path, env);
    const config = loadConfig(env);
    expect(config.http.port).toBe(4321);
    expect(config.mail.from).toBe('Dot Env <from@dotenv.example>');
    expect(config.currency).toBe('EUR');
    expect(config.reservationTtlSeconds).toBe(60); // the real environment wins
    expect(env.EVIL).toBe(`$(touch ${join(dir, 'pwned')})`); // data, never executed

    const byShell = await shellEnvFile(dir, { RESERVATION_TTL_SECONDS: '60' });
    expect(byShell.MAIL_FROM).toBe('Dot Env <from@dotenv.example>');
    expect(byShell.RESERVATION_TTL_SECONDS).toBe('60');
    expect(byShell.EVIL).toBe(env.EVIL);
    expect(loadEnvFile(join(dir, 'pwned'), {})).toEqual([]); // (absent file: nothing to do)
  });

  it('a line that is neither NAME=value nor a comment, or a name set twice, refuses (both readers), never quoting a value (configuration review)', async () => {
    const path = join(dir, '.env');
    const secret = 'Zq8rT3vW9xK2mP5nLr7Ty1Ui5Op0As4D';
    // a note without its `#` made Node's parser read `…production\nDOCS_ENABLED` as one name:
    // the docs stayed on; the second JWT_SECRET silently won over the first
    writeFileSync(
      path,
      [
        'NODE_ENV=production',
        'Turn the API docs off in production',
        'DOCS_ENABLED=false',
        `JWT_SECRET=${secret}`,
        `JWT_SECRET=${secret}x`,
      ].join('\n'),
    );
    const problems = [
      `${path}: a line that is neither NAME=value nor a # comment before DOCS_ENABLED (read as part of its name: DOCS_ENABLED would be lost)`,
      `${path}: JWT_SECRET is set more than once (only the last would count)`,
    ];
    const env: Record<string, string | undefined> = {};
    let refused: unknown;
    try {
      loadEnvFile(path, env);
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as ConfigError).problems).toEqual(problems);
    expect(env).toEqual({}); // nothing applied
    const shell = await run(process.execPath, [join(ROOT, 'scripts', 'dotenv.js')], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '' },
    }).catch((err: { code: number; stderr: string; stdout: string }) => err);
    expect(shell).toMatchObject({ code: EXIT_CONFIG, stdout: '' });
    expect(shell.stderr.trim().split('\n')).toEqual(problems.map((p) => p.replace(path, '.env')));
    expect(shell.stderr).not.toContain(secret);

    // a line of only spaces or tabs (CRLF too) is read as part of the next name: refused, saying so
    writeFileSync(path, 'A=1\r\n \t\r\nHOST=127.0.0.1\r\n');
    expect(() => loadEnvFile(path, {})).toThrow(
      `${path}: a line of only spaces or tabs before HOST (read as part of its name: HOST would be lost)`,
    );
    // …while an indented comment holding a `=` (read as a name `# HOST`) and a byte-order mark
    // are harmless: neither refused nor applied (review)
    writeFileSync(path, '\uFEFFA=1\n  # HOST=0.0.0.0\nB=2\n');
    const applied: Record<string, string | undefined> = {};
    expect(loadEnvFile(path, applied)).toEqual(['A', 'B']);
    expect(applied).toEqual({ A: '1', B: '2' });
    const harmless = await shellEnvFile(dir);
    expect([harmless.A, harmless.B, harmless['# HOST']]).toEqual(['1', '2', undefined]);
    writeFileSync(path, 'A=1\n\t# HOST=0.0.0.0\nB=2\n'); // (indented with a tab: Node keeps it)
    expect(loadEnvFile(path, {})).toEqual(['A', 'B']);
    // …but one whose value opens a quote reads the lines after it as that value (second review)
    writeFileSync(
      path,
      'A=1\n  # OLD_SECRET="abc\nHOST=127.0.0.1\nDOCS_ENABLED=false\nMAIL_FROM="Shop <o@x.y>"\nB=2\n',
    );
    expect(() => loadEnvFile(path, {})).toThrow(
      `${path}: an indented # comment opens a quote its line does not close`,
    );
    // a carriage return alone is dropped by the parser and joins two lines: B was lost
    writeFileSync(path, 'A=1\rB=2\nC=3\n');
    expect(() => loadEnvFile(path, {})).toThrow(
      `${path}: a carriage return without a line feed (old Mac line endings?): the parser drops it`,
    );
    // (a CRLF file's doubled or last carriage return changes nothing: third review)
    writeFileSync(path, 'A=1\r\r\nB=2\r\nC=3\r');
    expect(loadEnvFile(path, {})).toEqual(['A', 'B', 'C']);
    // an indented comment without a `=` swallows the next line's name, said as such
    writeFileSync(path, 'A=1\n  # just a note\nB=2\n');
    expect(() => loadEnvFile(path, {})).toThrow(
      `${path}: an indented # comment without a = (only a # at the start of a line makes a comment) before B`,
    );
    // a name that is no name, on a line of its own, is said as such
    writeFileSync(path, 'MY-VAR=1\n');
    expect(() => loadEnvFile(path, {})).toThrow(
      `${path}: a line that is neither NAME=value nor a # comment`,
    );

    // …nor a second setting of a name set for real (third review: refused as HOST set twice)
    writeFileSync(path, 'NOTE="see\nHOST=x"\nHOST=127.0.0.1\n');
    expect(loadEnvFile(path, {})).toEqual(['HOST', 'NOTE']);
    // a quoted value over several lines (a PEM) whose lines look like assignments is no name
    writeFileSync(
      path,
      ['JWT_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----', 'MIGHAgEA', 'Zm9v==', '"', 'PORT=1'].join(
        '\n',
      ),
    );
    expect(loadEnvFile(path, {})).toEqual(['JWT_PRIVATE_KEY', 'PORT']);
    // and a directory where the file should be: a refusal naming it, not a crash
    expect(() => loadEnvFile(undefined, { ENV_FILE: dir })).toThrow(ConfigError);
    const byDir = await run(process.execPath, [join(ROOT, 'scripts', 'dotenv.js')], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', ENV_FILE: dir },
    }).catch((err: { code: number; stderr: string }) => err);
    expect(byDir).toMatchObject({ code: EXIT_CONFIG, stderr: `${dir}: not a file\n` });
  });

  it("the shell scripts' reader (scripts/dotenv.js) judges every file as the processes' (env-file.ts) does: the same refusals, the same variables", async () => {
    // (its rules are written twice — it runs before anything is installed — so held together here)
    const path = join(dir, '.env');
    const files = [
      'A=1\nB=2\n',
      '\uFEFFA=1\r\nB=2\r\n',
      'A=1\r\r\nB=2\r\nC=3\r',
      'A=1\n  # HOST=0.0.0.0\n\t# PORT=1\nB=2\n',
      'A=1\nTurn the docs off\nDOCS_ENABLED=false\n',
      'A=1\n \t\nHOST=127.0.0.1\n',
      'A=1\n  # just a note\nB=2\n',
      'A=1\n  # OLD="abc\nHOST=1\nB="x"\n',
      'A=1\rB=2\nC=3\n',
      'MY-VAR=1\n',
      'A=1\nA=2\n',
      'NOTE="see\nHOST=x"\nHOST=127.0.0.1\n',
      'KEY="-----BEGIN KEY-----\nMIGHAgEA\nZm9v==\n"\nPORT=1\n',
      'export A=1\nB="x#y" # note\n',
    ];
    for (const text of files) {
      writeFileSync(path, text);
      let processes: { applied: string[] } | { problems: string[] };
      try {
        processes = { applied: loadEnvFile(path, {}).sort() };
      } catch (err) {
        processes = { problems: (err as ConfigError).problems.map((p) => p.replace(path, '.env')) };
      }
      const shell = await run(process.execPath, [join(ROOT, 'scripts', 'dotenv.js')], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? '' },
      }).then(
        ({ stdout }) => ({
          applied: stdout
            .split('\0')
            .filter((_, i) => i % 2 === 0 && _ !== '')
            .sort(),
        }),
        (err: { code: number; stderr: string }) => {
          expect({ text, code: err.code }).toEqual({ text, code: EXIT_CONFIG });
          return { problems: err.stderr.trim().split('\n') };
        },
      );
      expect({ text, shell }).toEqual({ text, shell: processes });
    }
  });

  it('ENV_FILE names another file (which must exist); ENV_FILE= reads none', () => {
    const other = join(dir, 'shop.env');
    writeFileSync(other, 'SHOP_CURRENCY=GBP\n');
    writeFileSync(join(dir, '.env'), 'SHOP_CURRENCY=EUR\n');
    const chosen: Record<string, string | undefined> = { ENV_FILE: other };
    expect(loadEnvFile(undefined, chosen)).toEqual(['SHOP_CURRENCY']);
    expect(chosen.SHOP_CURRENCY).toBe('GBP');
    const none: Record<string, string | undefined> = { ENV_FILE: '' };
    expect(loadEnvFile(undefined, none)).toEqual([]);
    expect(none.SHOP_CURRENCY).toBeUndefined();
    expect(() => loadEnvFile(undefined, { ENV_FILE: join(dir, 'missing.env') })).toThrow(
      /ENV_FILE/,
    );
  });

  it('the API, the worker, the migration CLI, seed and admin:create all read .env from their working directory', async () => {
    // Values only .env sets, each invalid: a process that reads .env refuses to start naming them.
    writeFileSync(join(dir, '.env'), 'SHOP_CURRENCY=from-dotenv\nDATABASE_POOL_SIZE=from-dotenv\n');
    const results = await runEntryPoints(dir, entryPointEnv());
    for (const r of results) {
      // a refused configuration: EXIT_CONFIG, the migration CLI's too (ormconfig.ts ends it so)
      expect({ name: r.name, code: r.code }).toEqual({ name: r.name, code: EXIT_CONFIG });
      // the migration CLI needs only the database settings
      expect([r.name, r.output]).toEqual([r.name, expect.stringContaining('DATABASE_POOL_SIZE')]);
      if (r.name !== 'migrations')
        expect([r.name, r.output]).toEqual([r.name, expect.stringContaining('SHOP_CURRENCY')]);
    }
  }, 90_000);

  it('an ENV_FILE that names no file: every entry point and `npm start` refuse to start, exit 78, naming ENV_FILE', async () => {
    // `npm start` read scripts/dotenv.js through a process substitution, whose exit code `set -e`
    // never sees: it went on, in development (the default) setting up local services; the
    // migration CLI read the file outside its refusal's catch and exited 1 with a stack
    const env = { ...entryPointEnv(), ENV_FILE: join(dir, 'missing.env') };
    const results = await runEntryPoints(dir, env);
    // NODE_ENV=production: should the start go on, it sets up nothing here (its migrations refuse
    // the unreachable DATABASE_URL, exit 1)
    const start = await run('bash', [join(ROOT, 'scripts', 'start.sh')], {
      env: { ...env, NODE_ENV: 'production' },
    }).then(
      ({ stdout, stderr }) => ({ code: 0, output: stdout + stderr }),
      (err: { code: number; stdout: string; stderr: string }) => ({
        code: err.code,
        output: err.stdout + err.stderr,
      }),
    );
    for (const r of [...results, { name: 'npm start', ...start }]) {
      expect({ name: r.name, code: r.code }).toEqual({ name: r.name, code: EXIT_CONFIG });
      expect([r.name, r.output]).toEqual([
        r.name,
        expect.stringContaining('ENV_FILE: no such file'),
      ]);
    }
    // the start ended before any step: not even the line naming the services it would use
    expect(start.output).not.toContain('[start]');
  }, 90_000);

  it('the build has the first-admin script the Docker image runs (node dist/scripts/admin-create.js), and node dist/main.js and dist/worker.js start and stop cleanly', async () => {
    // The image's build: `nest build` compiles tsconfig.build.json with tsc; here into a private
    // directory under the repo (so node_modules resolves), leaving dist/ alone. Its type check is
    // the suite's typecheck (tsconfig.json, src/ with test/): here tsc only emits (--noCheck, the
    // same files; ~5 of its ~20 CPU-s), in a suite that keeps both cores busy.
    const out = join(ROOT, 'var', `build-${process.pid}-${Date.now()}`);
    const db = await createTestDatabase();
    try {
      await run(
        process.execPath,
        [
          join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
          '-p',
          join(ROOT, 'tsconfig.build.json'),
          '--outDir',
          out,
          '--noCheck',
        ],
        {
          cwd: ROOT,
        },
      );
      // as in the image: production, secrets from the environment, DATABASE_URL from .env
      writeFileSync(join(dir, '.env'), `DATABASE_URL=${db.url}\n`);
      const env = {
        PATH: process.env.PATH ?? '',
        NODE_ENV: 'production',
        JWT_SECRET: 'op4ZGx5VELLnv+BRBelm8Kic9YwiYM8BF4GKDEPwxD8=',
        STORAGE_ENDPOINT: 'https://storage.shop.example.test',
        STORAGE_ACCESS_KEY_ID: 'shop-images-writer',
        STORAGE_SECRET_ACCESS_KEY: 's'.repeat(40),
        STORAGE_WEBHOOK_TOKEN: 'Tn4Wq8Zr2Kv6Mx9Bp3Ls7Hd',
        STRIPE_SECRET_KEY: 'sk_test_dummy',
        STRIPE_TEST_MODE: 'true',
        STRIPE_WEBHOOK_SECRET: 'whsec_lbrXD26M65szgcuGVt1k7suCZh1LIev',
        SMTP_URL: 'smtp://127.0.0.1:9',
        MAIL_FROM: 'Shop <orders@cornershop-mail.in>',
        REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
        REDIS_KEY_PREFIX: `adm${process.pid}`,
        METRICS_PORT: '0',
        WORKER_METRICS_PORT: '0',
      };
      // the image's `npm run migration:revert` and `migration:run`: the
      // typeorm CLI on the compiled config (docker/Dockerfile), reading DATABASE_URL from .env
      const cli = join(ROOT, 'node_modules', 'typeorm', 'cli.js');
      const dataSource = join(out, 'ormconfig.js');
      // in production only the migration named by MIGRATION_REVERT, the newest applied: several
      // down()s drop tables that hold data (operator review)
      const [, stamp, title] = /^(\d+)-(\w+)\.ts$/.exec(
        readdirSync(join(ROOT, 'migrations'))
          .filter((f) => /^\d+-\w+\.ts$/.test(f))
          .sort()
          .at(-1)!,
      )!;
      const newest = `${title}${stamp}`;
      await expect(
        run(process.execPath, [cli, '-d', dataSource, 'migration:revert'], { cwd: dir, env }),
      ).rejects.toMatchObject({
        code: 2,
        stderr: `migration:revert would revert ${newest}, whose down() may drop columns or tables and the data in them. Going back to the previous build does not need it (README, Operations). To revert it all the same, run the command again with MIGRATION_REVERT=${newest}. Nothing was reverted.\n`,
      });
      const reverted = await run(process.execPath, [cli, '-d', dataSource, 'migration:revert'], {
        cwd: dir,
        env: { ...env, MIGRATION_REVERT: newest },
      });
      expect(reverted.stdout).toMatch(/reverted successfully/);
      const applied = await run(process.execPath, [cli, '-d', dataSource, 'migration:run'], {
        cwd: dir,
        env,
      });
      expect(applied.stdout).toMatch(/executed successfully/);
      // on a DATABASE_URL whose server refuses the sign-in (a role it does not have), the compiled
      // CLI stops as the sources' does (test/e2e/database-credentials-commands.test.ts): exit
      // code EXIT_CONFIG and one line, not the CLI's exit 1 with pg's error whole
      const stale = new URL(db.url);
      stale.username = 'shop_gone';
      await expect(
        run(process.execPath, [cli, '-d', dataSource, 'migration:run'], {
          cwd: dir,
          env: { ...env, DATABASE_URL: stale.toString() },
        }),
      ).rejects.toMatchObject({
        code: EXIT_CONFIG,
        stderr: expect.stringMatching(
          /^DATABASE_URL: the database refused the connection \(SQLSTATE 28000: role "shop_gone" does not exist\)\. [^\n]*\n$/,
        ),
      });
      const dockerfile = readFileSync(join(ROOT, 'docker', 'Dockerfile'), 'utf8');
      for (const command of ['migration:run', 'migration:revert'])
        expect(dockerfile).toContain(
          `"scripts.${command}=node node_modules/typeorm/cli.js -d dist/ormconfig.js ${command}"`,
        );
      const script = join(out, 'scripts', 'admin-create.js');
      const args = [
        script,
        '--email',
        'First.Admin@Shop.example',
        '--password',
        'a-long-first-password',
        '--name',
        'First',
      ];
      const first = await run(process.execPath, args, { cwd: dir, env });
      expect(first.stdout).toMatch(/admin ready: first\.admin@shop\.example/i);
      await run(process.execPath, args, { cwd: dir, env }); // idempotent
      const rows = await db.pool.query(
        `SELECT lower(email) AS email, role, name FROM users WHERE lower(email) = 'first.admin@shop.example'`,
      );
      expect(rows.rows).toEqual([
        { email: 'first.admin@shop.example', role: 'admin', name: 'First' },
      ]);
      // and refuses bad arguments with its usage line
      await expect(
        run(process.execPath, [script, '--email', 'nope'], { cwd: dir, env }),
      ).rejects.toMatchObject({
        code: 2,
        stderr: expect.stringContaining('usage:'),
      });

      // API.md's commands: after the build, `node dist/main.js` starts the API and `node
      // dist/worker.js` the worker (the shims `npm run build` writes); each serves, then stops
      // cleanly on SIGTERM
      await run(process.execPath, [join(ROOT, 'scripts', 'write-entrypoints.js'), out]);
      const [apiPort, workerPort] = [await freePort(), await freePort()];
      for (const [entry, url] of [
        ['main.js', `http://127.0.0.1:${apiPort}/health/ready`],
        ['worker.js', `http://127.0.0.1:${workerPort}/health/live`],
      ] as const) {
        const child = spawn(process.execPath, [join(out, entry)], {
          cwd: dir,
          env: {
            ...env,
            PORT: String(apiPort),
            HOST: '127.0.0.1',
            WORKER_METRICS_PORT: String(workerPort),
            SHUTDOWN_DELAY_MS: '0',
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let output = '';
        child.stdout.on('data', (d: Buffer) => (output += d.toString()));
        child.stderr.on('data', (d: Buffer) => (output += d.toString()));
        const exited = new Promise<number | null>((resolve) =>
          child.on('exit', (code) => resolve(code)),
        );
        try {
          const status = await waitFor(
            `${entry} to serve ${url}`,
            () =>
              fetch(url).then(
                (r) => r.status,
                () => 0,
              ),
            {
              until: (s) => s === 200,
              timeoutMs: 60_000,
              intervalMs: 200,
              context: () => output.slice(-2000),
            },
          );
          expect([entry, status]).toEqual([entry, 200]);
        } finally {
          child.kill('SIGTERM');
        }
        expect([entry, await exited]).toEqual([entry, 0]);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
      await db.drop();
    }
    // (~45 CPU-s: a build and eight processes; one of six files at once on two busy cores)
  }, 300_000);
});
