import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..', '..');

/**
 * Runs a TypeScript entry point (e.g. src/worker.ts) as a real node process, capturing its
 * output. It inherits the harness environment (NODE_ENV=development, no metrics listeners);
 * `env` overrides it, and an empty string unsets a variable (e.g. `NODE_ENV: ''`).
 */
export function runScript(script: string, env: Record<string, string>, logLevel = 'info') {
  const proc = spawn(process.execPath, ['-r', './scripts/ts-register.js', script], {
    cwd: ROOT,
    env: {
      ...process.env,
      METRICS_PORT: '0',
      WORKER_METRICS_PORT: '0',
      LOG_LEVEL: logLevel,
      REDIS_KEY_PREFIX: redisPrefixFor(env.DATABASE_URL ?? process.env.DATABASE_URL),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, exited, output: () => output };
}

/**
 * The Redis key prefix of a process on `databaseUrl`, unless a test gives one: one per database,
 * as a deployment must have (src/redis/key-prefix-claim.ts) — processes of different tests on
 * the default `shop` shared their queues and caches, and now one would refuse to boot.
 */
export function redisPrefixFor(databaseUrl: string | undefined): string {
  return `p${createHash('sha256')
    .update(databaseUrl ?? '')
    .digest('hex')
    .slice(0, 12)}`;
}
