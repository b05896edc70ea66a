import { ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { markRedis, unmarkRedis } from './leftover-servers';
import { restartablePort } from './ports';
import { waitFor } from './wait-for';

/** A throwaway redis-server of our own, so a test can stop and restart "Redis" safely. */
export class PrivateRedis {
  private proc?: ChildProcess;

  private constructor(readonly port: number) {}

  static async start(): Promise<PrivateRedis> {
    const port = await restartablePort();
    const r = new PrivateRedis(port);
    await r.up();
    return r;
  }

  private get dumpFile(): string {
    return `shop-test-redis-${this.port}.rdb`;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    this.proc = spawn(
      'redis-server',
      // (a replica's full sync writes its copy to disk however `save` is set: not into the project)
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        tmpdir(),
        '--dbfilename',
        this.dumpFile,
      ],
      { stdio: 'ignore' },
    );
    // a run that ends without down() leaves it to the next global setup or teardown
    if (this.proc.pid) markRedis(this.port, this.proc.pid);
    await waitFor(
      `the private redis-server on port ${this.port} to answer`,
      async () => {
        const c = new Redis(this.url, {
          lazyConnect: true,
          maxRetriesPerRequest: 0,
          retryStrategy: () => null,
        });
        try {
          await c.connect();
          return (await c.ping()) === 'PONG';
        } finally {
          c.disconnect();
        }
      },
      { timeoutMs: 10_000, intervalMs: 50, retryErrors: true },
    );
  }

  /**
   * Stops the server without closing anything (SIGSTOP): a Redis that is slow, not down —
   * commands are taken by the kernel and run, in order, once `thaw()` lets it go on.
   */
  freeze(): void {
    this.proc?.kill('SIGSTOP');
  }

  thaw(): void {
    this.proc?.kill('SIGCONT');
  }

  async down(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((res) => {
      p.once('exit', () => res());
      p.kill('SIGKILL');
    });
    unmarkRedis(this.port);
    rmSync(join(tmpdir(), this.dumpFile), { force: true });
  }
}
