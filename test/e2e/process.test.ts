import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createTestDatabase, TestDatabase } from '../support/test-database';

const ROOT = join(__dirname, '..', '..');

function run(script: string, env: Record<string, string>) {
  const proc = spawn(process.execPath, ['-r', './scripts/ts-register.js', script], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, exited, output: () => output };
}

describe('process lifecycle (real node processes)', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('refuses to boot on bad configuration, naming the variable', async () => {
    const p = run('src/main.ts', { DATABASE_URL: db.url, PORT: 'not-a-port' });
    expect(await p.exited).toBe(1);
    expect(p.output()).toMatch(/PORT/);
    const prod = run('src/main.ts', { DATABASE_URL: db.url, NODE_ENV: 'production', JWT_SECRET: '' });
    expect(await prod.exited).toBe(1);
    expect(prod.output()).toMatch(/JWT_SECRET: required in production/);
  }, 60_000);

  it('serves, then exits 0 on SIGTERM with its pools closed', async () => {
    const port = 30000 + Math.floor(Math.random() * 20000);
    const p = run('src/main.ts', { DATABASE_URL: db.url, PORT: String(port), HOST: '127.0.0.1' });
    let ready = 0;
    for (let i = 0; i < 150 && ready !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      ready = await fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.status, () => 0);
    }
    expect(ready).toBe(200);
    // (That an in-flight request completes during shutdown is proven with a slow route in
    // foundation.test.ts, through the same app.close() path SIGTERM takes.)
    p.proc.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    await expect(fetch(`http://127.0.0.1:${port}/health/live`)).rejects.toThrow();
  }, 60_000);
});
