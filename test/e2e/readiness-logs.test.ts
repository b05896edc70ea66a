import { Logger } from '@nestjs/common';
import { PrivateRedis } from '../support/private-redis';
import { TestApp, bootTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

/**
 * GET /health/ready is public and unthrottled (load balancers probe it). During an outage each
 * probe failed at once and terminus logged one error line per failed check: anyone could write
 * thousands of error lines a second into the logs, just when they matter. Readiness is now
 * logged when it changes: one warning when a dependency goes down, one line when it is back.
 */
describe('readiness logs changes, not probes', () => {
  let redis: PrivateRedis;
  let t: TestApp;
  let redisDown = false;
  beforeAll(async () => {
    redis = await PrivateRedis.start();
    t = await bootTestApp({ env: { REDIS_URL: redis.url } });
  });
  afterAll(async () => {
    if (redisDown) await redis.up();
    await t?.close();
    await redis?.down();
  });

  it('100 probes during a Redis outage write one warning naming Redis, and its return one line', async () => {
    const lines: string[] = [];
    const capture = (level: string) =>
      jest.spyOn(Logger.prototype, level as 'warn').mockImplementation(function (
        this: Logger,
        message: unknown,
      ) {
        lines.push(`${level} ${String(message)}`);
      });
    const spies = ['error', 'warn', 'log'].map(capture);
    try {
      expect((await t.http.get('/health/ready')).status).toBe(200);
      await redis.down();
      redisDown = true;
      for (let i = 0; i < 100; i++) {
        const res = await t.http.get('/health/ready');
        expect([res.status, res.body.details?.redis?.status]).toEqual([503, 'down']);
        expect(JSON.stringify(res.body)).not.toMatch(
          /ECONNREFUSED|127\.0\.0\.1|writeable|Connection is closed/i,
        ); // body: statuses only
      }
      const about = (s: string) => /ready|Health Check/i.test(s);
      expect(lines.filter(about)).toEqual([
        expect.stringMatching(/^warn not ready \(database=up redis=down\): redis: .+/),
      ]);

      await redis.up();
      redisDown = false;
      await waitFor('readiness back', async () => (await t.http.get('/health/ready')).status, {
        until: (s) => s === 200,
        timeoutMs: 15_000,
      });
      expect(lines.filter(about)).toEqual([
        expect.stringMatching(/^warn not ready/),
        'log ready again (database=up redis=up)',
      ]);
    } finally {
      spies.forEach((s) => s.mockRestore());
    }
  }, 60_000);
});
