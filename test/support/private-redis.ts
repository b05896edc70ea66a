import { ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { markRedis, unmarkRedis } from './leftover-servers';
import { restartablePort } from './ports';
import { waitFor } from './wait-for';

/** A throwaway redis-server of our own, so a test can stop and restart "Redis" safely. */
/**
 * `use` on one connection to the Redis at `url`, made once (no retries), then closed; undefined
 * when it cannot be made or `use` fails.
 */
export async function onOneConnection<T>(
  url: string,
  use: (c: Redis) => Promise<T>,
): Promise<T | undefined> {
  const c = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return await use(c);
  } catch {
    return undefined;
  } finally {
    c.disconnect();
  }
}

export class PrivateRedis {
  private proc?: ChildProcess;

  private constructor(readonly port: number) {}

  static async start(): Promise<PrivateRedis> {
    for (let attempt = 1; ; attempt++) {
      const r = new PrivateRedis(await restartablePort());
      try {
        await r.up();
        return r;
      } catch (err) {
        // the port was free when picked, and taken before the server bound it (a parallel
        // test's): another one, as no client knows this one yet; restarts keep theirs
        if (!(err instanceof ExitedEarly) || attempt === 3) throw err;
      }
    }
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
    const proc = this.proc;
    // until this server answers — not whichever answers on the port (another test's, had this
    // one failed to bind it): its process id, and never once it has exited
    await waitFor(
      `the private redis-server on port ${this.port} to answer`,
      async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) {
          throw new ExitedEarly(
            `redis-server on port ${this.port} exited before answering (the port taken?)`,
          );
        }
        // (undefined: not up yet)
        const info = await onOneConnection(this.url, (c) => c.info('server'));
        return (
          (info !== undefined && new RegExp(`^process_id:${proc.pid}\\r?$`, 'm').test(info)) ||
          undefined
        );
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    // a run that ends without down() leaves it to the next global setup or teardown — marked
    // once it is known to be this server on the port (a marker by port: one written before
    // would replace the marker of the server that held the port, had this one failed to bind)
    if (proc.pid) markRedis(this.port, proc.pid);
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
    if (!p || p.exitCode !== null || p.signalCode !== null) return; // (killed: exitCode stays null)
    await new Promise<void>((res) => {
      p.once('exit', () => res());
      p.kill('SIGKILL');
    });
    unmarkRedis(this.port);
    rmSync(join(tmpdir(), this.dumpFile), { force: true });
  }
}

/** The server's process ended before it answered: its port was taken, most likely. */
class ExitedEarly extends Error {}
