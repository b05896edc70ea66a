import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { restartablePort } from '../../test/support/ports';

const execFileAsync = promisify(execFile);

const ROOT = join(__dirname, '..', '..');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function postgresBin(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0]) return join(base, versions[0], 'bin');
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'initdb'))) return dir;
  }
  throw new Error(
    'no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or on PATH',
  );
}

/** initdb refuses root: as root the server runs as the `postgres` user; otherwise as this one. */
const runningAsRoot = (): boolean => process.getuid?.() === 0;

/** The command line that runs a PostgreSQL binary as its server's user. */
function asServerUser(binary: string, args: string[]): [string, string[]] {
  return runningAsRoot() ? ['runuser', ['-u', 'postgres', '--', binary, ...args]] : [binary, args];
}

function uidGid(user: string): { uid: number; gid: number } {
  const uid = Number(execFileSync('id', ['-u', user]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', user]).toString().trim());
  return { uid, gid };
}

export type Role = 'api' | 'worker';

/** One app process (API or worker) the drill can kill -9 and start again on the same ports. */
export class AppProcess {
  proc?: ChildProcess;
  starts = 0;

  constructor(
    readonly role: Role,
    readonly index: number,
    readonly port: number,
    readonly metricsPort: number,
    private readonly env: () => Record<string, string>,
    private readonly logDir: string,
  ) {}

  get name(): string {
    return `${this.role}-${this.index === 0 ? 'A' : 'B'}`;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  start(): void {
    this.starts += 1;
    const log = openSync(join(this.logDir, `${this.name}.log`), 'a');
    const entry = this.role === 'api' ? 'src/main.ts' : 'src/worker.ts';
    this.proc = spawn(process.execPath, ['-r', './scripts/ts-register.js', entry], {
      cwd: ROOT,
      env: {
        ...this.env(),
        PORT: String(this.port),
        WORKER_METRICS_PORT: String(this.metricsPort),
        METRICS_PORT: '0',
      },
      stdio: ['ignore', log, log],
    });
    closeSync(log);
  }

  /** Waits until the API answers /health/ready (or the worker /health/live) with 200. */
  async ready(timeoutMs = 90_000): Promise<void> {
    const url =
      this.role === 'api'
        ? `${this.url}/health/ready`
        : `http://127.0.0.1:${this.metricsPort}/health/live`;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.alive) throw new Error(`${this.name} exited during boot (see its log)`);
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        /* not up yet */
      }
      await sleep(150);
    }
    throw new Error(`${this.name} not ready after ${timeoutMs} ms`);
  }

  /** kill -9, and wait until the process is gone. */
  async kill9(): Promise<void> {
    const p = this.proc;
    if (!p || !this.alive) return;
    await new Promise<void>((res) => {
      p.once('exit', () => res());
      p.kill('SIGKILL');
    });
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || !this.alive) return;
    const exited = new Promise<void>((res) => p.once('exit', () => res()));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 8000);
    await exited;
    clearTimeout(t);
  }
}

/**
 * Everything the drill runs on: a private PostgreSQL cluster (initdb in a temp folder, as the
 * postgres user), a private redis-server (AOF on, fsync always: a restart is a restart, not a
 * flush), two API and two worker processes. `cleanup()` is synchronous so exit handlers can use it.
 */
export class Cluster {
  readonly tmp: string;
  readonly logDir: string;
  private readonly pgBin = postgresBin();
  private readonly pgData: string;
  private readonly pgSock: string;
  pgPort = 0;
  redisPort = 0;
  private redisProc?: ChildProcess;
  apis: AppProcess[] = [];
  workers: AppProcess[] = [];
  private cleaned = false;

  constructor() {
    this.tmp = mkdtempSync(join(tmpdir(), 'shop-drill-'));
    chmodSync(this.tmp, 0o755);
    this.logDir = join(this.tmp, 'logs');
    mkdirSync(this.logDir);
    const pgRoot = join(this.tmp, 'pg');
    mkdirSync(pgRoot);
    this.pgData = join(pgRoot, 'data');
    this.pgSock = join(pgRoot, 'sock');
    mkdirSync(this.pgSock);
    if (runningAsRoot()) {
      const { uid, gid } = uidGid('postgres');
      chownSync(pgRoot, uid, gid);
      chownSync(this.pgSock, uid, gid);
    }
    mkdirSync(join(this.tmp, 'redis'));
  }

  get databaseUrl(): string {
    return `postgres://postgres@127.0.0.1:${this.pgPort}/shop`;
  }

  get redisUrl(): string {
    return `redis://127.0.0.1:${this.redisPort}`;
  }

  private asPostgres(bin: string, args: string[]): void {
    const [command, argv] = asServerUser(join(this.pgBin, bin), args);
    execFileSync(command, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  async startPostgres(): Promise<void> {
    this.pgPort = await restartablePort('drill');
    this.asPostgres('initdb', [
      '-D',
      this.pgData,
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ]);
    const opts = [
      `-p ${this.pgPort}`,
      `-k ${this.pgSock}`,
      `-c listen_addresses=127.0.0.1`,
      `-c max_connections=200`,
      `-c fsync=off`,
      `-c full_page_writes=off`,
      `-c shared_buffers=64MB`,
    ].join(' ');
    this.asPostgres('pg_ctl', [
      '-D',
      this.pgData,
      '-l',
      join(this.pgData, '..', 'server.log'),
      '-o',
      opts,
      '-w',
      'start',
    ]);
    const c = new Client({
      connectionString: `postgres://postgres@127.0.0.1:${this.pgPort}/postgres`,
    });
    await c.connect();
    await c.query('CREATE DATABASE shop');
    await c.end();
  }

  /** `pg_ctl restart -m immediate`: every connection dies, the server runs crash recovery. */
  async restartPostgresImmediate(): Promise<void> {
    await execFileAsync(
      ...asServerUser(join(this.pgBin, 'pg_ctl'), [
        '-D',
        this.pgData,
        '-l',
        join(this.pgData, '..', 'server.log'),
        '-m',
        'immediate',
        '-w',
        'restart',
      ]),
    );
  }

  async startRedis(): Promise<void> {
    if (!this.redisPort) this.redisPort = await restartablePort('drill');
    const log = openSync(join(this.logDir, 'redis.log'), 'a');
    this.redisProc = spawn(
      'redis-server',
      [
        '--port',
        String(this.redisPort),
        '--bind',
        '127.0.0.1',
        '--dir',
        join(this.tmp, 'redis'),
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
      ],
      { stdio: ['ignore', log, log] },
    );
    closeSync(log);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      try {
        execFileSync('redis-cli', ['-p', String(this.redisPort), 'ping'], { stdio: 'pipe' });
        const loading = execFileSync('redis-cli', [
          '-p',
          String(this.redisPort),
          'info',
          'persistence',
        ]).toString();
        if (/loading:0/.test(loading)) return;
      } catch {
        /* not up yet */
      }
      await sleep(50);
    }
    throw new Error('redis-server did not start');
  }

  async killRedis(): Promise<void> {
    const p = this.redisProc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((res) => {
      p.once('exit', () => res());
      p.kill('SIGKILL');
    });
  }

  migrate(env: Record<string, string>): void {
    execFileSync(
      process.execPath,
      [
        '-r',
        './scripts/ts-register.js',
        'node_modules/typeorm/cli.js',
        'migration:run',
        '-d',
        'ormconfig.ts',
      ],
      {
        cwd: ROOT,
        env: { ...env, DATABASE_URL: this.databaseUrl },
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
  }

  async addApps(env: () => Record<string, string>): Promise<void> {
    for (const role of ['api', 'worker'] as const) {
      for (const index of [0, 1]) {
        const p = new AppProcess(
          role,
          index,
          await restartablePort('drill'),
          await restartablePort('drill'),
          env,
          this.logDir,
        );
        (role === 'api' ? this.apis : this.workers).push(p);
      }
    }
  }

  /** Keeps the logs (for evidence) under var/drills/<label>/ before the temp folder goes. */
  keepLogs(label: string): string {
    const dest = join(ROOT, 'var', 'drills', label);
    rmSync(dest, { recursive: true, force: true });
    mkdirSync(dest, { recursive: true });
    cpSync(this.logDir, dest, { recursive: true });
    const pgLog = join(this.pgData, '..', 'server.log');
    if (existsSync(pgLog)) cpSync(pgLog, join(dest, 'postgres.log'));
    return dest;
  }

  /** Kills every process we started and removes the temp folder. Synchronous, idempotent. */
  cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const p of [...this.apis, ...this.workers]) {
      if (p.alive) p.proc?.kill('SIGKILL');
    }
    if (this.redisProc && this.redisProc.exitCode === null) this.redisProc.kill('SIGKILL');
    if (existsSync(join(this.pgData, 'postmaster.pid'))) {
      try {
        this.asPostgres('pg_ctl', ['-D', this.pgData, '-m', 'immediate', '-w', 'stop']);
      } catch {
        /* already down */
      }
    }
    rmSync(this.tmp, { recursive: true, force: true });
  }
}
