import { spawn } from 'node:child_process';
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
