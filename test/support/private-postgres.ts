import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Pool } from 'pg';
import { migrate } from './databases';
import { markPostgres } from './leftover-servers';
import { restartablePort } from './ports';
import type { TestDatabase } from './test-database';

/**
 * A throwaway PostgreSQL server of our own (initdb into a temp folder, a free port), so a test
 * can stop, crash and restart "the database" without touching the shared server. Self-contained:
 * finds the server binaries under /usr/lib/postgresql/<version>/bin (or on PATH), and runs them
 * as the `postgres` user when the tests run as root (initdb refuses root).
 *
 *   const pg = await PrivatePostgres.start();
 *   const url = await pg.createDatabase('shop', { migrate: true });
 *   await pg.stop('immediate');  // like a crash: every connection dies, nothing is answered
 *   await pg.start();            // recovery, then accepting connections again
 *   await pg.destroy();
 *
 * `PrivatePostgres.start({ ssl: true })` serves TLS too (a self-signed certificate made with
 * openssl, so clients connect with `ssl: { rejectUnauthorized: false }`): managed PostgreSQL is
 * reached over TLS, where node-postgres reads through a TLS socket wrapped around the raw one.
 */
export class PrivatePostgres {
  private constructor(
    private _port: number,
    readonly dataDir: string,
    private readonly bin: string,
    private readonly ssl: boolean,
  ) {}

  static async start(opts: { ssl?: boolean } = {}): Promise<PrivatePostgres> {
    const bin = serverBinaries();
    const dataDir = mkdtempSync(join(tmpdir(), 'pg-'));
    if (runningAsRoot()) chownSync(dataDir, postgresUid(), postgresGid());
    const pg = new PrivatePostgres(await restartablePort(), dataDir, bin, opts.ssl === true);
    await pg.run('initdb', [
      '-D',
      dataDir,
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
      '--no-sync',
    ]);
    if (pg.ssl) pg.makeCertificate();
    // a run that ends without destroy() (Ctrl-C, a crash) leaves the server to the next global
    // setup or teardown (leftover-servers.ts)
    markPostgres(dataDir);
    // the port was free when picked, but a parallel test may have taken it during initdb: the
    // first start may take another one (no client knows the port yet); restarts keep theirs.
    // Only then: another failure (a start slower than pg_ctl's wait) is the error to see.
    await pg.start().catch(async (err: Error) => {
      if (!/could not bind/.test(err.message)) throw err;
      pg._port = await restartablePort();
      await pg.start();
    });
    return pg;
  }

  /** The port it listens on: the same across restarts, so clients reconnect to it. */
  get port(): number {
    return this._port;
  }

  /** A connection URL for `database` on this server. */
  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  /** Creates a database (optionally migrated with the project's migrations) and returns its URL. */
  async createDatabase(name: string, opts: { migrate?: boolean } = {}): Promise<string> {
    const c = new Client({ connectionString: this.url() });
    await c.connect();
    try {
      await c.query(`CREATE DATABASE "${name}"`);
    } finally {
      await c.end();
    }
    const url = this.url(name);
    if (opts.migrate) migrate(url);
    return url;
  }

  /**
   * A migrated database `name` on this server, as a TestDatabase (a small pool for fixtures and
   * checks, which outlives restarts: its idle connections just die with the server).
   */
  async migratedDatabase(name = 'shop'): Promise<TestDatabase> {
    const url = await this.createDatabase(name, { migrate: true });
    const pool = new Pool({ connectionString: url, max: 2 });
    pool.on('error', () => undefined);
    return { name, url, pool, drop: () => pool.end() };
  }

  /** Where it listens from its next start (a test of a server "not on this machine": another address). */
  listenAddresses = '127.0.0.1';

  /** Starts the server (after `stop`) and waits until it accepts connections. */
  async start(): Promise<void> {
    const options = [
      `-p ${this.port}`,
      `-k ${this.dataDir}`,
      `-c listen_addresses=${this.listenAddresses}`,
      // safe while only the server crashes, not the machine; synchronous_commit stays on, or an
      // immediate stop would lose the last commits (WAL still in shared memory)
      '-c fsync=off',
      '-c full_page_writes=off',
      '-c shared_buffers=16MB',
      '-c max_connections=100',
      // (its certificate and key are the data folder's server.crt and server.key: the defaults)
      ...(this.ssl ? ['-c ssl=on'] : []),
    ].join(' ');
    await this.run('pg_ctl', [
      '-D',
      this.dataDir,
      '-o',
      options,
      '-l',
      join(this.dataDir, 'server.log'),
      '-w',
      '-t',
      '60',
      'start',
    ]);
  }

  /**
   * Stops the server: `immediate` is a crash (connections cut, recovery at the next start),
   * `fast` a clean shutdown that still cuts every connection.
   */
  async stop(mode: 'immediate' | 'fast' = 'immediate'): Promise<void> {
    await this.run('pg_ctl', ['-D', this.dataDir, '-m', mode, '-w', '-t', '60', 'stop']);
  }

  /**
   * Freezes the server (SIGSTOP to the postmaster and every backend): connections stay open, the
   * kernel still acknowledges what is sent, and nothing is answered — a stalled disk or host.
   * `thaw()` lets it run on.
   */
  freeze(): void {
    this.signalAll('STOP');
  }

  thaw(): void {
    this.signalAll('CONT');
  }

  private signalAll(signal: 'STOP' | 'CONT'): void {
    const pid = readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0].trim();
    const children = execFileSync('pgrep', ['-P', pid], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
    // the postmaster first on the way down (it starts no new backend), last on the way up
    const order = signal === 'STOP' ? [pid, ...children] : [...children, pid];
    for (const p of order) process.kill(Number(p), `SIG${signal}`);
  }

  async restart(mode: 'immediate' | 'fast' = 'immediate'): Promise<void> {
    await this.stop(mode);
    await this.start();
  }

  /** Stops the server if it runs and removes its files. */
  async destroy(): Promise<void> {
    if (existsSync(join(this.dataDir, 'postmaster.pid')))
      await this.stop('immediate').catch(() => undefined);
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** A self-signed certificate for a day, where the server looks for one by default. */
  private makeCertificate(): void {
    const [crt, key] = ['server.crt', 'server.key'].map((f) => join(this.dataDir, f));
    const args = 'req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost'.split(' ');
    execFileSync('openssl', [...args, '-keyout', key, '-out', crt], { stdio: 'ignore' });
    // the server refuses a key others can read, or one not its user's (root's with 0640 aside)
    chmodSync(key, 0o600);
    if (runningAsRoot()) for (const f of [crt, key]) chownSync(f, postgresUid(), postgresGid());
  }

  private command(tool: string, args: string[]): [string, string[]] {
    const path = join(this.bin, tool);
    return runningAsRoot() ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args];
  }

  /** The end of the server's log, which says why a start failed (pg_ctl only says "examine it"). */
  private serverLogTail(): string {
    const log = join(this.dataDir, 'server.log');
    if (!existsSync(log)) return '';
    return `\nserver.log (end):\n${readFileSync(log, 'utf8').split('\n').slice(-15).join('\n')}`;
  }

  private run(tool: string, args: string[]): Promise<void> {
    const [cmd, argv] = this.command(tool, args);
    return new Promise((resolve, reject) => {
      execFile(cmd, argv, { cwd: this.dataDir }, (err, _stdout, stderr) =>
        err
          ? reject(new Error(`${tool} failed: ${err.message}\n${stderr}${this.serverLogTail()}`))
          : resolve(),
      );
    });
  }
}

function serverBinaries(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
        .sort((x, y) => Number(y) - Number(x))
    : [];
  if (versions[0]) return join(base, versions[0], 'bin');
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'initdb'))) return dir;
  }
  throw new Error('PostgreSQL server binaries (initdb, pg_ctl) not found');
}

const runningAsRoot = (): boolean => process.getuid?.() === 0;
const postgresUid = (): number => Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
const postgresGid = (): number => Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
