import { EXIT_CONFIG } from '../../src/config/exit-codes';
import { BOOT_CONNECT_ATTEMPTS } from '../../src/database/connection-refusal';
import { runScript } from '../support/processes';
import { TestDatabase, createTestDatabase } from '../support/test-database';

/** The password of the URLs below: never in a line the processes write. */
const PASSWORD = 'rotated-away-7f3c';

/** `url` signing in as `role` with PASSWORD. */
function as(url: string, role: string): string {
  const signed = new URL(url);
  signed.username = role;
  signed.password = PASSWORD;
  return signed.toString();
}

/**
 * A database URL whose server refuses the sign-in — a password left stale by a rotation, a role or
 * database that does not exist (the local server trusts every role it has: a role it has not
 * stands in for a rotated password, SQLSTATE 28000 where a password check says 28P01). A stale
 * DATABASE_LOCK_URL was taken for a database that did not answer: the API and the worker booted,
 * readiness said 200, and every keyed payment, refund and email delivery failed for want of its
 * lock, with no cause in any log line (secret-rotation review).
 */
describe('a database URL whose server refuses the sign-in', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  /** The API and the worker run with `env`: their exit codes and output, each bounded. */
  async function boots(env: Record<string, string>) {
    const runs = [runScript('src/main.ts', env), runScript('src/worker.ts', env)];
    try {
      return await Promise.all(
        runs.map(async (p) => {
          const still = new Promise<string>((resolve) =>
            setTimeout(() => resolve('still running'), 45_000).unref(),
          );
          return { code: await Promise.race([p.exited, still]), output: p.output() };
        }),
      );
    } finally {
      for (const p of runs) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    }
  }

  it('DATABASE_LOCK_URL: the API and the worker refuse to boot (exit code EXIT_CONFIG), naming it, the SQLSTATE and the reason, not the password', async () => {
    const stale = as(db.url, 'stale_role');
    for (const { code, output } of await boots({
      DATABASE_URL: db.url,
      DATABASE_LOCK_URL: stale,
    })) {
      expect({ code, refusal: output.includes('"level":60') }).toEqual({
        code: EXIT_CONFIG,
        refusal: true,
      });
      expect(output).toContain(
        'DATABASE_LOCK_URL: the database refused the connection (SQLSTATE 28000: role \\"stale_role\\" does not exist)',
      );
      expect(output).not.toContain('did not answer');
      expect(output).not.toContain(PASSWORD);
    }
  }, 90_000);

  it('DATABASE_URL: refused the same way (exit code EXIT_CONFIG, not 1), after the pool’s attempts', async () => {
    const missing = new URL(db.url);
    missing.pathname = `/${db.name}_gone`;
    for (const url of [as(db.url, 'stale_role'), missing.toString()]) {
      for (const { code, output } of await boots({ DATABASE_URL: url })) {
        expect(code).toBe(EXIT_CONFIG);
        expect(output).toMatch(
          /DATABASE_URL: the database refused the connection \(SQLSTATE (28000: role \\"stale_role\\"|3D000: database \\"[^"\\]+_gone\\") does not exist\)/,
        );
        expect(output.match(/Unable to connect to the database\. Retrying/g)).toHaveLength(
          BOOT_CONNECT_ATTEMPTS,
        );
        expect(output).not.toContain(PASSWORD);
      }
    }
  }, 180_000);
});
