import { Logger } from '@nestjs/common';
import Redis from 'ioredis';
import { EXIT_CONFIG } from '../../src/config/exit-codes';
import { PrivateRedis } from '../support/private-redis';
import { runScript } from '../support/processes';
import { TestApp, bootTestApp } from '../support/test-app';
import { TestDatabase, createTestDatabase } from '../support/test-database';
import { waitFor } from '../support/wait-for';

const PASSWORD = 'the-one-in-redis-url-51ab';
const ROTATED = 'set-on-the-server-since-9e2d';

/**
 * A REDIS_URL whose password Redis refuses (a `requirepass` or ACL password rotated on the
 * server, not in the deployment): the process booted, readiness said `no answer within 1000 ms
 * (Redis reconnecting)`, and no line said WRONGPASS or NOAUTH — the shared client's errors were
 * swallowed (secret-rotation review).
 */
describe("REDIS_URL's credentials", () => {
  let redis: PrivateRedis;
  let admin: Redis;
  let db: TestDatabase;
  beforeAll(async () => {
    [redis, db] = await Promise.all([PrivateRedis.start(), createTestDatabase()]);
    admin = new Redis(redis.url, { maxRetriesPerRequest: 0 });
    admin.on('error', () => undefined);
    await admin.config('SET', 'requirepass', PASSWORD);
    await admin.auth(PASSWORD);
  });
  afterAll(async () => {
    admin?.disconnect();
    await Promise.all([redis?.down(), db?.drop()]);
  });
  afterEach(() => jest.restoreAllMocks());

  const withPassword = (password: string) =>
    `redis://${password ? `:${password}@` : ''}127.0.0.1:${redis.port}`;

  it('refused at boot, the API and the worker stop (exit code EXIT_CONFIG), naming REDIS_URL and the reply, not the password', async () => {
    for (const [url, reply] of [
      [withPassword(ROTATED), 'WRONGPASS'],
      [withPassword(''), 'NOAUTH'],
    ]) {
      const env = { DATABASE_URL: db.url, REDIS_URL: url };
      const runs = [runScript('src/main.ts', env), runScript('src/worker.ts', env)];
      try {
        for (const p of runs) {
          const still = new Promise<string>((resolve) =>
            setTimeout(() => resolve('still running'), 45_000).unref(),
          );
          expect(await Promise.race([p.exited, still])).toBe(EXIT_CONFIG);
          expect(p.output()).toContain(
            `REDIS_URL: Redis refused this process's credentials (it answered \\"${reply}`,
          );
          expect(p.output()).not.toContain(ROTATED);
        }
      } finally {
        for (const p of runs) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
      }
    }
  }, 120_000);

  describe('refused while the process runs (the password rotated on the server)', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await bootTestApp({ db, env: { REDIS_URL: withPassword(PASSWORD) } });
    });
    afterAll(async () => {
      await t?.close();
    });

    it('an error line names REDIS_URL and WRONGPASS, once per 10 s however often the client reconnects; readiness says the credentials were refused; the right password brings it back', async () => {
      expect((await t.http.get('/health/ready')).status).toBe(200);
      const errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
      const warns = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      await admin.config('SET', 'requirepass', ROTATED);
      await admin.auth(ROTATED);
      // every connection but the admin's: the client reconnects, and is refused
      await admin.client('KILL', 'TYPE', 'normal');
      const ready = await waitFor(
        'readiness down with Redis',
        async () => {
          const r = await t.http.get('/health/ready');
          return r.status === 503 ? r : undefined;
        },
        { timeoutMs: 10_000 },
      );
      expect(ready.body.details.redis).toEqual({ status: 'down' });
      // reconnects every 2 s at most, each refused: still one line
      await new Promise((resolve) => setTimeout(resolve, 4_500));
      const refused = errors.mock.calls
        .map(([m]) => String(m))
        .filter((m) => m.startsWith('REDIS_URL'));
      expect(refused).toEqual([
        "REDIS_URL: Redis refused this process's credentials (WRONGPASS invalid username-password pair or user is disabled.): the shared client cannot connect until REDIS_URL has the user and password the server has",
      ]);
      const readiness = warns.mock.calls
        .map(([m]) => String(m))
        .filter((m) => /^not ready/.test(m));
      expect(readiness).toEqual([
        expect.stringContaining(
          "redis: REDIS_URL's credentials refused (WRONGPASS invalid username-password pair or user is disabled.)",
        ),
      ]);
      const logged = [...errors.mock.calls, ...warns.mock.calls].map(([m]) => String(m));
      expect(logged.join('\n')).not.toContain(PASSWORD);
      // the password REDIS_URL has, on the server again
      await admin.config('SET', 'requirepass', PASSWORD);
      await admin.auth(PASSWORD);
      await waitFor(
        'readiness up again',
        async () => (await t.http.get('/health/ready')).status === 200,
        { timeoutMs: 10_000 },
      );
    }, 30_000);
  });
});
