import { execFile, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Pool } from 'pg';
import { serverUrl, templateDatabase } from './databases';
import type { TestDatabase } from './test-database';

const run = promisify(execFile);

/** initdb and postgres refuse to run as root: run them as the `postgres` account then. */
function asServerUser(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

async function exec(cmd: string, args: string[]): Promise<void> {
  const [c, a] = asServerUser(cmd, args);
  await run(c, a, { timeout: 60_000 });
}

/**
 * A throwaway PostgreSQL server of our own (initdb into a temp folder, a free port), holding a
 * copy of this run's migrated template database, so a test can stop, kill and restart "the
 * database" without touching the shared server.
 */
export class PrivatePgServer {
  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  static async start(): Promise<PrivatePgServer> {
    const dir = mkdtempSync(join(tmpdir(), 'shop-pg-'));
    if (process.getuid?.() === 0) {
      const { uid, gid } = await postgresIds();
      chownSync(dir, uid, gid);
    }
    const server = new PrivatePgServer(dir, await freePort());
    await exec('initdb', ['-D', join(dir, 'data'), '-A', 'trust', '-U', 'shop', '--no-sync', '-E', 'UTF8']);
    await server.up();
    await server.loadTemplate();
    return server;
  }

  get url(): string {
    return `postgres://shop@127.0.0.1:${this.port}/shop`;
  }

  /** Starts (or restarts after down()) the server and waits until it accepts connections. */
  async up(): Promise<void> {
    await exec('pg_ctl', [
      '-D',
      join(this.dir, 'data'),
      '-l',
      join(this.dir, 'log'),
      '-o',
      `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60`,
      '-w',
      'start',
    ]);
  }

  /** Stops the server at once, like a crash (`-m immediate`): every connection is cut. */
  async down(): Promise<void> {
    await exec('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
  }

  /** A TestDatabase view of the `shop` database on this server (for fixtures and checks). */
  database(): TestDatabase {
    const pool = new Pool({ connectionString: this.url, max: 4 });
    pool.on('error', () => undefined); // the test restarts the server under it
    return { name: 'shop', url: this.url, pool, drop: () => pool.end() };
  }

  async destroy(): Promise<void> {
    await this.down().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** CREATE DATABASE shop, then copy schema and rows of this run's migrated template into it. */
  private async loadTemplate(): Promise<void> {
    const admin = new Pool({ connectionString: `postgres://shop@127.0.0.1:${this.port}/postgres`, max: 1 });
    try {
      await admin.query('CREATE DATABASE shop');
    } finally {
      await admin.end();
    }
    await new Promise<void>((resolve, reject) => {
      const dump = spawn('pg_dump', ['--no-owner', '--no-acl', serverUrl(templateDatabase())], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const load = spawn('psql', ['-q', '-v', 'ON_ERROR_STOP=1', this.url], {
        stdio: ['pipe', 'ignore', 'inherit'],
      });
      dump.stdout.pipe(load.stdin);
      dump.on('error', reject);
      load.on('error', reject);
      load.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`psql exited with ${code}`))));
    });
  }
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
  const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
  return { uid, gid };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
